import { join } from 'node:path';
import {
  BackendUnavailableError,
  InvalidArgumentError,
  type Lease,
  LockError,
  LockLostError,
  type LockProvider,
  LockTimeoutError,
  withLock,
} from '@dlock/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GuaranteeResult, writeConformanceReport } from './report.js';
import { type HoldInterval, eventually, overlappingHolds, sleep } from './timing.js';

export interface ConformanceOptions {
  /** Lease ttl used by timing checks (ms). Default 600. */
  ttlMs?: number;
  /** Slack allowed on every timing bound (ms). Default 400. */
  marginMs?: number;
  /** Contenders (separate provider instances) in the mutual-exclusion check. Default 4. */
  contenders?: number;
  /**
   * Make `provider` stop as if its process had crashed: its connection or session goes away and it
   * releases nothing. Default: simply abandon it (its leases then lapse by ttl).
   */
  crash?: (provider: LockProvider) => Promise<void>;
  /** How long after a crash the lock may still be held (ttl or session timeout). Default: ttlMs. */
  crashRecoveryMs?: number;
  /**
   * Make the leases of `provider` lapse at the backend while the provider object stays usable (stop
   * its renewals or session keepalive and wait until the backend has let go). Default, for backends
   * whose leases expire by their own ttl: wait ttlMs plus the margin.
   */
  lapse?: (provider: LockProvider, lease: Lease) => Promise<void>;
  /** Delete `key`'s lock at the backend, as an operator would. Enables the takeover checks. */
  forceRelease?: (key: string) => Promise<void>;
  /** What the backend still stores for `key` (keys, nodes, queue entries); must be empty when free. */
  residue?: (key: string) => Promise<string[]>;
  /** Whether the backend shows a lock at `key` exactly as given (simple keys must map unchanged). */
  heldAtRawKey?: (key: string) => Promise<boolean>;
  /** A provider whose backend is down, for the typed-error check. Omit for in-process backends. */
  unreachable?: () => Promise<LockProvider>;
  /** The connect timeout the unreachable provider is configured with (ms). Default 2000. */
  connectTimeoutMs?: number;
  /** Where to write the JSON report. Default: $DLOCK_CONFORMANCE_DIR/<name>.json when that is set. */
  reportPath?: string;
}

interface Guarantee {
  id: string;
  title: string;
  /** A reason to skip, or undefined when the check applies. Called when the test runs. */
  skipReason?: () => string | undefined;
  run: () => Promise<void>;
  timeoutMs?: number;
}

const weirdKeys: Record<string, string> = {
  slash: 'orders/2024/eu',
  colon: 'svc:job:weekly',
  space: 'weekly report job',
  unicode: 'zamówienia-日本-🔒',
  '1 KiB': 'k'.repeat(1024),
};

/**
 * Registers the dlock conformance suite for one provider. `factory` must return a new provider
 * instance (its own connection) on each call; all instances must reach the same backend.
 */
