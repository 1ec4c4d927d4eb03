import { type BenchmarkRecord, FAULT_VERDICTS, type Figure, type Results } from '../results.js';
import { contentionLevel, serversLabel } from '../words.js';

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

export function backendsTable(results: Results): Table {
  return {
    header: ['backend', 'kind', 'servers', 'fencing', 'fairness', 'wake-up', 'expiry', 'safety note'],
    rows: results.backends.map((backend) => [
      backend.name,
      backend.origin === 'package' ? (backend.packageName ?? 'package') : backend.origin,
      serversOf(results, backend.name),
      backend.capabilities?.fencing ?? '?',
      backend.capabilities?.fairness ?? '?',
      backend.capabilities?.wakeup ?? '?',
      backend.capabilities?.expiry ?? '?',
      backend.capabilities?.safety ?? '',
    ]),
  };
}

export function latencyTable(results: Results): Table {
  const rows = results.benchmarks.map((bench) => [
    bench.backend,
    serversOf(results, bench.backend),
    formatFigure(bench.uncontended?.p50Ms),
    formatMs(bench.uncontended?.p99Ms),
    bench.floor ? `${bench.floor.protocol}: ${formatFigure(bench.floor.p50Ms)}` : '—',
    formatRatioFigure(bench.ratioToFloorP50),
  ]);
  for (const peer of results.peers) {
    rows.push([
      `peer: ${peer.label}`,
      serversLabel(peer.placement, peer.serverCount),
      formatFigure(peer.p50Ms),
      formatMs(peer.p99Ms),
      formatMs(peer.floorP50Ms),
      formatRatioFigure(peer.ratioToFloorP50),
    ]);
  }
  return {
    header: ['backend', 'servers', 'p50 (spread)', 'p99', 'floor p50 (same run)', 'p50 ÷ floor (spread)'],
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
  return {
    header: [
      'backend',
      ...levels.map((level) => contentionLevel(level.contenders, level.keys)),
      `busiest contender's share, ${contentionLevel(busiest, 1)}`,
    ],
    rows: results.benchmarks.map((bench) => {
      const at = (contenders: number, keys: number) =>
        bench.contention.find((entry) => entry.contenders === contenders && entry.keys === keys);
      const record = at(busiest, 1);
      // With fewer operations than two per contender, the busiest one's share says nothing.
      const share = record && record.operations >= 2 * busiest ? record.busiestShare : undefined;
      return [
        bench.backend,
        ...levels.map((level) => formatRateFigure(at(level.contenders, level.keys)?.opsPerSecond)),
        share === undefined ? '—' : `${Math.round(share * 100)}% (even: ${Math.round(100 / busiest)}%)`,
      ];
    }),
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

function fencingDeclared(results: Results, backend: string): boolean {
  return results.backends.find((entry) => entry.name === backend)?.capabilities?.fencing === 'monotonic';
}

export function faultTable(results: Results): Table {
  return {
    header: [
      'scenario',
      'backend',
      'claim',
      'result',
      'holds',
      'overlaps',
      'lost updates',
      'stale writes',
      'lost with fencing',
      'token regressions',
    ],
    rows: results.faults.map((fault) => {
      const fenced = fencingDeclared(results, fault.backend);
      const m = fault.metrics;
      return [
        fault.title,
        fault.backend,
        fault.claim,
        fault.verdict,
        String(m.holds),
        String(m.overlaps),
        String(m.lostUpdates),
        fenced ? String(m.staleWrites) : 'n/a',
        fenced ? String(m.lostUpdatesWithFencing) : 'n/a',
        fenced ? String(m.tokenRegressions) : 'n/a',
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
