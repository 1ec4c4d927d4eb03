import type { BenchmarkRecord, FaultRecord, Results } from '../results.js';

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

const formatRate = (opsPerSecond: number | undefined) =>
  opsPerSecond === undefined ? '—' : Math.round(opsPerSecond).toLocaleString('en-US');

export const verdictLabel: Record<FaultRecord['verdict'], string> = {
  held: 'held',
  'claim-violated': 'CLAIM VIOLATED',
  'known-violation': 'violated (known-unsafe)',
  'not-reproduced': 'not reproduced',
  error: 'could not run',
};

function serversOf(results: Results, backend: string): string {
  const record = results.backends.find((entry) => entry.name === backend);
  if (!record) return '—';
  if (record.placement === 'in-process') return 'in-process';
  return record.serverCount === 1 ? record.placement : `${record.serverCount}× ${record.placement}`;
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
    formatMs(bench.uncontended?.p50Ms),
    formatMs(bench.uncontended?.p99Ms),
    bench.floor ? `${formatMs(bench.floor.p50Ms)} (${bench.floor.protocol})` : '—',
    formatRatio(bench.ratioToFloorP50),
  ]);
  for (const peer of results.peers) {
    rows.push([
      `peer: ${peer.name}`,
      peer.serverCount === 1 ? peer.placement : `${peer.serverCount}× ${peer.placement}`,
      formatMs(peer.p50Ms),
      formatMs(peer.p99Ms),
      formatMs(peer.floorP50Ms),
      formatRatio(peer.ratioToFloorP50),
    ]);
  }
  return { header: ['backend', 'servers', 'p50', 'p99', 'floor p50 (same run)', 'p50 / floor'], rows };
}

/** The contention levels present in the run, as "N on K key(s)" columns. */
function contentionLevels(benchmarks: readonly BenchmarkRecord[]): Array<{ contenders: number; keys: number }> {
  const levels = new Map<string, { contenders: number; keys: number }>();
  for (const bench of benchmarks) {
    for (const entry of bench.contention) levels.set(`${entry.contenders}/${entry.keys}`, entry);
  }
  return [...levels.values()].sort((a, b) => a.keys - b.keys || a.contenders - b.contenders);
}

export function contentionTable(results: Results): Table {
  const levels = contentionLevels(results.benchmarks);
  return {
    header: ['backend', ...levels.map((level) => `${level.contenders} on ${level.keys} key${level.keys === 1 ? '' : 's'}`)],
    rows: results.benchmarks.map((bench) => [
      bench.backend,
      ...levels.map((level) =>
        formatRate(bench.contention.find((entry) => entry.contenders === level.contenders && entry.keys === level.keys)?.opsPerSecond),
      ),
    ]),
  };
}

export function handoffFailoverTable(results: Results): Table {
  return {
    header: ['backend', 'hand-off p50', 'hand-off p99', 'failover (holder killed → next holder)', 'holder ttl / session'],
    rows: results.benchmarks.map((bench) => [
      bench.backend,
      formatMs(bench.handoff?.p50Ms),
      formatMs(bench.handoff?.p99Ms),
      bench.failover ? `${formatMs(bench.failover.medianMs)} (${bench.failover.samples} sample${bench.failover.samples === 1 ? '' : 's'})` : '—',
      bench.failover ? formatMs(bench.failover.expiryMs) : '—',
    ]),
  };
}

function fencingDeclared(results: Results, backend: string): boolean {
  return results.backends.find((entry) => entry.name === backend)?.capabilities?.fencing === 'monotonic';
}

export function faultTable(results: Results): Table {
  return {
    header: ['scenario', 'backend', 'claim', 'result', 'holds', 'overlaps', 'lost updates', 'stale writes', 'lost with fencing', 'token regressions'],
    rows: results.faults.map((fault) => {
      const fenced = fencingDeclared(results, fault.backend);
      const m = fault.metrics;
      return [
        fault.title,
        fault.backend,
        fault.claim,
        verdictLabel[fault.verdict],
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

/** Counts of fault verdicts for one backend, e.g. "4 held, 2 known-unsafe". */
export function faultSummary(results: Results, backend: string): string {
  const faults = results.faults.filter((fault) => fault.backend === backend);
  if (faults.length === 0) return '—';
  const count = (verdict: FaultRecord['verdict']) => faults.filter((fault) => fault.verdict === verdict).length;
  const parts = [
    [count('held'), 'held'],
    [count('claim-violated'), 'CLAIM VIOLATED'],
    [count('known-violation'), 'known-unsafe shown'],
    [count('not-reproduced'), 'not reproduced'],
    [count('error'), 'could not run'],
  ] as const;
  return parts
    .filter(([n]) => n > 0)
    .map(([n, label]) => `${n} ${label}`)
    .join(', ');
}

/** The one-line-per-backend overview: the terminal summary and the README table. */
export function overviewTable(results: Results): Table {
  const busiest = Math.max(0, ...results.benchmarks.flatMap((bench) => bench.contention.filter((c) => c.keys === 1).map((c) => c.contenders)));
  return {
    header: [
      'backend',
      'servers',
      'fencing',
      'expiry',
      'wake-up',
      'acquire+release p50 (× floor)',
      `ops/s, ${busiest} contenders on 1 key`,
      'hand-off p50',
      'failover',
      'fault scenarios',
    ],
    rows: results.backends.map((backend) => {
      const bench = results.benchmarks.find((entry) => entry.backend === backend.name);
      const contention = bench?.contention.find((entry) => entry.keys === 1 && entry.contenders === busiest);
      const p50 = bench?.uncontended ? formatMs(bench.uncontended.p50Ms) : '—';
      return [
        backend.name,
        serversOf(results, backend.name),
        backend.capabilities?.fencing ?? '?',
        backend.capabilities?.expiry ?? '?',
        backend.capabilities?.wakeup ?? '?',
        bench?.ratioToFloorP50 ? `${p50} (${formatRatio(bench.ratioToFloorP50)})` : p50,
        formatRate(contention?.opsPerSecond),
        formatMs(bench?.handoff?.p50Ms),
        formatMs(bench?.failover?.medianMs),
        faultSummary(results, backend.name),
      ];
    }),
  };
}
