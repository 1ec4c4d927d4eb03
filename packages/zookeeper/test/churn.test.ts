import { BackendUnavailableError, LockTimeoutError } from '@dlock/core';
import { expect, it } from 'vitest';
import type { ZooKeeperSession } from '../src/session.js';
import { serverWatchCount, useStandaloneZooKeeper } from './support.js';

// Issue 12: every timed-out or aborted acquire used to leave a watcher function registered in
// node-zookeeper-client on the holder's node (2000 acquires: 1991 listeners, 2.6 MB of heap, a
// MaxListenersExceededWarning at the 11th), while the server held only 2 watches.
const ROOT = '/dlock-churn';
const zk = useStandaloneZooKeeper(ROOT);
const { providers } = zk;

const WAITERS = 2_000;
const CONCURRENCY = 4;
/** Acquires before the baseline: the session open, code compiled, caches and pools at their working size. */
const WARM_UP = 400;

const serverWatches = () => serverWatchCount(zk.server);

/** Heap in use after a full collection, when the test runs with --expose-gc (vitest.config.ts). */
function heapAfterGc(): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return undefined;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

function snapshot(session: ZooKeeperSession) {
  return { libraryWatchers: session.libraryWatchers(), fans: session.watches.size };
}

it(`${WAITERS} acquires that time out against a held key leave the client's watchers, the server's watches and the heap where they were`, async () => {
  const key = 'churn';
  const held = await providers.open().acquire(key);
  const provider = providers.open();
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => warnings.push(warning);
  process.on('warning', onWarning);
  try {
    // Outcomes are counted, not asserted one by one: vitest keeps ~2.7 KB per `expect().rejects`,
    // which would drown the leak this test looks for.
    const outcomes = new Map<string, number>();
    const timeOut = async () => {
      const outcome = await provider.acquire(key, { waitMs: 10 }).then(
        (lease) => {
          lease.release().catch(() => {});
          return 'granted';
        },
        // On a loaded machine a create may take longer than waitMs + settleGraceMs to be answered:
        // core then reports the backend unavailable, and cleans up all the same.
        (error: unknown) =>
          error instanceof LockTimeoutError
            ? 'timeout'
            : error instanceof BackendUnavailableError
              ? 'unavailable'
              : String(error),
      );
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    };
    for (let i = 0; i < WARM_UP; i++) await timeOut();
    const [session] = providers.driver(provider).liveSessions();
    if (!session) throw new Error('no session');
    const before = { ...snapshot(session), serverWatches: await serverWatches(), heap: heapAfterGc() };

    let started = 0;
    let peakLibraryWatchers = 0;
    const deadline = performance.now() + 60_000;
    const churn = async () => {
      while (started < WAITERS && performance.now() < deadline) {
        started++;
        await timeOut();
        peakLibraryWatchers = Math.max(peakLibraryWatchers, session.libraryWatchers());
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, churn));
    expect(started).toBe(WAITERS);
    const { timeout = 0, unavailable = 0, ...others } = Object.fromEntries(outcomes);
    expect(others).toEqual({});
    expect(timeout + unavailable).toBe(WAITERS + WARM_UP);

    const after = { ...snapshot(session), serverWatches: await serverWatches(), heap: heapAfterGc() };
    console.info(
      `[@dlock/zookeeper] ${WAITERS} timed-out acquires (${unavailable} of them unanswered in time): library watchers ${before.libraryWatchers} → ${after.libraryWatchers} (peak ${peakLibraryWatchers}), ` +
        `fans ${before.fans} → ${after.fans}, server wchs ${before.serverWatches} → ${after.serverWatches}` +
        (before.heap === undefined || after.heap === undefined
          ? ', heap not measured (no --expose-gc)'
          : `, heap after GC ${(before.heap / 2 ** 20).toFixed(2)} → ${(after.heap / 2 ** 20).toFixed(2)} MiB`),
    );
    // One shared watcher per watched path: the holder's node, plus the nodes of at most CONCURRENCY
    // waiters in flight (their own-node and predecessor watches) while the churn runs.
    expect(peakLibraryWatchers).toBeLessThanOrEqual(2 * CONCURRENCY + 1);
    expect(after.libraryWatchers).toBeLessThanOrEqual(before.libraryWatchers);
    expect(after.fans).toBeLessThanOrEqual(before.fans);
    expect(after.serverWatches).toBeLessThanOrEqual(before.serverWatches);
    // The leak cost 2.6 MB per 2000 waiters; a generous bound for GC noise still catches it.
    if (before.heap !== undefined && after.heap !== undefined) {
      expect(after.heap - before.heap).toBeLessThan(1.5 * 2 ** 20);
    }
    expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
    expect(await zk.inspector.queue(ROOT, key)).toHaveLength(1);
  } finally {
    process.off('warning', onWarning);
    await held.release();
  }
  expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
});
