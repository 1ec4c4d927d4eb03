import type { Capabilities } from '@dlock/core';
import { majority, permitQuorum } from '../../quorum.js';
import type { Results, SemaphoreRecord } from '../../results.js';
import { type RowPoint, figurePoint, rowChart } from '../charts.js';
import { formatFigure, formatMs, formatRate, formatRateFigure, semaphoreRow, semaphoreTable } from '../tables.js';
import { type FigureKind, scenario, term, unsupportedFindings } from './section.js';
import { floorComparisons, noisyFinding } from './uncontended.js';

const percent = (share: number) => `${Math.round(share * 100)}%`;
const servers = (entry: SemaphoreRecord) => `${entry.serverCount} nodes`;

/** What a peer library's semaphore is, as its source reads; the report says it beside its figures. */
const PEER_NATURE: Record<string, string> = {
  'redis-semaphore Semaphore':
    'one sorted set scored by the client’s clock, no queue and no fencing token, and a waiter that polls every 10 ms',
  'redis-semaphore RedlockSemaphore':
    'the same sorted set on every node, granted on a majority of them whatever the limit, and a waiter that polls every 10 ms',
};

function semaphoreCapabilities(results: Results, backend: string): Capabilities | null {
  return results.backends.find((entry) => entry.name === backend)?.semaphoreCapabilities ?? null;
}

/** Uncontended: against the floor, and a majority-quorum peer beside dlock's quorum. */
function uncontendedFindings(results: Results, entries: readonly SemaphoreRecord[]): string[] {
  const out: string[] = [];
  const floors = [
    ...new Map(
      entries.flatMap((entry) =>
        entry.floor ? [[entry.floor.protocol, `${entry.floor.protocol} (${formatFigure(entry.floor.p50Ms)})`]] : [],
      ),
    ).values(),
  ];
  if (floors.length > 0) {
    out.push(
      `The ${term('floor')} here is what an uncontended ${term('semaphore', 'permit')} needs on those servers, sent by the lab’s own bare client: ${floors.join('; ')}.`,
    );
  }
  out.push(
    ...floorComparisons(
      entries.flatMap((entry) =>
        entry.ratioToFloorP50 ? [{ label: semaphoreRow(entry), ratio: entry.ratioToFloorP50 }] : [],
      ),
      'the bookkeeping behind its guarantees — a place in a FIFO queue and a fencing token where it declares them — and client-side lease handling (a timer and a signal per permit)',
    ),
  );
  for (const peer of entries.filter((entry) => entry.origin === 'peer')) {
    const name = peer.subject.split(' · ')[0] as string;
    const nature = PEER_NATURE[name];
    if (nature) out.push(`Peer ${peer.subject}: ${nature}.`);
    if (peer.serverCount > 1) {
      const ours = entries.find(
        (entry) => entry.origin === 'backend' && entry.placement === peer.placement && entry.serverCount === peer.serverCount,
      );
      const need = permitQuorum(peer.serverCount, peer.limit);
      const asks = majority(peer.serverCount);
      if (ours && need > asks) {
        out.push(
          `${ours.subject} asks ${need} of its ${servers(peer)} for each permit of a limit-${peer.limit} semaphore, the peer a ${term('quorum', 'majority')} (${asks}): any ${peer.limit + 1} grants on ${need} nodes share a node, which refuses one of them, while ${peer.limit + 1} majorities need not — with ${asks} of ${peer.serverCount}, up to ${Math.floor((peer.serverCount * peer.limit) / asks)} holders can be inside a limit of ${peer.limit}. The peer is quicker per permit because it asks fewer nodes, and for the same reason it is not a semaphore of ${peer.limit}.`,
        );
      }
    }
  }
  return out;
}

/** The permit hand-off beside the same backend's lock hand-off: the semaphore's own wake-up path. */
function handoffFindings(results: Results, entries: readonly SemaphoreRecord[]): string[] {
  const measured = entries.flatMap((entry) => (entry.handoff ? [{ entry, handoff: entry.handoff }] : []));
  if (measured.length === 0) return [];
  const parts = measured.map(({ entry, handoff }) => {
    const lock = results.benchmarks.find((bench) => bench.backend === entry.subject)?.handoff;
    return `${entry.subject} ${formatFigure(handoff.p50Ms)}, p99 ${formatMs(handoff.p99Ms)}${lock ? ` (its lock: ${formatFigure(lock.p50Ms)})` : ''}`;
  });
  return [
    `Permit ${term('handoff', 'hand-off')} — with ${(entries[0]?.limit ?? 1) - 1} of the ${entries[0]?.limit} permits held elsewhere, from releasing the last one to a waiting client holding it: ${parts.join('; ')}. A push wake-up hands a permit over in a round trip or two, as it does a lock.`,
  ];
}

