import type { Results } from '../results.js';
import { faultAnchors, faultGuide } from './faults.js';
import { type Chart, buildFigures } from './figures/index.js';
import { glossary } from './glossary.js';
import { FAULT_PRIMITIVES, type Table, backendsTable, faultTable, overviewTable } from './tables.js';

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

/** A group of the semantics table: a kit section (lock, network faults, ...) and its rows. */
interface SemanticsGroup {
  readonly title: string | undefined;
  readonly table: Table;
}

/**
 * The conformance kit renders markdown, its rows grouped by kit section under a bold row naming the
 * section (`| **semaphore** | | |`); turn it into one Table per group (cells are plain text). A table
 * from an older run has no group rows: one group without a title.
 */
function parseSemanticsTable(markdown: string): SemanticsGroup[] {
  const lines = markdown.split('\n').filter((line) => line.startsWith('|'));
  const cells = (line: string) =>
    line
      .slice(1, -1)
      .split('|')
      .map((cell) => cell.trim());
  const [headerLine, , ...rows] = lines;
  if (!headerLine) return [];
  const header = cells(headerLine);
  const groups: Array<{ title: string | undefined; rows: string[][] }> = [];
  for (const row of rows.map(cells)) {
    const group = /^\*\*(.+)\*\*$/.exec(row[0] ?? '');
    if (group && row.slice(1).every((cell) => cell === '')) {
      groups.push({ title: group[1], rows: [] });
      continue;
    }
    if (groups.length === 0) groups.push({ title: undefined, rows: [] });
    groups.at(-1)?.rows.push(row);
  }
  return groups
    .filter((group) => group.rows.length > 0)
    .map((group) => ({ title: group.title, table: { header, rows: group.rows } }));
}

/** "network faults" → "semantics-network-faults". */
const semanticsAnchor = (title: string) => `semantics-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;

/** What the fault tables of each primitive are about, said once above each. */
const FAULT_TABLE_INTRO: Record<(typeof FAULT_PRIMITIVES)[number], string> = {
  lock: 'Locks: contenders hold the lock and update the counter under it.',
  semaphore:
    'Semaphores: contenders hold permits; the resource counts the times more than the limit were inside, and what a resource that keeps only the newest `limit` tokens inside would have let in.',
  'read-write':
    'Read-write locks: readers read the counter, writers update it; the resource counts writes that landed while a reader was reading, and what a resource checking read and write tokens would have let through.',
};

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
  const semantics = parseSemanticsTable(results.semanticsTable);
  for (const group of semantics) {
    if (group.title)
      add({ kind: 'heading', level: 3, text: `Semantics: ${group.title}`, id: semanticsAnchor(group.title) });
    add({ kind: 'table', table: group.table, role: 'semantics' });
  }
  if (semantics.length === 0)
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
    // A figure whose backends all lack the primitive keeps only its findings (why each is left out).
    if (section.table.rows.length > 0) add({ kind: 'table', table: section.table });
  }

  add({ kind: 'heading', level: 2, text: 'Fault scenarios', id: 'faults' });
  if (results.faults.length === 0) add({ kind: 'paragraph', text: 'No fault scenario ran.' });
  for (const text of faultGuide(results)) add({ kind: 'paragraph', text });
  const primitives = FAULT_PRIMITIVES.filter((primitive) =>
    results.faults.some((fault) => (fault.primitive ?? 'lock') === primitive),
  );
  for (const primitive of primitives) {
    if (primitives.length > 1) add({ kind: 'paragraph', text: FAULT_TABLE_INTRO[primitive] });
    add({ kind: 'table', table: faultTable(results, primitive), role: 'faults' });
  }
  if (results.faults.length > 0) {
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
