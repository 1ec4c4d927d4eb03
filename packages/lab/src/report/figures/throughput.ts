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
    return `its waiters are ${term('polling', 'polling')}: a release wakes nobody, and the contender that just released usually takes the lock straight back (${term('barging')}) before a poller looks again`;
  }
  if (capabilities.fairness === 'fifo') {
    return `it queues waiters in order (${term('fifo', 'FIFO')}) and wakes only the next one: no ${term('herd')} and no ${term('barging')}, so under contention every operation is a ${term('handoff', 'hand-off')} to another client`;
  }
  const nodes = serverCount > 1 ? ` on every one of its ${serverCount} nodes` : '';
  return `every release wakes every waiter${nodes} (${term('push', 'push')}, a ${term('herd')}): all of them retry, one wins and the rest go back to waiting, while the releasing contender can also take the lock straight back (${term('barging')})`;
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
  const even = 1 / highest;
  const describe = (bench: BenchmarkRecord) => {
    const record = at(bench, highest) as ContentionRecord;
    return `${bench.backend} ${formatRateFigure(record.opsPerSecond)} ops/s, busiest contender ${percent(record.busiestShare)} of all operations (even: ${percent(even)})`;
  };
  const [fastest, second] = contended;
  if (fastest) {
    const capabilities = capabilitiesOf(results, fastest.backend);
    const overlapping =
      second &&
      (at(second, highest)?.opsPerSecond.max ?? 0) >= (at(fastest, highest)?.opsPerSecond.min ?? Number.POSITIVE_INFINITY);
    out.push(
      `Most operations with ${contentionLevel(highest, 1)}${overlapping ? ' (within the spread of the next one)' : ''}: ${describe(fastest)}.${
        capabilities ? ` Why: ${wakeupMechanism(capabilities, serverCountOf(results, fastest.backend))}.` : ''
      }${
        capabilities?.wakeup === 'poll'
          ? ` Throughput is high because the lock rarely changes hands; the waiters pay for it, as its ${figure('handoff', 'hand-off')} shows. ${fastest.backend} is also unsafe (see its ${scenario('clock-skew', 'fault scenarios')}): fast is not the same as correct.`
          : ''
      }`,
    );
  }
  for (const bench of contended.slice(1)) {
    const capabilities = capabilitiesOf(results, bench.backend);
    if (capabilities) {
      out.push(`${describe(bench)}: ${wakeupMechanism(capabilities, serverCountOf(results, bench.backend))}.`);
    }
  }
  for (const bench of contended) {
    const one = at(bench, lowest);
    const many = at(bench, highest);
    if (!one || !many || many.opsPerSecond.median <= 0) continue;
    const drop = one.opsPerSecond.median / many.opsPerSecond.median;
    if (drop < 2) continue;
    const nodes = serverCountOf(results, bench.backend);
    const why =
      nodes > 1
        ? ` Each attempt is a round trip to all ${nodes} nodes and needs a ${term('quorum', 'majority')} of them: with many contenders the votes split, nobody reaches a majority, each contender undoes its partial locks on every node and waits to try again — ${term('quorum', 'quorum round trips')} multiplied by the contenders.`
        : ' Each waiter that is woken and loses costs the server another request, and the requests of many contenders queue behind one another.';
    out.push(
      `${bench.backend} falls from ${formatRate(one.opsPerSecond.median)} ops/s with ${contentionLevel(lowest, 1)} to ${formatRate(many.opsPerSecond.median)} with ${contentionLevel(highest, 1)} (÷${drop.toFixed(1)}).${why}`,
    );
  }
  const fifo = contended.filter((bench) => capabilitiesOf(results, bench.backend)?.fairness === 'fifo');
  for (const bench of fifo) {
    const handoff = bench.handoff?.p50Ms.median;
    const record = at(bench, highest);
    if (!handoff || !record) continue;
    out.push(
      `${bench.backend} is ${term('fifo', 'FIFO')}: with ${contentionLevel(highest, 1)} every operation is a hand-off to another client, so compare its ${formatRate(record.opsPerSecond.median)} ops/s with 1 ÷ its hand-off p50 of ${formatFigure(bench.handoff?.p50Ms)}: ${formatRate(1000 / handoff)} per second.`,
    );
  }
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