/** Why a subject's waits and shares look the way they do under contention. */
function mechanism(results: Results, entry: SemaphoreRecord): string {
  const contention = entry.contention;
  if (!contention) return '';
  const waiting = contention.contenders - entry.limit;
  if (entry.origin === 'peer') {
    return `It polls: after a release, whoever polls first wins — often the contender that just released (${term('barging')}) — so most acquires are quick (p50) while some contenders wait long (max) and the slowest one made ${percent(contention.slowestShare)} of the acquisitions.`;
  }
  const capabilities = semaphoreCapabilities(results, entry.subject);
  if (capabilities?.fairness === 'fifo') {
    const expectedMs = contention.opsPerSecond.median > 0 ? (waiting / contention.opsPerSecond.median) * 1000 : 0;
    return `Permits go in arrival order (${term('fifo', 'FIFO')}): each acquire waits its turn behind the ${waiting} others in line, so waits are even and every contender gets its share. ${term('little', 'Little’s law')} puts that wait at ${waiting} ÷ ${formatRate(contention.opsPerSecond.median)}/s = ${formatMs(expectedMs)}; the measured p50 is ${formatFigure(contention.waitMs.p50Ms)}.`;
  }
  const nodes = entry.serverCount > 1 ? ` on all ${entry.serverCount} nodes` : '';
  const quorum =
    entry.serverCount > 1
      ? ` and a permit needs ${permitQuorum(entry.serverCount, entry.limit)} of ${entry.serverCount} nodes: when waiters split the nodes between them nobody reaches that, and each undoes its partial grants and retries (${term('quorum', 'quorum round trips')})`
      : '';
  return `No queue: every release wakes every waiter${nodes} (a ${term('herd')}), they race${quorum}. Who wins is luck, so the slowest contender made ${percent(contention.slowestShare)} of the acquisitions.`;
}

function contentionFindings(results: Results, entries: readonly SemaphoreRecord[]): string[] {
  const contended = entries
    .filter((entry) => entry.contention)
    .sort((a, b) => (b.contention?.opsPerSecond.median ?? 0) - (a.contention?.opsPerSecond.median ?? 0));
  const out = contended.map((entry) => {
    const c = entry.contention as NonNullable<SemaphoreRecord['contention']>;
    const over =
      c.mostInside > entry.limit
        ? ` The contenders saw ${c.mostInside} permits held at once with a limit of ${entry.limit}${entry.origin === 'backend' ? ': a violation of the semaphore’s one promise' : ''}.`
        : '';
    return `${semaphoreRow(entry)}: ${formatRateFigure(c.opsPerSecond)} acquisitions/s; waits p50 ${formatFigure(c.waitMs.p50Ms)}, p99 ${formatMs(c.waitMs.p99Ms)}, max ${formatMs(c.waitMs.maxMs)}; the slowest contender made ${percent(c.slowestShare)} of the acquisitions (even: ${percent(1 / c.contenders)}). ${mechanism(results, entry)}${over}`;
  });
  // The same servers, a barging peer against a FIFO backend: more acquisitions, paid for by fairness.
  for (const peer of contended.filter((entry) => entry.origin === 'peer')) {
    const ours = contended.find(
      (entry) =>
        entry.origin === 'backend' &&
        entry.placement === peer.placement &&
        entry.serverCount === peer.serverCount &&
        semaphoreCapabilities(results, entry.subject)?.fairness === 'fifo',
    );
    const [theirs, mine] = [peer.contention?.opsPerSecond.median ?? 0, ours?.contention?.opsPerSecond.median ?? 0];
    if (ours?.contention && peer.contention && mine > 0 && theirs > mine) {
      out.push(
        `On the same servers the peer made ×${(theirs / mine).toFixed(1)} the acquisitions of ${ours.subject}: a permit that stays with the contender that released it is quick to hand over. ${ours.subject} trades that for order: its slowest contender made ${percent(ours.contention.slowestShare)} of the acquisitions, the peer’s ${percent(peer.contention.slowestShare)} (even: ${percent(1 / peer.contention.contenders)}).`,
      );
    }
  }
  return out;
}

