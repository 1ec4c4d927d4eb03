import type { FaultRecord, Results } from '../results.js';
import { plural } from '../words.js';
import { scenario, term } from './figures/section.js';

/** Anchors of a fault result: `fault-<scenario>` on its first row, `fault-<scenario>-<backend>` on each. */
export function faultAnchors(results: Results, fault: FaultRecord): string[] {
  const first = results.faults.find((entry) => entry.scenario === fault.scenario) === fault;
  return [...(first ? [`fault-${fault.scenario}`] : []), `fault-${fault.scenario}-${fault.backend}`];
}

/**
 * How to read a row of the fault table, with an example taken from this run: a fenced claim that held
 * while holds overlapped reads as a contradiction until "fenced" is explained.
 */
export function faultGuide(results: Results): string[] {
  if (results.faults.length === 0) return [];
  const out = [
    `Contenders run in separate processes and update a shared counter under the lock. The counter stamps every request with its own clock and the writer’s ${term('fencing', 'fencing token')}, and the checker counts ${term('overlap', 'overlaps, lost updates, stale writes, updates lost despite fencing and token regressions')}.`,
    ...(results.faults.some((fault) => (fault.primitive ?? 'lock') !== 'lock')
      ? [
          `The same counter serves the ${term('semaphore', 'semaphore')} and ${term('read-write', 'read-write')} scenarios: for a semaphore it counts the times more than the limit were inside, for a read-write lock the writes that landed while a reader was reading — each also as a resource that checks tokens would have seen it.`,
        ]
      : []),
    `Read a row as: the ${term('claim', 'claim')} is what the backend promises in that scenario — safe, fenced or unsafe — and the ${term('verdict', 'result')} says whether that promise held.`,
  ];
  const example = results.faults.find(
    (fault) =>
      (fault.primitive ?? 'lock') === 'lock' &&
      fault.claim === 'fenced' &&
      fault.verdict === 'held' &&
      fault.metrics.overlaps > 0,
  );
  if (example) {
    const m = example.metrics;
    out.push(
      `For example ${example.backend} · fenced · held · ${plural(m.overlaps, 'overlap')} · ${plural(m.lostUpdates, 'lost update')} (${scenario(example.scenario)}) is not a contradiction: the overlaps and lost updates are what a resource that ignores tokens suffers — no lock can stop a paused process. The claim is fenced, and it held because a resource that checks tokens would have rejected ${plural(m.staleWrites, 'stale write')} and lost ${plural(m.lostUpdatesWithFencing, 'update')}.`,
    );
  }
  return out;
}
