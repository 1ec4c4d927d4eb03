import type { Capabilities } from '@dlock/core';
import type { BenchmarkRecord, ContentionRecord, Results } from '../../results.js';
import { contentionLevel } from '../../words.js';
import { seriesChart } from '../charts.js';
import { contentionLevels, contentionTable, formatFigure, formatRate, formatRateFigure } from '../tables.js';
import { type FigureKind, figure, scenario, term } from './section.js';

const capabilitiesOf = (results: Results, backend: string): Capabilities | null =>
  results.backends.find((entry) => entry.name === backend)?.capabilities ?? null;
const serverCountOf = (results: Results, backend: string) =>
  results.backends.find((entry) => entry.name === backend)?.serverCount ?? 0;
const networked = (results: Results, bench: BenchmarkRecord) =>
  results.backends.find((entry) => entry.name === bench.backend)?.placement !== 'in-process';
const at = (bench: BenchmarkRecord, contenders: number, keys = 1): ContentionRecord | undefined =>
  bench.contention.find((entry) => entry.contenders === contenders && entry.keys === keys);
const percent = (share: number) => `${Math.round(share * 100)}%`;

/** How a backend's waiters learn that the lock is free, and what that does under contention. */
function wakeupMechanism(capabilities: Capabilities, serverCount: number): string {
  if (capabilities.wakeup === 'poll') {
    return `Its waiters are ${term('polling', 'polling')}: a release wakes nobody, and the contender that just released usually takes the lock straight back (${term('barging')}) before a poller looks again`;
  }
  if (capabilities.fairness === 'fifo') {
    return `It queues waiters in order (${term('fifo', 'FIFO')}) and wakes only the next one: no ${term('herd')} and no ${term('barging')}, so under contention every operation is a ${term('handoff', 'hand-off')} to another client`;
  }
  const nodes = serverCount > 1 ? ` on every one of its ${serverCount} nodes` : '';
  return `Every release wakes every waiter${nodes} (${term('push', 'push')}, a ${term('herd')}): all of them retry, one wins and the rest go back to waiting, while the releasing contender can also take the lock straight back (${term('barging')})`;
}

/** What happens to one backend between the fewest and the most contenders, and why. */
function backendFinding(results: Results, bench: BenchmarkRecord, lowest: number, highest: number): string {
  const many = at(bench, highest) as ContentionRecord;
  const one = at(bench, lowest);
  const capabilities = capabilitiesOf(results, bench.backend);
  const nodes = serverCountOf(results, bench.backend);
  const drop = one && many.opsPerSecond.median > 0 ? one.opsPerSecond.median / many.opsPerSecond.median : 0;
  const parts = [
    `${bench.backend}: ${formatRateFigure(many.opsPerSecond)} ops/s with ${contentionLevel(highest, 1)}${
      drop >= 2 && one ? `, ÷${drop.toFixed(1)} from ${formatRate(one.opsPerSecond.median)} with ${contentionLevel(lowest, 1)}` : ''
    }${
      many.operations >= 2 * highest
        ? `; the busiest contender did ${percent(many.busiestShare)} of the operations (even: ${percent(1 / highest)})`
        : ''
    }.`,
  ];
  if (capabilities) parts.push(`${wakeupMechanism(capabilities, nodes)}.`);
  if (nodes > 1 && drop >= 2) {
    parts.push(
      `And each attempt is a round trip to all ${nodes} nodes that needs a ${term('quorum', 'majority')}: with many contenders the votes split, nobody reaches a majority, and each contender undoes its partial locks on every node before it tries again — ${term('quorum', 'quorum round trips')} multiplied by the contenders.`,
    );
  }
  const handoff = bench.handoff?.p50Ms.median;
  if (capabilities?.fairness === 'fifo' && handoff) {
    parts.push(
      `So compare it with 1 ÷ its ${figure('handoff', 'hand-off')} p50 of ${formatFigure(bench.handoff?.p50Ms)}: ${formatRate(1000 / handoff)} per second.`,
    );
  }
  return parts.join(' ');
}

function findings(results: Results): string[] {
  const levels = contentionLevels(results.benchmarks).filter((level) => level.keys === 1);
  const lowest = levels[0]?.contenders;
  const highest = levels.at(-1)?.contenders;
  if (lowest === undefined || highest === undefined || lowest === highest) return [];
  const out: string[] = [];
  const contended = results.benchmarks
    .filter((bench) => networked(results, bench) && at(bench, highest))
    .sort((a, b) => (at(b, highest)?.opsPerSecond.median ?? 0) - (at(a, highest)?.opsPerSecond.median ?? 0));
  const [fastest, second] = contended;
  if (fastest) {
    const overlapping =
      second &&
      (at(second, highest)?.opsPerSecond.max ?? 0) >= (at(fastest, highest)?.opsPerSecond.min ?? Number.POSITIVE_INFINITY);
    const polling = capabilitiesOf(results, fastest.backend)?.wakeup === 'poll';
    out.push(
      `Most operations under contention${overlapping ? ' (though within the spread of the next one)' : ''}: ${backendFinding(results, fastest, lowest, highest)}${
        polling
          ? ` Throughput is high because the lock rarely changes hands; the waiters pay for it, as its ${figure('handoff', 'hand-off')} shows. ${fastest.backend} is also unsafe (see its ${scenario('clock-skew', 'fault scenarios')}): fast is not the same as correct.`
          : ''
      }`,
    );
  }
  for (const bench of contended.slice(1)) out.push(backendFinding(results, bench, lowest, highest));
  const spread = results.benchmarks.flatMap((bench) => {
    const single = at(bench, highest);
    const keyed = at(bench, highest, highest);
    return single && keyed && single.opsPerSecond.median > 0
      ? [`${bench.backend} ×${(keyed.opsPerSecond.median / single.opsPerSecond.median).toFixed(1)}`]
      : [];
  });
  if (spread.length > 0) {
    out.push(
      `With a key each (${contentionLevel(highest, highest)}) nobody waits: the gain over one shared key is the cost of contention itself — ${spread.join(', ')}.`,
    );
  }
  return out;
}

/** Throughput with N contenders on one key, and on one key each. */
export const throughputFigure: FigureKind = {
  id: 'throughput',
  build(results) {
    const points = results.benchmarks.flatMap((bench) =>
      bench.contention.map((entry) => ({
        series: bench.backend,
        x: entry.keys === 1 ? `${entry.contenders} on 1 key` : `${entry.contenders} on ${entry.keys} keys`,
        order: entry.keys * 1000 + entry.contenders,
        value: entry.opsPerSecond.median,
        low: entry.opsPerSecond.min,
        high: entry.opsPerSecond.max,
      })),
    );
    if (points.length === 0) return undefined;
    return {
      id: 'throughput',
      title: 'Throughput under contention',
      caption:
        'Acquire + release per second with N contenders on one key, and with as many keys as contenders, over up to 8 client connections per backend. Backends are interleaved block by block; a point is the median block and its line the min–max.',
      charts: [
        {
          title: 'Operations per second by contention level',
          caption:
            'Log scale: the in-process memory provider runs orders of magnitude above the networked backends.',
          spec: seriesChart({ points, xTitle: 'contenders on keys', yTitle: 'operations / s (log scale)' }),
        },
      ],
      table: contentionTable(results),
      findings: findings(results),
    };
  },
};
