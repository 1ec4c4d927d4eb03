import {
  InvalidArgumentError,
  LockLostError,
  type LockProvider,
  LockTimeoutError,
  type ReadWriteLease,
  type ReadWriteLock,
  UnsupportedError,
  withReadLock,
  withWriteLock,
} from '@dlock/core';
import { expect } from 'vitest';
import type { Guarantee, KitContext } from '../kit.js';
import { type HoldInterval, PUSH_HANDOFF_BOUND_MS, eventually, overlappingHolds, sleep } from '../timing.js';

/**
 * The read-write section (issue 15): readers overlap; a writer never overlaps anyone, under contention,
 * a crash and a pause; no writer starvation where the backend is fair; push wake-ups; tokens (a write
 * token above every earlier token of the name); a lapsed lease's signal aborts.
 */
export function readWriteGuarantees(kit: KitContext): Guarantee[] {
  const { options, ttlMs, marginMs, freshKey } = kit;
  let unsupported: string | undefined;
  const lockOf = (provider: LockProvider, name: string): ReadWriteLock => provider.readWriteLock(name);
  const skipReason = () => {
    if (unsupported === undefined) {
      try {
        lockOf(kit.first, freshKey('probe'));
        unsupported = '';
      } catch (error) {
        if (!(error instanceof UnsupportedError)) throw error;
        unsupported = error.message;
      }
    }
    return unsupported || undefined;
  };
  const declared = (capability: 'fencing' | 'fairness' | 'wakeup', wanted: string, what: string) => () => {
    const reason = skipReason();
    if (reason) return reason;
    const capabilities = lockOf(kit.first, freshKey('probe')).capabilities;
    return capabilities[capability] === wanted
      ? undefined
      : `the backend declares read-write ${capability} '${capabilities[capability]}', so ${what} is not promised: ${capabilities.safety}`;
  };
  const expectIdle = async (name: string) => {
    expect(await lockOf(kit.first, name).holders()).toEqual([]);
    if (options.residue) expect(await options.residue(name, 'read-write')).toEqual([]);
  };

  return [
    {
      id: 'rw-readers-share',
      section: 'read-write',
      title: 'readers hold together; a writer waits for all of them, and readers wait for the writer',
      skipReason,
      run: async () => {
        const name = freshKey('rw-share');
        const providers = await Promise.all(Array.from({ length: 3 }, () => kit.open()));
        const readers = await Promise.all(
          providers.map((p) => lockOf(p, name).read.acquire({ ttlMs: 10_000, waitMs: 5_000 })),
        );
        const holders = await lockOf(kit.first, name).holders();
        expect(holders.map((h) => h.mode)).toEqual(['read', 'read', 'read']);
        expect(await lockOf(kit.first, name).write.tryAcquire({ ttlMs: 10_000 })).toBeNull();
        await expect(
          lockOf(kit.first, name).write.acquire({ ttlMs: 10_000, waitMs: 200 }),
        ).rejects.toBeInstanceOf(LockTimeoutError);
        await Promise.all(readers.map((r) => r.release()));
        const writer = await lockOf(kit.first, name).write.acquire({ ttlMs: 10_000, waitMs: 5_000 });
        expect((await lockOf(kit.first, name).holders()).map((h) => h.mode)).toEqual(['write']);
        expect(await lockOf(providers[0]!, name).read.tryAcquire({ ttlMs: 10_000 })).toBeNull();
        await writer.release();
        await expectIdle(name);
      },
    },
    {
      id: 'rw-writer-exclusive',
      section: 'read-write',
      title: 'a writer never overlaps a reader or another writer, under contention, a crash and a pause',
      skipReason,
      timeoutMs: 120_000,
      run: async () => {
        const name = freshKey('rw-exclusive');
        const reads: HoldInterval[] = [];
        const writes: HoldInterval[] = [];
        // A writer that crashes while holding, and one paused past its ttl that stops acting when its
        // signal aborts (which must happen before anyone else is let in).
        const doomed = await kit.factory();
        await lockOf(doomed, name).write.acquire({ ttlMs, waitMs: 10_000 });
        const crashedStart = performance.now();
        await (options.crash ? options.crash(doomed) : Promise.resolve());
        writes.push({ holder: 'crashed', start: crashedStart, end: performance.now() });
        const pausedProvider = await kit.open();
        const paused = await lockOf(pausedProvider, name).write.acquire({ ttlMs, waitMs: 30_000 });
        const pausedStart = performance.now();
        const pausedHold = new Promise<void>((resolve) =>
          paused.signal.addEventListener('abort', () => {
            writes.push({ holder: 'paused', start: pausedStart, end: performance.now() });
            resolve();
          }),
        );
        const contenders = await Promise.all(Array.from({ length: 5 }, () => kit.open()));
        const hold = async (lease: ReadWriteLease, into: HoldInterval[], who: string) => {
          const start = performance.now();
          await sleep(Math.random() * 4);
          into.push({ holder: who, start, end: performance.now() });
          await lease.release();
        };
        await Promise.all([
          kit.lapse(pausedProvider, paused),
          ...contenders.map(async (provider, index) => {
            const lock = lockOf(provider, name);
            for (let round = 0; round < 6; round++) {
              const write = index < 2 && round % 2 === 0;
              const lease = await (write ? lock.write : lock.read).acquire({ ttlMs: 10_000, waitMs: 60_000 });
              await hold(lease, write ? writes : reads, `${index}`);
            }
          }),
        ]);
        await pausedHold;
        expect(paused.signal.reason).toBeInstanceOf(LockLostError);
        expect(overlappingHolds(writes)).toEqual([]);
        for (const write of writes) {
          const overlapping = reads.filter((read) => read.start < write.end && write.start < read.end);
          expect(overlapping, `reads overlapping the write of ${write.holder}`).toEqual([]);
        }
        expect(reads.length).toBe(5 * 6 - 2 * 3);
        await paused.release().catch(() => {});
        expect(
          await eventually(async () => (await lockOf(kit.first, name).holders()).length === 0, 10_000),
        ).toBe(true);
      },
    },
    {
      id: 'rw-no-writer-starvation',
      section: 'read-write',
      title: 'a waiting writer is served before readers that arrive after it (no writer starvation)',
      skipReason: declared('fairness', 'fifo', 'no writer starvation'),
      run: async () => {
        const name = freshKey('rw-starve');
        const [writerSide, lateReader] = await Promise.all([kit.openWarm(), kit.openWarm()]);
        const first = await lockOf(kit.first, name).read.acquire({ ttlMs: 10_000 });
        const order: string[] = [];
        const writer = lockOf(writerSide, name)
          .write.acquire({ ttlMs: 10_000, waitMs: 10_000 })
          .then(async (lease) => {
            order.push('writer');
            await sleep(50);
            await lease.release();
          });
        await sleep(150);
        // A reader arriving now must queue behind the waiting writer, although only readers hold.
        expect(await lockOf(lateReader, name).read.tryAcquire({ ttlMs: 10_000 })).toBeNull();
        const reader = lockOf(lateReader, name)
          .read.acquire({ ttlMs: 10_000, waitMs: 10_000 })
          .then(async (lease) => {
            order.push('late reader');
            await lease.release();
          });
        await sleep(150);
        expect(order).toEqual([]);
        await first.release();
        await Promise.all([writer, reader]);
        expect(order).toEqual(['writer', 'late reader']);
        await expectIdle(name);
      },
    },
    {
      id: 'rw-push-wakeup',
      section: 'read-write',
      title: 'a waiting writer is woken by the last reader’s release, well before the 1 s fallback re-check',
      skipReason: declared('wakeup', 'push', 'a pushed wake-up'),
      run: async () => {
        const name = freshKey('rw-push');
        const other = await kit.open();
        const handoffs: number[] = [];
        for (let i = 0; i < 3; i++) {
          const read = await lockOf(kit.first, name).read.acquire({ ttlMs: 10_000 });
          const waiting = lockOf(other, name).write.acquire({ ttlMs: 10_000, waitMs: 10_000 });
          await sleep(150);
          const releasedAt = performance.now();
          await read.release();
          const write = await waiting;
          handoffs.push(performance.now() - releasedAt);
          await write.release();
        }
        handoffs.sort((a, b) => a - b);
        kit.measure('reader → writer hand-off (median of 3)', handoffs[1]!);
        expect(handoffs[1]).toBeLessThan(PUSH_HANDOFF_BOUND_MS);
      },
    },
    {
      id: 'rw-tokens',
      section: 'read-write',
      title: "a write lease's token is larger than the token of every lease of the name granted before it",
      skipReason: declared('fencing', 'monotonic', 'fencing'),
      timeoutMs: 60_000,
      run: async () => {
        const name = freshKey('rw-tokens');
        const other = await kit.open();
        const earlier: bigint[] = [];
        for (let round = 0; round < 3; round++) {
          const reads = await Promise.all([
            lockOf(kit.first, name).read.acquire({ ttlMs: 10_000, waitMs: 5_000 }),
            lockOf(other, name).read.acquire({ ttlMs: 10_000, waitMs: 5_000 }),
          ]);
          earlier.push(...reads.map((r) => r.token));
          await Promise.all(reads.map((r) => r.release()));
          const write = await lockOf(round % 2 ? other : kit.first, name).write.acquire({
            ttlMs: 10_000,
            waitMs: 5_000,
          });
          for (const token of earlier)
            expect(write.token > token, `write ${write.token} > ${token}`).toBe(true);
          earlier.push(write.token);
          await write.release();
        }
        const lapsing = await lockOf(kit.first, name).write.acquire({ ttlMs });
        await kit.lapse(kit.first, lapsing);
        const after = await lockOf(other, name).write.acquire({ ttlMs: 10_000, waitMs: 10_000 });
        expect(after.token > lapsing.token).toBe(true);
        await after.release();
        await lapsing.release().catch(() => {});
      },
    },
    {
      id: 'rw-lapse',
      section: 'read-write',
      title: 'once a read or write lease lapses its signal aborts with LockLostError',
      skipReason,
      timeoutMs: 60_000,
      run: async () => {
        for (const side of ['read', 'write'] as const) {
          const provider = await kit.open();
          const lease = await lockOf(provider, freshKey(`rw-lapse-${side}`))[side].acquire({ ttlMs });
          await kit.lapse(provider, lease);
          expect(await eventually(() => lease.signal.aborted, marginMs * 3)).toBe(true);
          expect(lease.signal.reason).toBeInstanceOf(LockLostError);
          await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
          await lease.release().catch(() => {});
        }
      },
    },
    {
      id: 'rw-with-lock',
      section: 'read-write',
      title: 'withReadLock / withWriteLock renew past the ttl while fn runs and release afterwards',
      skipReason,
      run: async () => {
        const name = freshKey('rw-with');
        const other = await kit.open();
        const lock = lockOf(kit.first, name);
        const read = await withReadLock(
          lock,
          async (lease) => {
            await sleep(ttlMs * 2.5);
            expect(lease.signal.aborted).toBe(false);
            expect(await lockOf(other, name).write.tryAcquire({ ttlMs: 10_000 })).toBeNull();
            return lease.mode;
          },
          { ttlMs },
        );
        const write = await withWriteLock(lock, async (lease) => lease.mode, { ttlMs });
        expect([read, write]).toEqual(['read', 'write']);
        await expectIdle(name);
      },
    },
    {
      id: 'rw-bad-input',
      section: 'read-write',
      title: 'bad names and options are rejected with InvalidArgumentError naming the field',
      skipReason,
      run: async () => {
        const table: Array<[string, () => unknown]> = [
          ['name', () => lockOf(kit.first, '')],
          ['name', () => lockOf(kit.first, 42 as unknown as string)],
          ['ttlMs', () => lockOf(kit.first, 'rw-bad').read.acquire({ ttlMs: -1 })],
          ['waitMs', () => lockOf(kit.first, 'rw-bad').write.acquire({ waitMs: Number.NaN })],
          [
            'signal',
            () => lockOf(kit.first, 'rw-bad').write.tryAcquire({ signal: 'x' as unknown as AbortSignal }),
          ],
        ];
        for (const [field, call] of table) {
          let error: unknown;
          try {
            await call();
          } catch (caught) {
            error = caught;
          }
          expect(error, `expected InvalidArgumentError for ${field}`).toBeInstanceOf(InvalidArgumentError);
          expect((error as InvalidArgumentError).field).toBe(field);
        }
      },
    },
  ];
}
