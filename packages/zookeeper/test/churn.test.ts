import { BackendUnavailableError, type Lease, type LockProvider, LockTimeoutError } from '@dlock/core';
import { expect, it } from 'vitest';
import type { ZooKeeperSession } from '../src/session.js';
import { childrenOf, primitivePath, tree } from './primitive-support.js';
import { serverWatchCount, until, useStandaloneZooKeeper } from './support.js';

// Issue 12: every timed-out or aborted acquire used to leave a watcher function registered in
// node-zookeeper-client on the holder's node (2000 acquires: 1991 listeners, 2.6 MB of heap, a
// MaxListenersExceededWarning at the 11th), while the server held only 2 watches. The semaphore's and
// the read-write lock's waiters go through the same shared watches, so they are held to the same bound.
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

async function holding(acquired: Promise<Lease>): Promise<() => Promise<void>> {
  const lease = await acquired;
  return () => lease.release();
}

/** A semaphore's internal mutex queue and lease nodes, in sequence order. */
async function permitNodes(key: string): Promise<{ mutexQueue: string[]; leases: string[] }> {
  const base = primitivePath(ROOT, 'semaphore', key);
  const [mutexQueue, leases] = await Promise.all([
    childrenOf(zk.inspector, `${base}/locks`),
    childrenOf(zk.inspector, `${base}/leases`),
  ]);
  return { mutexQueue, leases };
}

interface Primitive {
  /** What waits: 'acquires', 'permit acquires', 'read acquires'. */
  readonly what: string;
  /** Takes what every waiter then waits for, under `key`; resolves with the function that lets go. */
  hold(key: string): Promise<() => Promise<void>>;
  /** One waiter that gives up after 10 ms. */
  wait(provider: LockProvider, key: string): Promise<Lease>;
  /** What the server stores for `key` beyond the holders' own nodes: must be nothing once the waiters are gone. */
  leftByWaiters(key: string): Promise<string[]>;
  /** Everything the server stores for `key`: nothing once the holder has released. */
  residue(key: string): Promise<string[]>;
}

const PRIMITIVES: Primitive[] = [
  {
    what: 'acquires',
    hold: (key) => holding(providers.open().acquire(key)),
    wait: (provider, key) => provider.acquire(key, { waitMs: 10 }),
    leftByWaiters: async (key) => (await zk.inspector.queue(ROOT, key)).slice(1),
    residue: (key) => zk.inspector.residue(ROOT, key),
  },
  {
    what: 'permit acquires',
    // The permit is held and another client waits at the head of the internal mutex (watching the
    // leases), so the waiters queue behind its mutex node and watch it, as they would a lock's holder.
    hold: async (key) => {
      const held = await providers.open().semaphore(key, { limit: 1 }).acquire();
      const head = providers.open().semaphore(key, { limit: 1 }).acquire({ waitMs: 170_000 });
      await until(async () => (await permitNodes(key)).leases.length === 2, 5_000, 'the head leasing');
      return async () => {
        await held.release();
        await (await head).release();
      };
    },
    wait: (provider, key) => provider.semaphore(key, { limit: 1 }).acquire({ waitMs: 10 }),
    leftByWaiters: async (key) => {
      const { mutexQueue, leases } = await permitNodes(key);
      return [...mutexQueue.slice(1), ...leases.slice(2)];
    },
    residue: (key) => tree(zk.inspector, primitivePath(ROOT, 'semaphore', key)),
  },
  {
    what: 'read acquires',
    hold: (key) => holding(providers.open().readWriteLock(key).write.acquire()),
    wait: (provider, key) => provider.readWriteLock(key).read.acquire({ waitMs: 10 }),
    leftByWaiters: async (key) =>
      (await childrenOf(zk.inspector, primitivePath(ROOT, 'read-write', key))).slice(1),
    residue: (key) => tree(zk.inspector, primitivePath(ROOT, 'read-write', key)),
  },
];

for (const primitive of PRIMITIVES) {
  it(`${WAITERS} ${primitive.what} that time out against a held key leave the client's watchers, the server's watches and the heap where they were`, async () => {
    const key = `churn-${primitive.what.replace(' ', '-')}`;
    const letGo = await primitive.hold(key);
    const provider = providers.open();
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      // Outcomes are counted, not asserted one by one: vitest keeps ~2.7 KB per `expect().rejects`,
      // which would drown the leak this test looks for.
      const outcomes = new Map<string, number>();
      const timeOut = async () => {
        const outcome = await primitive.wait(provider, key).then(
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
      const deadline = performance.now() + 90_000;
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
        `[@dlock/zookeeper] ${WAITERS} timed-out ${primitive.what} (${unavailable} of them unanswered in time): library watchers ${before.libraryWatchers} → ${after.libraryWatchers} (peak ${peakLibraryWatchers}), ` +
          `fans ${before.fans} → ${after.fans}, server wchs ${before.serverWatches} → ${after.serverWatches}` +
          (before.heap === undefined || after.heap === undefined
            ? ', heap not measured (no --expose-gc)'
            : `, heap after GC ${(before.heap / 2 ** 20).toFixed(2)} → ${(after.heap / 2 ** 20).toFixed(2)} MiB`),
      );
      // One shared watcher per watched path: the holder's node (or a semaphore's leases), plus the
      // nodes of at most CONCURRENCY waiters in flight (their own-node and predecessor watches).
      expect(peakLibraryWatchers).toBeLessThanOrEqual(2 * CONCURRENCY + 1);
      expect(after.libraryWatchers).toBeLessThanOrEqual(before.libraryWatchers);
      expect(after.fans).toBeLessThanOrEqual(before.fans);
      expect(after.serverWatches).toBeLessThanOrEqual(before.serverWatches);
      // The leak cost 2.6 MB per 2000 waiters; a generous bound for GC noise still catches it.
      if (before.heap !== undefined && after.heap !== undefined) {
        expect(after.heap - before.heap).toBeLessThan(1.5 * 2 ** 20);
      }
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning')).toEqual([]);
      expect(await primitive.leftByWaiters(key)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await letGo();
    }
    expect(await primitive.residue(key)).toEqual([]);
  }, 180_000);
}
