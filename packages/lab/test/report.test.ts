import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildReportDocument } from '../src/report/document.js';
import { buildFigures } from '../src/report/figures/index.js';
import { glossaryIds } from '../src/report/glossary.js';
import { renderHtmlReport } from '../src/report/html.js';
import { linkTargets } from '../src/report/links.js';
import { renderMarkdownReport, renderReadmeTable } from '../src/report/markdown.js';
import { FAULT_VERDICTS } from '../src/results.js';
import { chromiumMissing, inspectReportInBrowser } from './browser.js';
import { sampleResults } from './fixtures.js';

const scratch = mkdtempSync(join(tmpdir(), 'dlock-lab-report-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Every text a block carries, links included. */
function texts(results = sampleResults()): string[] {
  return buildReportDocument(results).blocks.flatMap((block) => {
    switch (block.kind) {
      case 'paragraph':
        return [block.text];
      case 'list':
        return [...block.items];
      case 'definitions':
        return block.items.map((item) => item.text);
      case 'charts':
        return block.charts.map((chart) => chart.caption);
      default:
        return [];
    }
  });
}

describe('the report', () => {
  it('defines every term it links to, and every link lands on an anchor of the report', () => {
    const { anchors } = buildReportDocument(sampleResults());
    const targets = texts().flatMap(linkTargets);
    expect(targets.length).toBeGreaterThan(10);
    for (const target of targets.filter((anchor) => anchor.startsWith('term-'))) {
      expect(glossaryIds.has(target.slice('term-'.length)), target).toBe(true);
    }
    const html = renderHtmlReport(sampleResults());
    return html.then((page) => {
      for (const anchor of anchors) expect(page).toContain(`id="${anchor}"`);
      for (const href of page.matchAll(/href="#([\w-]+)"/g))
        expect(anchors.has(href[1] as string), href[1]).toBe(true);
    });
  });

  it('names every fault result with the one vocabulary of results.json, in HTML, markdown and the README table', async () => {
    const results = sampleResults();
    const html = await renderHtmlReport(results);
    const markdown = renderMarkdownReport(results);
    const readme = renderReadmeTable(results);
    for (const fault of results.faults) {
      expect(html).toContain(`<td class="${fault.verdict === 'held' ? 'ok' : 'warn'}">${fault.verdict}</td>`);
      expect(markdown).toContain(`| ${fault.claim} | ${fault.verdict} |`);
    }
    expect(readme).toContain('| 1 held, 3 known-unsafe |');
    for (const old of [
      'known-violation',
      'CLAIM VIOLATED',
      'known-unsafe shown',
      'violated (known-unsafe)',
    ]) {
      expect(html + markdown + readme).not.toContain(old);
    }
    expect(FAULT_VERDICTS).toContain('known-unsafe');
  });

  it('prints every figure with its spread, in the report and in the README table', () => {
    const readme = renderReadmeTable(sampleResults());
    const redis = readme.split('\n').find((line) => line.startsWith('| redis |')) ?? '';
    expect(redis).toMatch(/\| 0\.25 ms \(0\.23–0\.28\) \| ×1\.2 \(1\.1–1\.3\) \| 1,000 \(950–1,050\) \|/);
    expect(readme).not.toMatch(/carr(y|ies) (over|across)/);
  });

  it('explains the surprises beside the figures, from the results', () => {
    const all = texts().join('\n');
    // The polling baseline leads under contention: barging, and the hand-off it costs.
    expect(all).toMatch(
      /Most operations under contention: setnx-getset: .*the busiest contender did 60% of the operations \(even: 3%\)\. .*\[barging\]\(#term-barging\)/,
    );
    expect(all).toMatch(/setnx-getset hands the lock over in 21\.0 ms/);
    // RedLock's fall with contenders, and why.
    expect(all).toMatch(
      /redlock: 80 \(76–84\) ops\/s with 32 contenders on 1 key, ÷17\.5 from 1,400 with 1 contender on 1 key;.*a round trip to all 5 nodes that needs a \[majority\]/,
    );
    // FIFO backends: no herd, no barging, every operation a hand-off.
    expect(all).toMatch(/zookeeper: .*It queues waiters in order \(\[FIFO\]\(#term-fifo\)\)/);
    // The floor: what it is, and a peer that beats it.
    expect(all).toMatch(/Below the floor in every round: .*peer redlock \(library\) · 5× redis ×0\.8/);
    // "fenced · held" with overlaps is not a contradiction.
    expect(all).toMatch(/For example redis · fenced · held · 4 overlaps · 4 lost updates/);
  });

  it('leaves a backend without semaphores or read-write locks out of those figures, saying why', () => {
    const figures = buildFigures(sampleResults());
    const semaphore = figures.find((figure) => figure.id === 'semaphore');
    const readWrite = figures.find((figure) => figure.id === 'read-write');
    expect(semaphore?.findings).toContain(
      'Not measured: zookeeper — the zookeeper provider does not support semaphores: this backend package does not implement them.',
    );
    expect(readWrite?.findings).toContain(
      'Not measured: zookeeper — the zookeeper provider does not support read-write locks: this backend package does not implement them.',
    );
    // dlock's semaphores: the permit hand-off, beside the same backend's lock hand-off.
    expect(semaphore?.findings.join('\n')).toMatch(
      /Permit \[hand-off\]\(#term-handoff\) — with 3 of the 4 permits held elsewhere.*: memory .*; redis .*\(its lock: /,
    );
    expect(semaphore?.table.rows.map((row) => row[0])).not.toContain('zookeeper');
    expect(readWrite?.table.rows.map((row) => row[0])).not.toContain('zookeeper');
  });

  it('gives every peer row a label of its own, so no two share a slot in a chart', () => {
    const { blocks } = buildReportDocument(sampleResults());
    const charts = blocks.flatMap((block) => (block.kind === 'charts' ? block.charts : []));
    const floorChart = charts[0]?.spec as { data: { values: Array<{ row: string; measure: string }> } };
    const p50Rows = floorChart.data.values
      .filter((value) => value.measure === 'p50')
      .map((value) => value.row);
    expect(new Set(p50Rows).size).toBe(p50Rows.length);
    expect(p50Rows).toEqual(
      expect.arrayContaining(['peer: redlock (library) · redis', 'peer: redlock (library) · 5× redis']),
    );
  });

  describe.skipIf(chromiumMissing !== undefined)(
    `in headless Chromium${chromiumMissing ? ` (skipped: ${chromiumMissing})` : ''}`,
    () => {
      it('shows every chart with readable text, no truncated or overlapping label, nothing clipped', async () => {
        const html = join(scratch, 'index.html');
        writeFileSync(html, await renderHtmlReport(sampleResults()));
        const { problems, screenshots, charts } = await inspectReportInBrowser(
          html,
          join(scratch, 'screenshots'),
        );
        expect(problems).toEqual([]);
        expect(charts).toBeGreaterThanOrEqual(9);
        for (const shot of screenshots) expect(statSync(shot).size).toBeGreaterThan(1_000);
        // Eleven charts rendered by vega, then a browser and a screenshot each, on a busy shared machine.
      }, 120_000);

      it('finds what a reader would: a label cut short, two labels on top of each other, 7 px text', async () => {
        const html = join(scratch, 'broken.html');
        writeFileSync(
          html,
          `<!doctype html><body><figure class="chart"><h5>broken</h5><svg width="300" height="100">
            <text x="10" y="30" font-size="13">peer: redis-semapho…</text>
            <text x="20" y="32" font-size="13">overlapping label</text>
            <text x="10" y="80" font-size="7">tiny</text>
            <text x="280" y="80" font-size="13">outside the chart</text></svg></figure></body>`,
        );
        const { problems } = await inspectReportInBrowser(html, join(scratch, 'broken-screenshots'));
        expect(problems).toEqual(
          expect.arrayContaining([
            'chart "broken": label truncated: "peer: redis-semapho…"',
            'chart "broken": "peer: redis-semapho…" overlaps "overlapping label"',
            'chart "broken": "tiny" is 7.0 px',
            'chart "broken": "outside the chart" reaches outside the chart',
          ]),
        );
      });
    },
  );
});
