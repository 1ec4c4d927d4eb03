import type { Results } from '../results.js';
import { faultAnchors, faultGuide } from './faults.js';
import { type Chart, buildFigures } from './figures/index.js';
import { glossary } from './glossary.js';
import { type Table, backendsTable, faultTable, overviewTable } from './tables.js';

/**
 * The report as an ordered list of blocks, built once from the results and rendered by both the HTML
 * and the markdown report, so the two always say the same thing in the same order. Text may contain
 * `[text](#anchor)` links (see links.ts).
 */
export type Block =
  | { readonly kind: 'heading'; readonly level: 2 | 3 | 4; readonly text: string; readonly id?: string }
  | { readonly kind: 'paragraph'; readonly text: string }
  | { readonly kind: 'list'; readonly items: readonly string[] }
  | { readonly kind: 'table'; readonly table: Table; readonly role?: 'semantics' | 'faults' }
  | { readonly kind: 'charts'; readonly charts: readonly Chart[] }
  | {
      readonly kind: 'definitions';
      readonly items: ReadonlyArray<{ readonly ids: readonly string[]; readonly term: string; readonly text: string }>;
    };

export interface ReportDocument {
  readonly blocks: readonly Block[];
  /** Every anchor the document defines: links to anything else are rendered as plain text. */
  readonly anchors: ReadonlySet<string>;
}

/** The conformance kit renders markdown; turn its table into a Table (cells are plain text). */
function parseMarkdownTable(markdown: string): Table | undefined {
  const lines = markdown.split('\n').filter((line) => line.startsWith('|'));
  const cells = (line: string) =>
    line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim().replace(/^\*(.*)\*$/, '$1'));
  const [header, , ...rows] = lines;
  return header ? { header: cells(header), rows: rows.map(cells) } : undefined;
}

export function buildReportDocument(results: Results): ReportDocument {
  const blocks: Block[] = [];
  const add = (block: Block) => blocks.push(block);
  add({ kind: 'heading', level: 2, text: 'Overview', id: 'overview' });
  add({
    kind: 'paragraph',
    text: 'Every figure is the median of several interleaved blocks, with the min–max of the blocks in parentheses; “noisy” marks a figure whose blocks disagree widely ([block, spread, noisy](#term-spread)). All figures come from this one run on this one machine.',
  });
  add({ kind: 'table', table: overviewTable(results) });
  add({ kind: 'heading', level: 2, text: 'Backends and what they declare', id: 'backends' });
  add({ kind: 'table', table: backendsTable(results) });

  add({ kind: 'heading', level: 2, text: 'Semantics (conformance kit)', id: 'semantics' });
  const semantics = parseMarkdownTable(results.semanticsTable);
  if (semantics) add({ kind: 'table', table: semantics, role: 'semantics' });
  else
    add({
      kind: 'paragraph',
      text: 'No conformance report was available (run the test command, or `dlock compare` without `--semantics-from`).',
    });
  const semanticsNotes = results.semantics.flatMap((entry) => (entry.note ? [`${entry.backend}: ${entry.note}`] : []));
  if (semanticsNotes.length > 0) add({ kind: 'list', items: semanticsNotes });

  add({ kind: 'heading', level: 2, text: 'Benchmarks', id: 'benchmarks' });
  for (const section of buildFigures(results)) {
    add({ kind: 'heading', level: 3, text: section.title, id: `figure-${section.id}` });
    add({ kind: 'paragraph', text: section.caption });
    if (section.charts.length > 0) add({ kind: 'charts', charts: section.charts });
    if (section.findings.length > 0) {
      add({ kind: 'heading', level: 4, text: 'What stands out, and why' });
      add({ kind: 'list', items: section.findings });
    }
    add({ kind: 'table', table: section.table });
  }

  add({ kind: 'heading', level: 2, text: 'Fault scenarios', id: 'faults' });
  if (results.faults.length === 0) add({ kind: 'paragraph', text: 'No fault scenario ran.' });
  for (const text of faultGuide(results)) add({ kind: 'paragraph', text });
  if (results.faults.length > 0) {
    add({ kind: 'table', table: faultTable(results), role: 'faults' });
    add({
      kind: 'definitions',
      items: results.faults.map((fault) => ({
        ids: faultAnchors(results, fault),
        term: `${fault.title} — ${fault.backend}: ${fault.claim} · ${fault.verdict}`,
        text: fault.explanation,
      })),
    });
  }

  add({ kind: 'heading', level: 2, text: 'Glossary', id: 'glossary' });
  add({
    kind: 'definitions',
    items: glossary.map((entry) => ({
      ids: [`term-${entry.id}`],
      term: entry.term,
      text: `${entry.definition}${entry.shownBy.length > 0 ? ` Shown by: ${entry.shownBy.join(', ')}.` : ''}`,
    })),
  });

  const notes = [
    ...results.notes,
    ...results.benchmarks.flatMap((bench) => bench.errors.map((error) => `${bench.backend}: ${error}`)),
  ];
  if (notes.length > 0) {
    add({ kind: 'heading', level: 2, text: 'Notes', id: 'notes' });
    add({ kind: 'list', items: notes });
  }

  const anchors = new Set<string>();
  for (const block of blocks) {
    if (block.kind === 'heading' && block.id) anchors.add(block.id);
    if (block.kind === 'definitions') for (const item of block.items) for (const id of item.ids) anchors.add(id);
  }
  return { blocks, anchors };
}
