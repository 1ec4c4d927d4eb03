import type { Capabilities } from '@dlock/core';
import {
  type BenchmarkRecord,
  type ContentionRecord,
  FAULT_VERDICTS,
  type FaultRecord,
  type Figure,
  type Results,
  type SemaphoreRecord,
} from '../results.js';
import { contentionLevel, plural, serversLabel } from '../words.js';

/** A table as data, rendered to markdown, HTML or the terminal by the caller. */
export interface Table {
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '—';
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10_000 ? 1 : 2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function formatRatio(ratio: number | null | undefined): string {
  return ratio === null || ratio === undefined ? '—' : `×${ratio.toFixed(ratio >= 10 ? 0 : 1)}`;
}

export const formatRate = (opsPerSecond: number | undefined) =>
  opsPerSecond === undefined ? '—' : Math.round(opsPerSecond).toLocaleString('en-US');

/** The number without its unit, for the inside of a spread ("0.19–0.25 ms", "×1.1–1.4"). */
const bare = (text: string) => text.replace(/^×/, '').replace(/ (ms|s)$/, '');

/**
 * A figure as every report prints it: the median, then the min–max of its blocks in parentheses, and
 * "noisy" when that spread is wide — "0.21 ms (0.19–0.25)", "×1.6 (1.1–2.9, noisy)". The unit of the
 * spread is the median's unless the formatter switches units between them (ms → s).
 */
export function formatFigure(
  figure: Figure | null | undefined,
  format: (value: number) => string = formatMs,
): string {
  if (!figure) return '—';
  const median = format(figure.median);
  const [low, high] = [format(figure.min), format(figure.max)];
  const sameUnit = (a: string, b: string) => a.replace(/[\d.,×]/g, '') === b.replace(/[\d.,×]/g, '');
  const spread =
    sameUnit(low, median) && sameUnit(high, median) ? `${bare(low)}–${bare(high)}` : `${low}–${high}`;
  return `${median} (${spread}${figure.noisy ? ', noisy' : ''})`;
}

export const formatRateFigure = (figure: Figure | null | undefined) => formatFigure(figure, formatRate);
export const formatRatioFigure = (figure: Figure | null | undefined) => formatFigure(figure, formatRatio);

export function serversOf(results: Results, backend: string): string {
  const record = results.backends.find((entry) => entry.name === backend);
  if (!record) return '—';
  if (record.placement === 'in-process') return 'in-process';
  return serversLabel(record.placement, record.serverCount);
}

/** A semaphore's or read-write lock's declaration in one cell: "monotonic · fifo", "none", "?" when unknown. */
function declared(capabilities: Capabilities | null | undefined): string {
  if (capabilities === undefined) return '?';
  if (capabilities === null) return 'none';
  return `${capabilities.fencing} · ${capabilities.fairness}`;
}

export function backendsTable(results: Results): Table {
  return {
    header: [
      'backend',
      'kind',
      'servers',
      'fencing',
      'fairness',
      'wake-up',
      'expiry',
      'semaphore: fencing · fairness',
      'read-write: fencing · fairness',
      'safety note',
    ],
    rows: results.backends.map((backend) => [
      backend.name,
      backend.origin === 'package' ? (backend.packageName ?? 'package') : backend.origin,
      serversOf(results, backend.name),
      backend.capabilities?.fencing ?? '?',
      backend.capabilities?.fairness ?? '?',
      backend.capabilities?.wakeup ?? '?',
      backend.capabilities?.expiry ?? '?',
      declared(backend.semaphoreCapabilities),
      declared(backend.readWriteCapabilities),
      backend.capabilities?.safety ?? '',
    ]),
  };
}

/** A semaphore subject as its row is labelled everywhere: the backend's name, or "peer: <label>". */
export const semaphoreRow = (entry: SemaphoreRecord) =>
  entry.origin === 'peer' ? `peer: ${entry.subject}` : entry.subject;

const percent = (share: number) => `${Math.round(share * 100)}%`;

export function semaphoreTable(results: Results): Table {
  const entries = results.semaphores ?? [];
  const first = entries.find((entry) => entry.contention);
  const level = first?.contention
    ? `acquisitions/s, ${plural(first.contention.contenders, 'contender')}, limit ${first.limit}`
    : 'acquisitions/s under contention';
  return {
    header: [
      'semaphore',
      'servers',
      'permit p50 (spread)',
      'p99',
      'floor p50 (same run)',
      'p50 ÷ floor (spread)',
      'permit hand-off p50 (spread)',
      'hand-off p99',
      level,
      'wait p50 (spread)',
      'wait p99',
      'wait max',
      'slowest contender’s share',
      'most inside',
    ],
    rows: entries.map((entry) => {
      const contention = entry.contention;
      return [
        semaphoreRow(entry),
        entry.placement === 'in-process' ? 'in-process' : serversLabel(entry.placement, entry.serverCount),
        formatFigure(entry.uncontended?.p50Ms),
        formatMs(entry.uncontended?.p99Ms),
        entry.floor ? `${entry.floor.protocol}: ${formatFigure(entry.floor.p50Ms)}` : '—',
        formatRatioFigure(entry.ratioToFloorP50),
        formatFigure(entry.handoff?.p50Ms),
        formatMs(entry.handoff?.p99Ms),
        formatRateFigure(contention?.opsPerSecond),
        formatFigure(contention?.waitMs.p50Ms),
        formatMs(contention?.waitMs.p99Ms),
        formatMs(contention?.waitMs.maxMs),
        contention ? `${percent(contention.slowestShare)} (even: ${percent(1 / contention.contenders)})` : '—',
        contention ? `${contention.mostInside} of ${entry.limit}` : '—',
      ];
    }),
  };
}

export function readWriteTable(results: Results): Table {
  return {
    header: [
      'read-write lock',
      'fairness',
      'reads + writes / s (spread)',
      'reads / writes',
      'read wait p50 (spread)',
      'read wait p99',
      'write wait p50 (spread)',
      'write wait p99',
      'write wait max',
      'most readers together',
      'conflicts',
    ],
    rows: (results.readWriteLocks ?? []).map((entry) => [
      entry.backend,
      results.backends.find((backend) => backend.name === entry.backend)?.readWriteCapabilities?.fairness ?? '?',
      formatRateFigure(entry.opsPerSecond),
      `${entry.reads} / ${entry.writes}`,
      formatFigure(entry.readWaitMs.p50Ms),
      formatMs(entry.readWaitMs.p99Ms),
      formatFigure(entry.writeWaitMs.p50Ms),
      formatMs(entry.writeWaitMs.p99Ms),
      formatMs(entry.writeWaitMs.maxMs),
      String(entry.mostReadersTogether),
      String(entry.conflicts),
    ]),
  };
}

export function latencyTable(results: Results): Table {
  const rows = results.benchmarks.map((bench) => [
    bench.backend,
    serversOf(results, bench.backend),
    formatFigure(bench.uncontended?.p50Ms),
    formatMs(bench.uncontended?.p99Ms),
    formatMs(bench.uncontended?.maxMs),
    bench.floor ? `${bench.floor.protocol}: ${formatFigure(bench.floor.p50Ms)}` : '—',
    formatRatioFigure(bench.ratioToFloorP50),
  ]);
  for (const peer of results.peers) {
    rows.push([
      `peer: ${peer.label}`,
      serversLabel(peer.placement, peer.serverCount),
      formatFigure(peer.p50Ms),
      formatMs(peer.p99Ms),
      formatMs(peer.maxMs),
      formatMs(peer.floorP50Ms),
      formatRatioFigure(peer.ratioToFloorP50),
    ]);
  }
  return {
    header: ['backend', 'servers', 'p50 (spread)', 'p99', 'max', 'floor p50 (same run)', 'p50 ÷ floor (spread)'],
    rows,
  };
}

/** The contention levels present in the run. */
export function contentionLevels(
  benchmarks: readonly BenchmarkRecord[],
): Array<{ contenders: number; keys: number }> {
  const levels = new Map<string, { contenders: number; keys: number }>();
  for (const bench of benchmarks) {
    for (const { contenders, keys } of bench.contention) levels.set(`${contenders}/${keys}`, { contenders, keys });
  }
  return [...levels.values()].sort((a, b) => a.keys - b.keys || a.contenders - b.contenders);
}

export function contentionTable(results: Results): Table {
  const levels = contentionLevels(results.benchmarks);
  const busiest = Math.max(0, ...levels.filter((level) => level.keys === 1).map((level) => level.contenders));
  const busiestLevel = contentionLevel(busiest, 1);
  /** The per-contender and wait columns of the busiest one-key level. */
  const busiestColumns = (record: ContentionRecord | undefined) => {
    // With fewer operations than two per contender, a contender's share says nothing.
    const counted = record && record.operations >= 2 * busiest;
    const even = `(even: ${Math.round(100 / busiest)}%)`;
    return [
      counted ? `${percent(record.busiestShare)} ${even}` : '—',
      counted && record.slowestShare !== undefined ? `${percent(record.slowestShare)} ${even}` : '—',
      formatFigure(record?.waitMs?.p50Ms),
      formatMs(record?.waitMs?.p99Ms),
      formatMs(record?.waitMs?.maxMs),
    ];
  };
  const rows = results.benchmarks.map((bench) => {
    const at = (contenders: number, keys: number) =>
      bench.contention.find((entry) => entry.contenders === contenders && entry.keys === keys);
    return [
      bench.backend,
      ...levels.map((level) => formatRateFigure(at(level.contenders, level.keys)?.opsPerSecond)),
      ...busiestColumns(at(busiest, 1)),
    ];
  });
  for (const peer of results.peers) {
    const record = peer.contention;
    if (!record || record.contenders !== busiest || record.keys !== 1) continue;
    rows.push([
      `peer: ${peer.label}`,
      ...levels.map((level) =>
        level.contenders === busiest && level.keys === 1 ? formatRateFigure(record.opsPerSecond) : '—',
      ),
      ...busiestColumns(record),
    ]);
  }
  return {
    header: [
      'backend',
      ...levels.map((level) => contentionLevel(level.contenders, level.keys)),
      `busiest contender's share, ${busiestLevel}`,
      `slowest contender's share, ${busiestLevel}`,
      `wait p50 (spread), ${busiestLevel}`,
      'wait p99',
      'wait max',
    ],
    rows,
  };
}

export function handoffTable(results: Results): Table {
  return {
    header: ['backend', 'wake-up', 'hand-off p50 (spread)', 'hand-off p99', 'hand-off max'],
    rows: results.benchmarks
      .filter((bench) => bench.handoff)
      .map((bench) => [
        bench.backend,
        results.backends.find((entry) => entry.name === bench.backend)?.capabilities?.wakeup ?? '?',
        formatFigure(bench.handoff?.p50Ms),
        formatMs(bench.handoff?.p99Ms),
        formatMs(bench.handoff?.maxMs),
      ]),
  };
}

export function failoverTable(results: Results): Table {
  return {
    header: ['backend', 'expiry', 'holder ttl / session', 'holder killed → next holder (spread)'],
    rows: results.benchmarks
      .filter((bench) => bench.failover)
      .map((bench) => [
        bench.backend,
        results.backends.find((entry) => entry.name === bench.backend)?.capabilities?.expiry ?? '?',
        formatMs(bench.failover?.expiryMs),
        formatFigure(bench.failover?.takeoverMs),
      ]),
  };
}

/** The capabilities a fault result was judged by: those of the primitive its contenders held. */
export function faultCapabilities(results: Results, fault: FaultRecord): Capabilities | null | undefined {
  const backend = results.backends.find((entry) => entry.name === fault.backend);
  if (fault.primitive === 'semaphore') return backend?.semaphoreCapabilities;
  if (fault.primitive === 'read-write') return backend?.readWriteCapabilities;
  return backend?.capabilities;
}

/** The primitives fault scenarios ran with, in report order. */
export const FAULT_PRIMITIVES = ['lock', 'semaphore', 'read-write'] as const;

/**
 * The fault results of one primitive: the columns that say what went wrong with it (overlaps and lost
 * updates for a lock; times over the limit for a semaphore; writes over readers for a read-write lock).
 * Fencing columns read "n/a" where the primitive declares no fencing: its tokens carry no promise.
 */
export function faultTable(results: Results, primitive: (typeof FAULT_PRIMITIVES)[number] = 'lock'): Table {
  const faults = results.faults.filter((fault) => (fault.primitive ?? 'lock') === primitive);
  const head = ['scenario', 'backend', 'claim', 'result', 'holds'];
  const columns: Array<{ header: string; value: (fault: FaultRecord) => number | undefined; fenced?: true }> =
    primitive === 'semaphore'
      ? [
          { header: 'most inside', value: (fault) => fault.metrics.mostInside },
          { header: 'times over the limit', value: (fault) => fault.metrics.overlaps },
          { header: 'stale writes', value: (fault) => fault.metrics.staleWrites, fenced: true },
          { header: 'over the limit with fencing', value: (fault) => fault.metrics.overlapsWithFencing, fenced: true },
          { header: 'token regressions', value: (fault) => fault.metrics.tokenRegressions, fenced: true },
        ]
      : primitive === 'read-write'
        ? [
            { header: 'overlaps with a writer', value: (fault) => fault.metrics.overlaps },
            { header: 'writes over readers', value: (fault) => fault.metrics.writesOverReads },
            { header: 'lost updates', value: (fault) => fault.metrics.lostUpdates },
            { header: 'stale writes', value: (fault) => fault.metrics.staleWrites, fenced: true },
            {
              header: 'writes over readers with fencing',
              value: (fault) => fault.metrics.writesOverReadsWithFencing,
              fenced: true,
            },
            { header: 'token regressions', value: (fault) => fault.metrics.tokenRegressions, fenced: true },
          ]
        : [
            { header: 'overlaps', value: (fault) => fault.metrics.overlaps },
            { header: 'lost updates', value: (fault) => fault.metrics.lostUpdates },
            { header: 'stale writes', value: (fault) => fault.metrics.staleWrites, fenced: true },
            { header: 'lost with fencing', value: (fault) => fault.metrics.lostUpdatesWithFencing, fenced: true },
            { header: 'token regressions', value: (fault) => fault.metrics.tokenRegressions, fenced: true },
          ];
  return {
    header: [...head, ...columns.map((column) => column.header)],
    rows: faults.map((fault) => {
      const fenced = faultCapabilities(results, fault)?.fencing === 'monotonic';
      return [
        fault.title,
        fault.backend,
        fault.claim,
        fault.verdict,
        String(fault.metrics.holds),
        ...columns.map((column) => {
          const value = column.value(fault);
          return column.fenced && !fenced ? 'n/a' : value === undefined ? '—' : String(value);
        }),
      ];
    }),
  };
}

/** Counts of fault verdicts for one backend, in the one vocabulary: "4 held, 2 known-unsafe". */
export function faultSummary(results: Results, backend: string): string {
  const faults = results.faults.filter((fault) => fault.backend === backend);
  if (faults.length === 0) return '—';
  return FAULT_VERDICTS.flatMap((verdict) => {
    const count = faults.filter((fault) => fault.verdict === verdict).length;
    return count > 0 ? [`${count} ${verdict}`] : [];
  }).join(', ');
}

/** The one-line-per-backend overview: the terminal summary and the README table. */
export function overviewTable(results: Results): Table {
  const busiest = Math.max(
    0,
    ...results.benchmarks.flatMap((bench) =>
      bench.contention.filter((c) => c.keys === 1).map((c) => c.contenders),
    ),
  );
  return {
    header: [
      'backend',
      'servers',
      'fencing',
      'expiry',
      'wake-up',
      'acquire+release p50',
      '× floor',
      busiest > 0 ? `ops/s, ${contentionLevel(busiest, 1)}` : 'ops/s under contention',
      'hand-off p50',
      'failover',
      'fault scenarios',
    ],
    rows: results.backends.map((backend) => {
      const bench = results.benchmarks.find((entry) => entry.backend === backend.name);
      const contention = bench?.contention.find((entry) => entry.keys === 1 && entry.contenders === busiest);
      return [
        backend.name,
        serversOf(results, backend.name),
        backend.capabilities?.fencing ?? '?',
        backend.capabilities?.expiry ?? '?',
        backend.capabilities?.wakeup ?? '?',
        formatFigure(bench?.uncontended?.p50Ms),
        formatRatioFigure(bench?.ratioToFloorP50),
        formatRateFigure(contention?.opsPerSecond),
        formatFigure(bench?.handoff?.p50Ms),
        formatFigure(bench?.failover?.takeoverMs),
        faultSummary(results, backend.name),
      ];
    }),
  };
}
