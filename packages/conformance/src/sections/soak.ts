import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type Lease, LockError, type LockProvider, UnsupportedError } from '@dlock/core';
import { expect } from 'vitest';
import type { Guarantee, KitContext } from '../kit.js';
import { sleep } from '../timing.js';

/** Counts by name: listeners, subscriptions, watches, handles. */
export type Counts = Record<string, number>;

export interface SoakHooks {
  /**
   * How long the churn runs (ms). Default: $DLOCK_SOAK_MS, else 10 000 (enough for a leak of one
   * listener, watch or handle per give-up to show as hundreds; set it higher for a longer soak).
   */
  durationMs?: number;
  /**
   * What the client side keeps for `providers`: listeners on its connections and signals, subscribed
   * channels, registered watchers. Must return to its baseline once the churn is over.
   */
  client?: (providers: readonly LockProvider[]) => Counts | Promise<Counts>;
  /** What the server keeps: ZooKeeper `wchs` watches, etcd watchers, Redis `PUBSUB NUMSUB` subscribers. */
  server?: () => Counts | Promise<Counts>;
  /** Allowed heap growth after GC (bytes). Default 16 MiB: the churn must not keep per-request state. */
  heapGrowthBytes?: number;
}

/** A garbage collection on demand, without --expose-gc on the command line. */
function collectGarbage(): void {
  const global = globalThis as { gc?: () => void };
  if (!global.gc) {
    setFlagsFromString('--expose-gc');
    global.gc = runInNewContext('gc') as () => void;
  }
  global.gc();
}

async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    collectGarbage();
    await sleep(20);
  }
  return process.memoryUsage().heapUsed;
}

function activeResources(): Counts {
  const counts: Counts = {};
  for (const type of process.getActiveResourcesInfo())
    counts[`handle:${type}`] = (counts[`handle:${type}`] ?? 0) + 1;
  return counts;
}

/** Keys of `after` that grew by more than `slack` over `before` (missing counts as 0). */
function grown(before: Counts, after: Counts, slack: number): Counts {
  const growth: Counts = {};
  for (const [name, value] of Object.entries(after)) {
    const delta = value - (before[name] ?? 0);
    if (delta > slack) growth[name] = delta;
  }
  return growth;
}

/**
 * The churn soak (issue 12): contenders acquire, time out (waitMs 10), abort, try and release in a loop
 * on a few hot keys — locks, and permits and read leases where the backend has them — for a bounded
 * time. Before and after, with everything released: heap after GC, client-side listeners and
 * subscriptions, server-side watches, active handles, and what is left at the backend. Everything must
 * return to its baseline within a small bound, so that no leak of one listener per waiter (the
 * ZooKeeper watcher leak) can hide again.
 */
export function soakGuarantees(kit: KitContext): Guarantee[] {
  const soak = kit.options.soak;
  const durationMs = soak?.durationMs ?? Number(process.env.DLOCK_SOAK_MS ?? 10_000);
  return [
    {
      id: 'soak-churn',
      section: 'soak',
      title:
        'a churn of acquire / time out / abort / release returns to its baseline (heap, listeners, watches, handles, keys)',
      skipReason: () => (soak ? undefined : 'no soak hooks were supplied for this backend'),
      timeoutMs: durationMs + 120_000,
      run: async () => {
        const providers = await Promise.all(Array.from({ length: 4 }, () => kit.open()));
        const keys = Array.from({ length: 3 }, (_, i) => kit.freshKey(`soak-${i}`));
        const primitives = {
          semaphore: supports(() => kit.first.semaphore(keys[0]!, { limit: 2 })),
          readWrite: supports(() => kit.first.readWriteLock(keys[0]!)),
        };
        const round = async (provider: LockProvider, key: string, step: number) => {
          let lease: Lease | null = null;
          try {
            switch (step % 6) {
              case 0:
                lease = await provider.acquire(key, { ttlMs: 10_000, waitMs: 10 });
                break;
              case 1:
                lease = await provider.tryAcquire(key, { ttlMs: 10_000 });
                break;
              case 2: {
                const controller = new AbortController();
                const pending = provider.acquire(key, { ttlMs: 10_000, signal: controller.signal });
                setTimeout(() => controller.abort(new Error('soak abort')), 3);
                lease = await pending;
                break;
              }
              case 3:
                lease = primitives.semaphore
                  ? await provider.semaphore(key, { limit: 2 }).acquire({ ttlMs: 10_000, waitMs: 10 })
                  : await provider.acquire(key, { ttlMs: 10_000, waitMs: 10 });
                break;
              case 4:
                lease = primitives.readWrite
                  ? await provider.readWriteLock(key).read.acquire({ ttlMs: 10_000, waitMs: 10 })
                  : await provider.tryAcquire(key, { ttlMs: 10_000 });
                break;
              default:
                lease = primitives.readWrite
                  ? await provider.readWriteLock(key).write.acquire({ ttlMs: 10_000, waitMs: 10 })
                  : await provider.acquire(key, { ttlMs: 10_000, waitMs: 10 });
            }
            if (lease) await sleep(1);
          } catch (error) {
            // Timeouts and aborts are the point of the churn; anything else is a failure.
            if (!(error instanceof LockError) && !(error instanceof Error && error.message === 'soak abort'))
              throw error;
          } finally {
            await lease?.release();
          }
        };
        const churn = async (until: number) => {
          let operations = 0;
          await Promise.all(
            providers.map(async (provider, index) => {
              for (let step = index; performance.now() < until && operations < 200_000; step++) {
                await round(provider, keys[step % keys.length]!, step);
                operations++;
              }
            }),
          );
          return operations;
        };
        const measure = async (): Promise<Counts> => ({
          ...(await soak!.client?.(providers)),
          ...(await soak!.server?.()),
          ...activeResources(),
        });

        // Warm up (connections, sessions, subscriber connections, scripts, JIT), then the baseline.
        await churn(performance.now() + Math.min(2_000, durationMs / 5));
        await sleep(500);
        const heapBefore = await heapAfterGc();
        const before = await measure();
        const operations = await churn(performance.now() + durationMs);
        // Background clean-ups and expiry of watches and subscriptions need a moment to finish.
        let after = await measure();
        for (let i = 0; i < 20 && Object.keys(grown(before, after, 2)).length > 0; i++) {
          await sleep(250);
          after = await measure();
        }
        const heapAfter = await heapAfterGc();
        kit.measure('operations', operations);
        kit.measure('heap growth after GC (KiB)', (heapAfter - heapBefore) / 1024);
        for (const [name, value] of Object.entries(after)) kit.measure(`after: ${name}`, value);
        for (const [name, value] of Object.entries(before)) kit.measure(`before: ${name}`, value);
        expect(operations).toBeGreaterThan(50);
        expect(grown(before, after, 2), 'counts above their baseline').toEqual({});
        expect(heapAfter - heapBefore).toBeLessThan(soak!.heapGrowthBytes ?? 16 * 1024 * 1024);
        for (const key of keys) await kit.expectFree(key);
        if (kit.options.residue) {
          for (const key of keys) {
            if (primitives.semaphore) expect(await kit.options.residue(key, 'semaphore')).toEqual([]);
            if (primitives.readWrite) expect(await kit.options.residue(key, 'read-write')).toEqual([]);
          }
        }
      },
    },
  ];
}

function supports(make: () => unknown): boolean {
  try {
    make();
    return true;
  } catch (error) {
    if (error instanceof UnsupportedError) return false;
    throw error;
  }
}