/** Semaphores: an uncontended permit against the floor, and many contenders on a small limit. */
export const semaphoreFigure: FigureKind = {
  id: 'semaphore',
  build(results) {
    const entries = results.semaphores ?? [];
    const unsupported = unsupportedFindings(results, 'semaphore');
    if (entries.length === 0 && unsupported.length === 0) return undefined;
    const uncontended: RowPoint[] = entries.flatMap((entry) => {
      const row = semaphoreRow(entry);
      return [
        ...(entry.floor ? [figurePoint(row, 'floor p50', entry.floor.p50Ms)] : []),
        ...(entry.uncontended
          ? [figurePoint(row, 'p50', entry.uncontended.p50Ms), { row, measure: 'p99', value: entry.uncontended.p99Ms }]
          : []),
      ];
    });
    const throughput: RowPoint[] = entries.flatMap((entry) =>
      entry.contention ? [figurePoint(semaphoreRow(entry), 'acquisitions / s', entry.contention.opsPerSecond)] : [],
    );
    const waits: RowPoint[] = entries.flatMap((entry) => {
      const wait = entry.contention?.waitMs;
      const row = semaphoreRow(entry);
      return wait
        ? [
            figurePoint(row, 'wait p50', wait.p50Ms),
            { row, measure: 'wait p99', value: wait.p99Ms },
            { row, measure: 'wait max', value: wait.maxMs },
          ]
        : [];
    });
    const sample = entries.find((entry) => entry.contention)?.contention;
    const level = sample
      ? `${sample.contenders} contenders on a limit of ${entries[0]?.limit}, each holding its permit ${sample.holdMs} ms`
      : 'many contenders';
    const bound = sample ? ` (blocks of ${formatMs(sample.blockMs)}: no longer wait can show)` : '';
    return {
      id: 'semaphore',
      title: 'Semaphores: an uncontended permit, and contenders on a small limit',
      caption: `A ${term('semaphore')} of limit ${entries[0]?.limit}. Uncontended: one client takes a permit and gives it back, back to back, against the floor of the same servers. Hand-off: with all permits but one held elsewhere, the last one goes back and forth between two clients, timed from its release to the waiter holding it. Contended: ${level}, over up to 8 client connections. Backends, the floor and peer libraries on the same servers are interleaved block by block; a point is the median block and its line the min–max. A wait is an acquire call’s duration; one still waiting when its block ended counts with its wait so far${bound}.`,
      charts: [
        ...(uncontended.length > 0
          ? [
              {
                title: 'Permit acquire + release: p50 (with its spread), floor p50 and p99',
                caption: 'Log scale, so sub-millisecond medians stay readable beside the tails.',
                spec: rowChart({
                  points: uncontended,
                  measures: ['floor p50', 'p50', 'p99'],
                  axisTitle: 'ms (log scale)',
                  log: true,
                }),
              },
            ]
          : []),
        ...(throughput.length > 0
          ? [
              {
                title: `Acquisitions per second: ${level}`,
                caption: 'Log scale: the in-process memory provider runs far above the networked backends.',
                spec: rowChart({
                  points: throughput,
                  measures: ['acquisitions / s'],
                  axisTitle: 'acquisitions / s (log scale)',
                  log: true,
                }),
              },
              {
                title: 'How long an acquire waited: p50 (with its spread), p99 and max',
                caption:
                  'A queue keeps the three close together; a polling peer has a short p50 and a long max (log scale).',
                spec: rowChart({
                  points: waits,
                  measures: ['wait p50', 'wait p99', 'wait max'],
                  axisTitle: 'ms (log scale)',
                  log: true,
                }),
              },
            ]
          : []),
      ],
      table: semaphoreTable(results),
      findings: [
        ...unsupported,
        ...uncontendedFindings(results, entries),
        ...handoffFindings(results, entries),
        ...contentionFindings(results, entries),
        `What happens to the limit when a permit holder is paused past its lease: ${scenario('semaphore-holder-pause')}; which guarantees the conformance kit checked: [the semaphore section of the semantics](#semantics-semaphore).`,
        ...noisyFinding(
          entries.flatMap((entry) =>
            entry.uncontended?.p50Ms.noisy || entry.contention?.opsPerSecond.noisy ? [semaphoreRow(entry)] : [],
          ),
        ),
      ],
    };
  },
};
