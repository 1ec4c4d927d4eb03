import type { Figure, Results } from '../../results.js';
import { type RowPoint, figurePoint, rowChart, seriesChart } from '../charts.js';
import { formatMs, formatRatioFigure, latencyTable } from '../tables.js';
import { type FigureKind, term } from './section.js';

export interface Compared {
  readonly label: string;
  readonly ratio: Figure;
}

/** Everything with a ratio to its floor: backends, then peers by their unique label. */
function compared(results: Results): Compared[] {
  return [
    ...results.benchmarks.flatMap((bench) =>
      bench.ratioToFloorP50 ? [{ label: bench.backend, ratio: bench.ratioToFloorP50 }] : [],
    ),
    ...results.peers.flatMap((peer) =>
      peer.ratioToFloorP50 ? [{ label: `peer ${peer.label}`, ratio: peer.ratioToFloorP50 }] : [],
    ),
  ];
}

const names = (items: readonly Compared[]) =>
  items.map((item) => `${item.label} ${formatRatioFigure(item.ratio)}`).join(', ');

/**
 * Which subjects are indistinguishable from the floor, below it or above it in every round, and why
 * each can be: shared by every figure measured against a floor. `extra` says what a library adds on
 * top of the protocol's round trips in the "above" case.
 */
export function floorComparisons(items: readonly Compared[], extra: string): string[] {
  const out: string[] = [];
  const atFloor = items.filter((item) => item.ratio.min <= 1 && item.ratio.max >= 1);
  if (atFloor.length > 0) {
    out.push(
      `Indistinguishable from the floor (their ${term('spread')} includes ×1.0): ${names(atFloor)}. Whatever these add to the protocol’s round trips is too small for this machine to measure.`,
    );
  }
  const below = items.filter((item) => item.ratio.max < 1);
  if (below.length > 0) {
    out.push(
      `Below the floor in every round: ${names(below)}. The floor is a reference, not a physical limit: it is the lab’s own client sending the protocol’s commands, and a library that sends fewer commands, or whose client path costs less per call (a script cached server-side, fewer promise hops), comes in below it. A ratio under ×1.0 whose spread reaches ×1.0 is noise, not a gain.`,
    );
  }
  const above = items.filter((item) => item.ratio.min > 1).sort((a, b) => b.ratio.median - a.ratio.median);
  if (above.length > 0) {
    out.push(
      `Above the floor in every round: ${names(above)}. The difference is the library’s own work per operation: ${extra}.`,
    );
  }
  return out;
}

/** The subjects whose figures are marked noisy, in one sentence (none: no sentence). */
export function noisyFinding(labels: readonly string[]): string[] {
  return labels.length === 0
    ? []
    : [
        `Marked ${term('spread', 'noisy')}: ${labels.join(', ')} — their blocks disagree widely (a busy machine), so compare them only as ranges.`,
      ];
}

function findings(results: Results): string[] {
  const items = compared(results);
  const out: string[] = [];
  if (items.length > 0) {
    out.push(
      `The ${term('floor')} is the lab’s own minimal client sending the same protocol’s round trips to the same servers, interleaved with the backends; “× floor” is what a lock library costs on top of the protocol.`,
    );
  }
  out.push(
    ...floorComparisons(
      items,
      'extra round trips (a fencing counter, a queue position, a session check) and client-side bookkeeping',
    ),
  );
  const noisy = [
    ...results.benchmarks.flatMap((bench) => (bench.uncontended?.p50Ms.noisy ? [bench.backend] : [])),
    ...results.peers.flatMap((peer) => (peer.p50Ms.noisy ? [`peer ${peer.label}`] : [])),
  ];
  out.push(...noisyFinding(noisy));
  const tails = results.benchmarks
    .filter((bench) => bench.uncontended && bench.uncontended.p50Ms.median > 0)
    .map((bench) => ({
      backend: bench.backend,
      p50: bench.uncontended?.p50Ms.median ?? 0,
      p99: bench.uncontended?.p99Ms ?? 0,
    }))
    .sort((a, b) => b.p99 / b.p50 - a.p99 / a.p50);
  const widest = tails[0];
  if (widest && widest.p99 / widest.p50 >= 3) {
    out.push(
      `The widest tail is ${widest.backend}’s: ${term('percentile', 'p99')} ${formatMs(widest.p99)} against a p50 of ${formatMs(widest.p50)} (×${(widest.p99 / widest.p50).toFixed(1)}). On loopback a tail that long is mostly the machine (garbage collection, another process on the same core), which is why the figures are medians of blocks.`,
    );
  }
  return out;
}

/** Uncontended acquire + release: the distribution per backend, and p50 against the floor. */
export const uncontendedFigure: FigureKind = {
  id: 'uncontended',
  build(results) {
    const rows: RowPoint[] = [];
    for (const bench of results.benchmarks) {
      if (bench.floor) rows.push(figurePoint(bench.backend, 'floor p50', bench.floor.p50Ms));
      if (bench.uncontended) {
        rows.push(figurePoint(bench.backend, 'p50', bench.uncontended.p50Ms));
        rows.push({ row: bench.backend, measure: 'p99', value: bench.uncontended.p99Ms });
      }
    }
    for (const peer of results.peers) {
      const row = `peer: ${peer.label}`;
      if (peer.floorP50Ms !== null) rows.push({ row, measure: 'floor p50', value: peer.floorP50Ms });
      rows.push(figurePoint(row, 'p50', peer.p50Ms));
      rows.push({ row, measure: 'p99', value: peer.p99Ms });
    }
    if (rows.length === 0) return undefined;
    const distribution = results.benchmarks.flatMap((bench) =>
      (bench.uncontended?.distribution ?? []).map((point) => ({
        series: bench.backend,
        x: `p${point.percentile}`,
        order: point.percentile,
        value: Math.max(point.ms, 0.001),
      })),
    );
    return {
      id: 'uncontended',
      title: 'Uncontended acquire + release, against the raw-protocol floor',
      caption:
        'One client, a free key, acquire then release, back to back. Each backend, peer library and floor is timed in short blocks, interleaved round by round; a point is the median of the block p50s and its line the min–max of the blocks.',
      charts: [
        {
          title: 'p50 (with its spread), floor p50 and p99 per backend and peer library',
          caption: 'Log scale, so the p50-against-floor comparison stays readable beside the tails.',
          spec: rowChart({ points: rows, measures: ['floor p50', 'p50', 'p99'], axisTitle: 'ms (log scale)', log: true }),
        },
        ...(distribution.length > 0
          ? [
              {
                title: 'Latency distribution',
                caption: 'Latency at each percentile over every operation of every block (log scale).',
                spec: seriesChart({ points: distribution, xTitle: 'percentile', yTitle: 'ms (log scale)' }),
              },
            ]
          : []),
      ],
      table: latencyTable(results),
      findings: findings(results),
    };
  },
};
