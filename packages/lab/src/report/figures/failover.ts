import type { Results } from '../../results.js';
import { type RowPoint, figurePoint, rowChart } from '../charts.js';
import { failoverTable, formatFigure, formatMs } from '../tables.js';
import { type FigureKind, scenario, term } from './section.js';

function findings(results: Results): string[] {
  return results.benchmarks.flatMap((bench) => {
    const failover = bench.failover;
    const capabilities = results.backends.find((entry) => entry.name === bench.backend)?.capabilities;
    if (!failover || !capabilities) return [];
    const what = capabilities.expiry === 'session' ? term('session') : term('lease', 'lease ttl');
    const ratio = failover.takeoverMs.median / failover.expiryMs;
    return [
      `${bench.backend}: the next holder got the lock ${formatFigure(failover.takeoverMs)} after the kill, ${Math.round(ratio * 100)}% of its ${what} (${formatMs(failover.expiryMs)}). ${
        capabilities.expiry === 'session'
          ? `The server expires the dead client’s session${ratio > 1.05 ? ' — on its own schedule, so a little after the timeout —' : ''}, then the next waiter’s watch fires.`
          : 'The killed holder had already used part of its ttl when it died, so the rest of it is what the waiter waits out.'
      }`,
    ];
  });
}

/** Holder SIGKILLed → next holder. */
export const failoverFigure: FigureKind = {
  id: 'failover',
  build(results) {
    const points: RowPoint[] = results.benchmarks.flatMap((bench) =>
      bench.failover
        ? [
            figurePoint(bench.backend, 'takeover (median, min–max)', bench.failover.takeoverMs),
            { row: bench.backend, measure: 'holder ttl / session', value: bench.failover.expiryMs },
          ]
        : [],
    );
    if (points.length === 0) return undefined;
    return {
      id: 'failover',
      title: 'Failover: holder SIGKILLed → next holder',
      caption: `Holder processes killed one after another while others wait on the same key: the time from each kill to the next holder. A crashed holder releases nothing (see ${scenario('holder-crash')}), so the next one waits out the ttl or session.`,
      charts: [
        {
          title: 'Takeover time against the holder’s ttl or session timeout',
          caption: 'Each takeover is one sample; the line is the min–max of the samples.',
          spec: rowChart({
            points,
            measures: ['takeover (median, min–max)', 'holder ttl / session'],
            axisTitle: 'ms',
            log: false,
          }),
        },
      ],
      table: failoverTable(results),
      findings: findings(results),
    };
  },
};
