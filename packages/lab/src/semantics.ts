import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type ConformanceReport, renderSemanticsTable } from '@dlock/conformance/results';
import { startNodeProcess } from '@dlock/testkit';
import type { LabBackend } from './discovery.js';
import { findPackageDir, readPackageJson } from './paths.js';
import type { SemanticsRecord } from './results.js';

/** A conformance run starts real servers and waits out ttls; a generous bound still ends a stuck one. */
const CONFORMANCE_RUN_TIMEOUT_MS = 10 * 60_000;

export interface SemanticsOptions {
  /** Read reports from here and run nothing (--semantics-from). */
  readonly from: string | null;
  /** Where fresh reports are written when the lab runs the kit (.dlock/conformance). */
  readonly runDir: string;
  readonly signal: AbortSignal;
  readonly onStep: (backend: string, detail: string) => void;
}

export interface Semantics {
  readonly records: SemanticsRecord[];
  /** The conformance kit's table over the reports found, in backend order; '' when none was found. */
  readonly table: string;
  readonly notes: string[];
}

function readReports(dir: string): ConformanceReport[] {
  if (!existsSync(dir)) return [];
  const reports: ConformanceReport[] = [];
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.json'))) {
    try {
      const report = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ConformanceReport;
      if (report.schema === 'dlock.conformance/1') reports.push(report);
    } catch {
      // Not a report (or half-written by a run that was interrupted).
    }
  }
  return reports;
}

/** The newest report for a backend: its describe name or its provider's backend name. */
function reportFor(
  backend: LabBackend,
  reports: readonly ConformanceReport[],
): ConformanceReport | undefined {
  return reports
    .filter((report) => report.name === backend.name || report.backend === backend.name)
    .sort((a, b) => Date.parse(b.finishedAt) - Date.parse(a.finishedAt))[0];
}

function isFresh(report: ConformanceReport | undefined, backend: LabBackend): report is ConformanceReport {
  return report !== undefined && Date.parse(report.finishedAt) >= (backend.builtAtMs ?? 0);
}

/** Runs the backend package's conformance test files with vitest, writing reports into `dir`. */
async function runConformance(
  backend: LabBackend,
  dir: string,
  signal: AbortSignal,
): Promise<string | undefined> {
  const conformance = backend.conformance;
  if (!conformance) return 'no conformance test file';
  const vitestDir = findPackageDir('vitest', conformance.packageDir);
  if (!vitestDir) return 'vitest is not installed';
  const { bin } = readPackageJson(vitestDir);
  const script = typeof bin === 'string' ? bin : bin?.vitest;
  if (!script) return 'vitest has no bin script';
  mkdirSync(dir, { recursive: true });
  const run = startNodeProcess(
    join(vitestDir, script),
    ['run', '--root', conformance.packageDir, '--reporter=dot', ...conformance.testFiles],
    { env: { DLOCK_CONFORMANCE_DIR: dir, FORCE_COLOR: '0' } },
  );
  const stop = () => {
    run.stop().catch(() => {});
  };
  const timer = setTimeout(stop, CONFORMANCE_RUN_TIMEOUT_MS);
  signal.addEventListener('abort', stop, { once: true });
  try {
    const code = await run.exited;
    return code === 0 ? undefined : `vitest exited with ${code}`;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
}

function summarize(
  backend: LabBackend,
  report: ConformanceReport | undefined,
  source: 'run' | 'file',
  note: string | null,
): SemanticsRecord {
  if (!report) return { backend: backend.name, source: 'none', held: 0, violated: [], skipped: 0, note };
  return {
    backend: backend.name,
    source,
    held: report.results.filter((result) => result.status === 'held').length,
    violated: report.results.filter((result) => result.status === 'violated').map((result) => result.title),
    skipped: report.results.filter((result) => result.status === 'skipped').length,
    note,
  };
}

/** The backends whose conformance kit `collectSemantics` would run (no fresh report to read). */
export function backendsNeedingConformanceRun(
  backends: readonly LabBackend[],
  options: Pick<SemanticsOptions, 'from' | 'runDir'>,
): LabBackend[] {
  if (options.from !== null) return [];
  const available = readReports(options.runDir);
  return backends.filter(
    (backend) => backend.origin !== 'baseline' && !isFresh(reportFor(backend, available), backend),
  );
}

/**
 * Which guarantees held, per backend, from the conformance kit. With `from`, reports are only read.
 * Otherwise a report in `runDir` newer than the backend's build is reused, and a missing or stale one
 * is produced by running the backend's own conformance test file.
 */
export async function collectSemantics(
  backends: readonly LabBackend[],
  options: SemanticsOptions,
): Promise<Semantics> {
  const records: SemanticsRecord[] = [];
  const shown: ConformanceReport[] = [];
  const notes: string[] = [];
  const available = readReports(options.from ?? options.runDir);
  for (const backend of backends) {
    let report = reportFor(backend, available);
    let source: 'run' | 'file' = 'file';
    let note: string | null = null;
    if (backend.origin === 'baseline') {
      note = 'teaching baseline: not run through the conformance kit';
    } else if (options.from === null && !isFresh(report, backend)) {
      options.onStep(backend.name, 'running the conformance kit');
      const failure = await runConformance(backend, options.runDir, options.signal);
      options.signal.throwIfAborted();
      report = reportFor(backend, readReports(options.runDir));
      source = 'run';
      if (failure) note = failure;
    } else if (!report) {
      note = `no report in ${options.from}`;
    }
    if (backend.origin !== 'baseline' && !report)
      notes.push(`${backend.name}: no conformance report (${note})`);
    if (report) shown.push({ ...report, name: backend.name });
    records.push(summarize(backend, report, source, note));
  }
  return { records, table: shown.length > 0 ? renderSemanticsTable(shown) : '', notes };
}
