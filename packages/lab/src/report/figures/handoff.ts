import type { Results } from '../../results.js';
import { type RowPoint, figurePoint, rowChart } from '../charts.js';
import { formatFigure, handoffTable } from '../tables.js';
import { type FigureKind, term } from './section.js';

function findings(results: Results): string[] {
  const measured = results.benchmarks.flatMap((bench) => {
    const capabilities = results.backends.find((entry) => entry.name === bench.backend)?.capabilities;
    return bench.handoff && capabilities ? [{ bench, capabilities, handoff: bench.handoff }] : [];
  });
  const push = measured.filter((entry) => entry.capabilities.wakeup === 'push');
  const poll = measured.filter((entry) => entry.capabilities.wakeup === 'poll');
  const out: string[] = [];
  const slowestPush = push.sort((a, b) => b.handoff.p50Ms.median - a.handoff.p50Ms.median)[0];
  for (const { bench, handoff } of poll) {
    out.push(
      `${bench.backend} hands the lock over in ${formatFigure(handoff.p50Ms)}${
        slowestPush
          ? `, ×${(handoff.p50Ms.median / slowestPush.handoff.p50Ms.median).toFixed(0)} the slowest ${term('push', 'push')} backend (${slowestPush.bench.backend}, ${formatFigure(slowestPush.handoff.p50Ms)})`
          : ''
      }: its waiters are ${term('polling')}, so a waiter notices a release only at its next poll. That is the price of the throughput it shows under contention.`,
    );
  }
  const fifo = push.filter((entry) => entry.capabilities.fairness === 'fifo').map((entry) => entry.bench.backend);
  const herd = push.filter((entry) => entry.capabilities.fairness !== 'fifo').map((entry) => entry.bench.backend);
  if (fifo.length > 0) {
    out.push(
      `${fifo.join(', ')} wake only the next waiter in line (${term('fifo', 'FIFO')}): one notification, one attempt that succeeds.`,
    );
  }
  if (herd.length > 0) {
    out.push(
      `${herd.join(', ')} publish every release to every waiter; with a single waiter, as here, that costs nothing extra — with many it becomes a ${term('herd')} (see the throughput figure).`,
    );
  }
  return out;
}

/** Release → a waiting client (another connection) holds the lock. */
export const handoffFigure: FigureKind = {
  id: 'handoff',
  build(results) {
    const points: RowPoint[] = results.benchmarks.flatMap((bench) =>
      bench.handoff
        ? [
            figurePoint(bench.backend, 'p50', bench.handoff.p50Ms),
            { row: bench.backend, measure: 'p99', value: bench.handoff.p99Ms },
          ]
        : [],
    );
    if (points.length === 0) return undefined;
    return {
      id: 'handoff',
      title: 'Hand-off: release() → a waiting client holds the lock',
      caption:
        'One holder, one waiter on another connection; the time from calling release() to the waiter’s acquire resolving. Blocks interleaved across the backends of a server set.',
      charts: [
        {
          title: 'Hand-off p50 (with its spread) and p99',
          caption: 'Log scale: polling backends hand off an order of magnitude slower than push backends.',
          spec: rowChart({ points, measures: ['p50', 'p99'], axisTitle: 'ms (log scale)', log: true }),
        },
      ],
      table: handoffTable(results),
      findings: findings(results),
    };
  },
};
