import { View, parse } from 'vega';
import { type TopLevelSpec, compile } from 'vega-lite';
import type { Results } from '../results.js';

export interface Chart {
  readonly title: string;
  readonly caption: string;
  readonly spec: TopLevelSpec;
}

const WIDTH = 560;
const HEIGHT = 260;
const base = {
  width: WIDTH,
  height: HEIGHT,
  background: 'white',
  config: { font: 'Helvetica, Arial, sans-serif', axis: { labelFontSize: 11, titleFontSize: 12 } },
} as const;

function latencyDistribution(results: Results): Chart | undefined {
  const values = results.benchmarks.flatMap((bench) =>
    (bench.uncontended?.distribution ?? []).map((point) => ({
      backend: bench.backend,
      percentile: `p${point.percentile}`,
      order: point.percentile,
      ms: Math.max(point.ms, 0.001),
    })),
  );
  if (values.length === 0) return undefined;
  return {
    title: 'Uncontended acquire + release: latency distribution',
    caption: 'Latency at each percentile (log scale), from an HDR histogram of every operation.',
    spec: {
      ...base,
      data: { values },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'percentile', type: 'ordinal', sort: { field: 'order' }, title: 'percentile' },
        y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, title: 'ms' },
        color: { field: 'backend', type: 'nominal' },
      },
    },
  };
}

function latencyAgainstFloor(results: Results): Chart | undefined {
  const values = [
    ...results.benchmarks.flatMap((bench) => [
      ...(bench.uncontended
        ? [
            { who: bench.backend, measure: 'p50', ms: bench.uncontended.p50Ms },
            { who: bench.backend, measure: 'p99', ms: bench.uncontended.p99Ms },
          ]
        : []),
      ...(bench.floor ? [{ who: bench.backend, measure: 'floor p50', ms: bench.floor.p50Ms }] : []),
    ]),
    ...results.peers.flatMap((peer) => [
      { who: `peer: ${peer.name}`, measure: 'p50', ms: peer.p50Ms },
      { who: `peer: ${peer.name}`, measure: 'p99', ms: peer.p99Ms },
    ]),
  ];
  if (values.length === 0) return undefined;
  return {
    title: 'Uncontended acquire + release vs the raw-protocol floor',
    caption: 'p50 and p99 per backend and peer library, beside the floor measured on the same servers in the same run.',
    spec: {
      ...base,
      data: { values },
      mark: 'bar',
      encoding: {
        x: { field: 'who', type: 'nominal', title: null, axis: { labelAngle: -30 } },
        xOffset: { field: 'measure', type: 'nominal' },
        y: { field: 'ms', type: 'quantitative', title: 'ms' },
        color: { field: 'measure', type: 'nominal', title: null },
      },
    },
  };
}

function throughput(results: Results): Chart | undefined {
  const values = results.benchmarks.flatMap((bench) =>
    bench.contention
      // A log scale has no place for zero; a level that completed nothing is in the table, not the chart.
      .filter((entry) => entry.opsPerSecond > 0)
      .map((entry) => ({
        backend: bench.backend,
        level: entry.keys === 1 ? `${entry.contenders} on 1 key` : `${entry.contenders} on ${entry.keys} keys`,
        order: entry.keys * 1000 + entry.contenders,
        opsPerSecond: entry.opsPerSecond,
      })),
  );
  if (values.length === 0) return undefined;
  return {
    title: 'Throughput vs contenders',
    caption:
      'Acquire + release per second with N contenders on one key, and on one key each (log scale: the in-process memory provider runs orders of magnitude above the networked backends).',
    spec: {
      ...base,
      data: { values },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'level', type: 'ordinal', sort: { field: 'order' }, title: 'contenders' },
        y: { field: 'opsPerSecond', type: 'quantitative', scale: { type: 'log' }, title: 'operations / s' },
        color: { field: 'backend', type: 'nominal' },
      },
    },
  };
}

function barsPerBackend(
  title: string,
  caption: string,
  values: Array<{ backend: string; measure: string; ms: number }>,
): Chart | undefined {
  if (values.length === 0) return undefined;
  return {
    title,
    caption,
    spec: {
      ...base,
      data: { values },
      mark: 'bar',
      encoding: {
        x: { field: 'backend', type: 'nominal', title: null, axis: { labelAngle: -30 } },
        xOffset: { field: 'measure', type: 'nominal' },
        y: { field: 'ms', type: 'quantitative', title: 'ms' },
        color: { field: 'measure', type: 'nominal', title: null },
      },
    },
  };
}

/** The report's charts as Vega-Lite specs; a chart with no data is left out. */
export function buildCharts(results: Results): Chart[] {
  const handoff = results.benchmarks.flatMap((bench) =>
    bench.handoff
      ? [
          { backend: bench.backend, measure: 'p50', ms: bench.handoff.p50Ms },
          { backend: bench.backend, measure: 'p99', ms: bench.handoff.p99Ms },
        ]
      : [],
  );
  const failover = results.benchmarks.flatMap((bench) =>
    bench.failover
      ? [
          { backend: bench.backend, measure: 'failover (median)', ms: bench.failover.medianMs },
          { backend: bench.backend, measure: 'holder ttl / session', ms: bench.failover.expiryMs },
        ]
      : [],
  );
  return [
    latencyDistribution(results),
    latencyAgainstFloor(results),
    throughput(results),
    barsPerBackend('Hand-off latency', 'From release() to a waiting client holding the lock.', handoff),
    barsPerBackend(
      'Failover: holder SIGKILLed → next holder',
      'A crashed holder releases nothing: the next holder waits out the ttl or session.',
      failover,
    ),
  ].filter((chart): chart is Chart => chart !== undefined);
}

/** Renders a Vega-Lite spec to an SVG string with vega's headless view (no DOM, no network). */
export async function renderChartSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
