import { setTimeout as sleep } from 'node:timers/promises';
import { runContenders } from './contention.js';
import { timedAcquire } from './contention.js';
import { LatencyRecorder } from './histogram.js';
import type { PermitTaker } from './semaphore.js';

/** A read-write lock as the mix sees it: its two sides, each taking a lease and giving it back. */
export interface ReadWriteTaker {
  readonly read: PermitTaker;
  readonly write: PermitTaker;
}

export interface ReadWriteBlock {
  readonly reads: number;
  readonly writes: number;
  readonly seconds: number;
  readonly readWaits: LatencyRecorder;
  readonly writeWaits: LatencyRecorder;
  readonly mostReaders: number;
  readonly conflicts: number;
  readonly errors: number;
}

/**
 * `contenders` loops on one read-write lock, spread over `takers` (one per client): one operation in
 * `writeEvery` takes the write lock, the rest the read lock (counted over all contenders, so writes
 * arrive steadily), each held `holdMs`. Counts, as the contenders see it (up once granted, down before
 * the release is sent), the most readers together and every write lease granted while another lease
 * was held — a conflict, which must never happen.
 */
export async function measureReadWriteMix(
  takers: readonly ReadWriteTaker[],
  contenders: number,
  writeEvery: number,
  holdMs: number,
  budgetMs: number,
  parent: AbortSignal,
): Promise<ReadWriteBlock> {
  const readWaits = new LatencyRecorder();
  const writeWaits = new LatencyRecorder();
  let begun = 0;
  let [reads, writes, readers, writers, mostReaders, conflicts] = [0, 0, 0, 0, 0, 0];
  const { seconds, errors } = await runContenders(
    contenders,
    budgetMs,
    parent,
    async (index, signal, window) => {
      const taker = takers[index % takers.length] as ReadWriteTaker;
      // Every writeEvery-th operation begun, whoever begins it: writes arrive steadily even when each
      // contender gets only a few operations into a block (a slow backend, a busy machine).
      const write = ++begun % writeEvery === 0;
      const release = await timedAcquire(
        () => (write ? taker.write : taker.read)(signal),
        write ? writeWaits : readWaits,
        window.afterWarmup(performance.now()),
      );
      const acquiredAt = performance.now();
      if (write) {
        if (readers > 0 || writers > 0) conflicts++;
        writers++;
      } else {
        if (writers > 0) conflicts++;
        mostReaders = Math.max(mostReaders, ++readers);
      }
      try {
        await sleep(holdMs);
      } finally {
        if (write) writers--;
        else readers--;
        await release();
      }
      if (window.contains(acquiredAt)) {
        if (write) writes++;
        else reads++;
      }
    },
  );
  return { reads, writes, seconds, readWaits, writeWaits, mostReaders, conflicts, errors };
}
