import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Capabilities } from '@dlock/core';
import type { Section } from './kit.js';
import type { ConformanceReport } from './report.js';

const mark = { held: 'held', violated: 'VIOLATED', skipped: 'n/a' } as const;

/** The kit's sections, in the order the tables show them, with the name each group is shown under. */
export const SEMANTICS_SECTIONS: ReadonlyArray<{ readonly section: Section; readonly title: string }> = [
  { section: 'lock', title: 'lock' },
  { section: 'network', title: 'network faults' },
  { section: 'semaphore', title: 'semaphore' },
  { section: 'read-write', title: 'read-write' },
  { section: 'soak', title: 'soak' },
];

/** One group of the semantics table: a kit section's rows, one cell per backend. */
export interface SemanticsGroup {
  readonly section: Section;
  readonly title: string;
  readonly rows: ReadonlyArray<{ readonly title: string; readonly cells: readonly string[] }>;
}

export function readConformanceReports(dir: string): ConformanceReport[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => JSON.parse(readFileSync(join(dir, file), 'utf8')) as ConformanceReport);
}

const declaredRow = (
  reports: readonly ConformanceReport[],
  of: (report: ConformanceReport) => Capabilities | null | undefined,
) => ({
  title: 'declared: fencing · fairness · wake-up · expiry',
  cells: reports.map((report) => {
    const capabilities = of(report);
    if (capabilities === undefined) return '—';
    if (capabilities === null) return 'none (no such primitive)';
    return `${capabilities.fencing} · ${capabilities.fairness} · ${capabilities.wakeup} · ${capabilities.expiry}`;
  }),
});

/**
 * The semantics table as data: one group per kit section that any report has results for, in the
 * kit's order (lock, network faults, semaphore, read-write, soak). The lock group starts with what
 * each provider declares for locks, the semaphore and read-write groups with what it declares for
 * those primitives; then one row per guarantee: held, VIOLATED, n/a (skipped) or — (not in the report).
 */
export function semanticsGroups(reports: readonly ConformanceReport[]): SemanticsGroup[] {
  const ids: Array<{ id: string; title: string; section: Section }> = [];
  for (const report of reports) {
    for (const result of report.results) {
      if (!ids.some((entry) => entry.id === result.id))
        ids.push({ id: result.id, title: result.title, section: (result.section ?? 'lock') as Section });
    }
  }
  return SEMANTICS_SECTIONS.flatMap(({ section, title }) => {
    const guarantees = ids
      .filter((entry) => entry.section === section)
      .map(({ id, title: guarantee }) => ({
        title: guarantee,
        cells: reports.map((report) => {
          const result = report.results.find((r) => r.id === id);
          return result ? mark[result.status] : '—';
        }),
      }));
    const declared =
      section === 'lock'
        ? (['fencing', 'fairness', 'wakeup', 'expiry'] as const).map((capability) => ({
            title: `${capability} (declared)`,
            cells: reports.map((report) => report.capabilities[capability]),
          }))
        : section === 'semaphore'
          ? [declaredRow(reports, (report) => report.primitiveCapabilities?.semaphore)]
          : section === 'read-write'
            ? [declaredRow(reports, (report) => report.primitiveCapabilities?.readWrite)]
            : [];
    return guarantees.length > 0 || section === 'lock'
      ? [{ section, title, rows: [...declared, ...guarantees] }]
      : [];
  });
}

/**
 * A markdown table: one column per backend, one row per guarantee from real conformance runs,
 * grouped by kit section — each group opens with a row naming it in bold (`| **semaphore** | | |`).
 */
export function renderSemanticsTable(reports: readonly ConformanceReport[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  const header = line(['guarantee', ...reports.map((report) => report.name)]);
  const rule = `|---|${reports.map(() => '---').join('|')}|`;
  const groups = semanticsGroups(reports).flatMap((group) => [
    line([`**${group.title}**`, ...reports.map(() => '')]),
    ...group.rows.map((row) => line([row.title, ...row.cells])),
  ]);
  return [header, rule, ...groups].join('\n');
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