export function describeLockProvider(
  name: string,
  factory: () => Promise<LockProvider>,
  options: ConformanceOptions = {},
): void {
  const ttlMs = options.ttlMs ?? 600;
  const marginMs = options.marginMs ?? 400;
  const connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
  const reportPath =
    options.reportPath ??
    (process.env.DLOCK_CONFORMANCE_DIR ? join(process.env.DLOCK_CONFORMANCE_DIR, `${name}.json`) : undefined);
  const providers: LockProvider[] = [];
  const results: GuaranteeResult[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  let first: LockProvider;
  let keyCounter = 0;
  const freshKey = (label: string) =>
    `conf-${label}-${process.pid}-${Date.now().toString(36)}-${keyCounter++}`;

  const open = async () => {
    const provider = await factory();
    providers.push(provider);
    return provider;
  };
  const lapse = async (provider: LockProvider, lease: Lease) => {
    if (options.lapse) return options.lapse(provider, lease);
    await sleep(ttlMs + marginMs);
  };
  const expectFree = async (key: string) => {
    expect(await first.holder(key)).toBeNull();
    if (options.residue) expect(await options.residue(key)).toEqual([]);
  };

  describe(`dlock conformance: ${name}`, () => {
    beforeAll(async () => {
      process.on('unhandledRejection', onUnhandled);
      first = await open();
    });
    afterAll(async () => {
      process.off('unhandledRejection', onUnhandled);
      await Promise.allSettled(providers.map((provider) => provider.close()));
      if (reportPath && first) {
        writeConformanceReport(reportPath, {
          schema: 'dlock.conformance/1',
          name,
          backend: first.backend,
          capabilities: first.capabilities,
          finishedAt: new Date().toISOString(),
          results,
        });
      }
    });

    const guarantees = buildGuarantees();
    for (const guarantee of guarantees) {
      it(
        guarantee.title,
        async (context) => {
          const skipReason = guarantee.skipReason?.();
          if (skipReason) {
            results.push({ id: guarantee.id, title: guarantee.title, status: 'skipped', detail: skipReason });
            console.info(`[dlock conformance] ${name}: skipped "${guarantee.title}": ${skipReason}`);
            context.skip(skipReason);
          }
          try {
            await guarantee.run();
            results.push({ id: guarantee.id, title: guarantee.title, status: 'held' });
          } catch (error) {
            const detail = error instanceof Error ? error.message : String(error);
            results.push({ id: guarantee.id, title: guarantee.title, status: 'violated', detail });
            throw error;
          }
        },
        guarantee.timeoutMs ?? 30_000,
      );
    }

    it('produced no unhandled rejection during the whole run', async () => {
      // Give stray background work a moment to surface.
      await sleep(50);
      expect(unhandled.map(String)).toEqual([]);
    });
  });

  function buildGuarantees(): Guarantee[] {
    return [
      {
        id: 'mutual-exclusion',
        title: 'never grants two overlapping holds under contention (separate connections)',
        timeoutMs: 60_000,
        run: async () => {
          const key = freshKey('mutex');
          const contenders = await Promise.all(Array.from({ length: options.contenders ?? 4 }, open));
          const rounds = 8;
          const resource = { value: 0 };
          const holds: HoldInterval[] = [];
          await Promise.all(
            contenders.map(async (provider, index) => {
              for (let round = 0; round < rounds; round++) {
                const lease = await provider.acquire(key, { ttlMs: 10_000, waitMs: 20_000 });
                const start = performance.now();
                const seen = resource.value;
                await sleep(Math.random() * 3);
                resource.value = seen + 1;
                const end = performance.now();
                holds.push({ holder: `${index}`, start, end });
                await lease.release();
              }
            }),
          );
          expect(overlappingHolds(holds)).toEqual([]);
          expect(resource.value).toBe(contenders.length * rounds);
          await expectFree(key);
        },
      },
      {
        id: 'try-acquire',
        title: 'tryAcquire on a held key returns null promptly, and a lease when free',
        run: async () => {
          const key = freshKey('try');
          const other = await open();
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          const started = performance.now();
          expect(await other.tryAcquire(key, { ttlMs: 10_000 })).toBeNull();
          expect(performance.now() - started).toBeLessThan(marginMs);
          await lease.release();
          const second = await other.tryAcquire(key, { ttlMs: 10_000 });
          expect(second).not.toBeNull();
          await second?.release();
          await expectFree(key);
        },
      },
      {
        id: 'acquire-waits',
        title: 'acquire waits while the key is held and wins after release',
        run: async () => {
          const key = freshKey('wait');
          const other = await open();
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          let won = false;
          const waiting = other.acquire(key, { ttlMs: 10_000, waitMs: 10_000 }).then((l) => {
            won = true;
            return l;
          });
          await sleep(150);
          expect(won).toBe(false);
          await lease.release();
          const second = await waiting;
          expect((await first.holder(key))?.identity).toBe(second.identity);
          await second.release();
          await expectFree(key);
        },
      },
      {
        id: 'wait-timeout',
        title: 'waitMs is honoured: LockTimeoutError not before the budget and not much after',
        run: async () => {
          const key = freshKey('timeout');
          const other = await open();
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          const waitMs = 300;
          const started = performance.now();
          const error = await other.acquire(key, { ttlMs: 10_000, waitMs }).then(
            () => undefined,
            (e: unknown) => e,
          );
          const elapsed = performance.now() - started;
          expect(error).toBeInstanceOf(LockTimeoutError);
          expect(elapsed).toBeGreaterThanOrEqual(waitMs - 5);
          expect(elapsed).toBeLessThan(waitMs + marginMs);
          await lease.release();
          await expectFree(key);
        },
      },
      {
        id: 'abort',
        title: 'aborting a waiting acquire rejects promptly with the reason and leaves nothing behind',
        run: async () => {
          const key = freshKey('abort');
          const other = await open();
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          const controller = new AbortController();
          const waiting = other.acquire(key, { ttlMs: 10_000, signal: controller.signal });
          await sleep(100);
          const reason = new Error('caller gave up');
          const abortedAt = performance.now();
          controller.abort(reason);
          await expect(waiting).rejects.toBe(reason);
          expect(performance.now() - abortedAt).toBeLessThan(marginMs);
          const already = AbortSignal.abort(new Error('already aborted'));
          await expect(other.acquire(key, { signal: already })).rejects.toBe(already.reason);
          await lease.release();
          await expectFree(key);
        },
      },
      {
        id: 'crash-recovery',
        title:
          'a crashed holder (nothing released) is replaced within its ttl or session timeout plus a margin',
        timeoutMs: 60_000,
        run: async () => {
          const key = freshKey('crash');
          const doomed = await factory();
          await doomed.acquire(key, { ttlMs });
          const crashedAt = performance.now();
          await (options.crash ? options.crash(doomed) : Promise.resolve());
          const recoveryMs = options.crashRecoveryMs ?? ttlMs;
          const next = await first.acquire(key, { ttlMs: 10_000, waitMs: recoveryMs + marginMs * 3 });
          expect(performance.now() - crashedAt).toBeLessThan(recoveryMs + marginMs * 3);
          await next.release();
          await expectFree(key);
        },
      },
      {
        id: 'extend',
        title: 'extend keeps the lock past its first ttl',
        run: async () => {
          const key = freshKey('extend');
          const other = await open();
          const lease = await first.acquire(key, { ttlMs });
          for (let i = 0; i < 3; i++) {
            await sleep(ttlMs / 2);
            await lease.extend();
          }
          expect(lease.signal.aborted).toBe(false);
          expect(await other.tryAcquire(key, { ttlMs: 10_000 })).toBeNull();
          await lease.release();
          await expectFree(key);
        },
      },
      {
        id: 'release-idempotent',
        title: 'release is idempotent, and a released lease cannot be extended',
        run: async () => {
          const key = freshKey('release');
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          await lease.release();
          await lease.release();
          await expect(lease.extend()).rejects.toMatchObject({ code: 'NOT_HELD' });
          await expectFree(key);
        },
      },
      {
        id: 'lapse',
        title: 'once a lease lapses its signal aborts with LockLostError and extend rejects LockLostError',
        timeoutMs: 60_000,
        run: async () => {
          const key = freshKey('lapse');
          const holderProvider = await open();
          const lease = await holderProvider.acquire(key, { ttlMs });
          await lapse(holderProvider, lease);
          expect(await eventually(() => lease.signal.aborted, marginMs * 3)).toBe(true);
          expect(lease.signal.reason).toBeInstanceOf(LockLostError);
          await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
          await lease.release().catch(() => {});
        },
      },
      {
        id: 'foreign-owner',
        title: 'a former owner cannot release or extend the lock of the new owner',
        skipReason: () =>
          options.forceRelease ? undefined : 'no forceRelease hook was supplied for this backend',
        run: async () => {
          const key = freshKey('foreign');
          const other = await open();
          const stale = await first.acquire(key, { ttlMs: 10_000 });
          await options.forceRelease?.(key);
          const current = await other.acquire(key, { ttlMs: 10_000, waitMs: 5_000 });
          await expect(stale.extend()).rejects.toBeInstanceOf(LockLostError);
          expect(stale.signal.aborted).toBe(true);
          await stale.release().catch(() => {});
          expect((await first.holder(key))?.token).toBe(current.token);
          expect(await first.tryAcquire(key, { ttlMs: 10_000 })).toBeNull();
          await current.release();
          await expectFree(key);
        },
      },
      {
        id: 'fencing-monotonic',
        title: 'fencing tokens strictly increase across successive holders of a key',
        skipReason: () =>
          first.capabilities.fencing === 'monotonic'
            ? undefined
            : `the backend declares fencing 'none': ${first.capabilities.safety}`,
        run: async () => {
          const key = freshKey('fencing');
          const other = await open();
          const tokens: bigint[] = [];
          for (let i = 0; i < 6; i++) {
            const lease = await (i % 2 ? other : first).acquire(key, { ttlMs: 10_000, waitMs: 5_000 });
            tokens.push(lease.token);
            expect((await first.holder(key))?.token).toBe(lease.token);
            await lease.release();
          }
          const takeover = await first.acquire(key, { ttlMs });
          await lapse(first, takeover);
          const afterLapse = await other.acquire(key, { ttlMs: 10_000, waitMs: 10_000 });
          tokens.push(takeover.token, afterLapse.token);
          await afterLapse.release();
          await takeover.release().catch(() => {});
          for (let i = 1; i < tokens.length; i++) expect(tokens[i]! > tokens[i - 1]!).toBe(true);
        },
        timeoutMs: 60_000,
      },
      {
        id: 'fifo',
        title: 'waiters are served in arrival order',
        skipReason: () =>
          first.capabilities.fairness === 'fifo'
            ? undefined
            : "the backend declares fairness 'none': waiters race for the lock when it frees up",
        run: async () => {
          const key = freshKey('fifo');
          const waiters = await Promise.all(Array.from({ length: 5 }, open));
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          const order: number[] = [];
          const done: Promise<void>[] = [];
          for (const [index, waiter] of waiters.entries()) {
            done.push(
              waiter.acquire(key, { ttlMs: 10_000, waitMs: 20_000 }).then(async (l) => {
                order.push(index);
                await l.release();
              }),
            );
            await sleep(60);
          }
          await lease.release();
          await Promise.all(done);
          expect(order).toEqual([0, 1, 2, 3, 4]);
          await expectFree(key);
        },
      },
      {
        id: 'push-wakeup',
        title: 'a waiter is woken by the release itself, well before the 1 s fallback re-check',
        skipReason: () =>
          first.capabilities.wakeup === 'push' ? undefined : "the backend declares wakeup 'poll'",
        run: async () => {
          const key = freshKey('push');
          const other = await open();
          const handoffs: number[] = [];
          for (let i = 0; i < 3; i++) {
            const lease = await first.acquire(key, { ttlMs: 10_000 });
            const waiting = other.acquire(key, { ttlMs: 10_000, waitMs: 10_000 });
            await sleep(150);
            const releasedAt = performance.now();
            await lease.release();
            const next = await waiting;
            handoffs.push(performance.now() - releasedAt);
            await next.release();
          }
          handoffs.sort((a, b) => a - b);
          expect(handoffs[1]).toBeLessThan(250);
        },
      },
      {
        id: 'key-shapes',
        title:
          "keys with '/', ':', spaces, unicode or 1 KiB either work or are rejected with InvalidArgumentError",
        run: async () => {
          for (const [label, key] of Object.entries(weirdKeys)) {
            const outcome = await first.tryAcquire(key, { ttlMs: 10_000 }).then(
              (lease) => ({ lease }),
              (error: unknown) => ({ error }),
            );
            if ('error' in outcome) {
              expect(outcome.error, `key with ${label}`).toBeInstanceOf(InvalidArgumentError);
              continue;
            }
            expect(outcome.lease, `key with ${label} should be free`).not.toBeNull();
            expect((await first.holder(key))?.token, `holder of key with ${label}`).toBe(
              outcome.lease?.token,
            );
            await outcome.lease?.release();
            expect(await first.holder(key)).toBeNull();
          }
        },
      },
      {
        id: 'simple-keys-unchanged',
        title: 'simple keys (letters, digits, - _ .) map to the backend unchanged',
        skipReason: () =>
          options.heldAtRawKey ? undefined : 'no heldAtRawKey probe was supplied for this backend',
        run: async () => {
          const key = `Simple-key_1.${process.pid}`;
          const lease = await first.acquire(key, { ttlMs: 10_000 });
          expect(await options.heldAtRawKey?.(key)).toBe(true);
          await lease.release();
          expect(await options.heldAtRawKey?.(key)).toBe(false);
        },
      },
      {
        id: 'many-keys',
        title: 'one provider holds 200 distinct keys at once',
        timeoutMs: 60_000,
        run: async () => {
          const prefix = freshKey('many');
          const other = await open();
          const leases = await Promise.all(
            Array.from({ length: 200 }, (_, i) =>
              first.acquire(`${prefix}-${i}`, { ttlMs: 20_000, waitMs: 10_000 }),
            ),
          );
          expect(new Set(leases.map((l) => l.key)).size).toBe(200);
          for (const i of [0, 99, 199]) expect(await other.tryAcquire(`${prefix}-${i}`)).toBeNull();
          await Promise.all(leases.map((l) => l.release()));
          expect(await first.holder(`${prefix}-42`)).toBeNull();
        },
      },
      {
        id: 'bad-input',
        title: 'bad input is rejected with InvalidArgumentError naming the field',
        run: async () => {
          const table: Array<[string, () => Promise<unknown>]> = [
            ['key', () => first.acquire('')],
            ['key', () => first.acquire(42 as unknown as string)],
            ['key', () => first.acquire('x'.repeat(1 << 20))],
            ['ttlMs', () => first.acquire('k', { ttlMs: 0 })],
            ['ttlMs', () => first.acquire('k', { ttlMs: -5 })],
            ['ttlMs', () => first.acquire('k', { ttlMs: Number.NaN })],
            ['ttlMs', () => first.acquire('k', { ttlMs: Number.POSITIVE_INFINITY })],
            ['waitMs', () => first.acquire('k', { waitMs: -1 })],
            ['waitMs', () => first.acquire('k', { waitMs: Number.NaN })],
            ['signal', () => first.acquire('k', { signal: 'stop' as unknown as AbortSignal })],
            ['identity', () => first.acquire('k', { identity: '' })],
            ['options', () => first.acquire('k', null as unknown as object)],
            ['key', () => first.holder('')],
          ];
          for (const [field, call] of table) {
            const error = await call().then(
              () => undefined,
              (e: unknown) => e,
            );
            expect(error, `expected InvalidArgumentError for ${field}`).toBeInstanceOf(InvalidArgumentError);
            expect((error as InvalidArgumentError).field).toBe(field);
            expect((error as Error).message).toContain(field);
          }
        },
      },
      {
        id: 'backend-down',
        title: 'a backend that is down gives BackendUnavailableError within the connect timeout, no hang',
        skipReason: () =>
          options.unreachable ? undefined : 'in-process backend: there is no server to be down',
        run: async () => {
          const started = performance.now();
          const outcome = await (async () => {
            const provider = await options.unreachable!();
            providers.push(provider);
            return provider.acquire(freshKey('down'), { ttlMs: 10_000, waitMs: 60_000 });
          })().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(outcome).toBeInstanceOf(BackendUnavailableError);
          expect(outcome).toBeInstanceOf(LockError);
          expect(performance.now() - started).toBeLessThan(connectTimeoutMs + marginMs * 2);
        },
      },
      {
        id: 'with-lock-renews',
        title: 'withLock renews past the ttl while fn runs and releases afterwards',
        run: async () => {
          const key = freshKey('withlock');
          const other = await open();
          const result = await withLock(
            first,
            key,
            async (lease) => {
              await sleep(ttlMs * 2.5);
              expect(lease.signal.aborted).toBe(false);
              expect(await other.tryAcquire(key, { ttlMs: 10_000 })).toBeNull();
              return 'done';
            },
            { ttlMs },
          );
          expect(result).toBe('done');
          await expectFree(key);
        },
      },
      {
        id: 'with-lock-lost',
        title: 'withLock: fn sees its signal abort when the lock is lost, and withLock rejects LockLostError',
        skipReason: () =>
          options.forceRelease ? undefined : 'no forceRelease hook was supplied for this backend',
        run: async () => {
          const key = freshKey('withlost');
          let sawAbort = false;
          const outcome = withLock(
            first,
            key,
            async (lease) => {
              await options.forceRelease?.(key);
              sawAbort = await eventually(() => lease.signal.aborted, ttlMs * 3 + marginMs);
              return 'finished anyway';
            },
            { ttlMs },
          );
          await expect(outcome).rejects.toBeInstanceOf(LockLostError);
          expect(sawAbort).toBe(true);
        },
      },
    ];
  }
}
