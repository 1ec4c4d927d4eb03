import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConformanceReport } from './report.js';

const mark = { held: 'held', violated: 'VIOLATED', skipped: 'n/a' } as const;

export function readConformanceReports(dir: string): ConformanceReport[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => JSON.parse(readFileSync(join(dir, file), 'utf8')) as ConformanceReport);
}

/** A markdown table: one row per guarantee, one column per backend, from real conformance runs. */
export function renderSemanticsTable(reports: readonly ConformanceReport[]): string {
  const ids: Array<{ id: string; title: string }> = [];
  for (const report of reports) {
    for (const result of report.results) {
      if (!ids.some((entry) => entry.id === result.id)) ids.push({ id: result.id, title: result.title });
    }
  }
  const header = `| guarantee | ${reports.map((r) => r.name).join(' | ')} |`;
  const rule = `|---|${reports.map(() => '---').join('|')}|`;
  const capabilityRows = (['fencing', 'fairness', 'wakeup', 'expiry'] as const).map(
    (capability) =>
      `| ${capability} (declared) | ${reports.map((r) => r.capabilities[capability]).join(' | ')} |`,
  );
  const rows = ids.map(({ id, title }) => {
    const cells = reports.map((report) => {
      const result = report.results.find((r) => r.id === id);
      return result ? mark[result.status] : '—';
    });
    return `| ${title} | ${cells.join(' | ')} |`;
  });
  return [header, rule, ...capabilityRows, ...rows].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: table.js <directory of conformance reports>');
    process.exit(2);
  }
  const reports = readConformanceReports(dir);
  console.log(renderSemanticsTable(reports));
  const violated = reports.flatMap((r) =>
    r.results.filter((x) => x.status === 'violated').map((x) => `${r.name}: ${x.title}`),
  );
  if (violated.length > 0) {
    console.error(`\nviolated guarantees:\n${violated.join('\n')}`);
    process.exit(1);
  }
}
