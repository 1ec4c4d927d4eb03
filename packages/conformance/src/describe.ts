import { join } from 'node:path';
import { type Capabilities, type Lease, type LockProvider, UnsupportedError } from '@dlock/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConformanceOptions, Guarantee, KitContext, ResidueKind } from './kit.js';
import { type GuaranteeResult, writeConformanceReport } from './report.js';
import { lockGuarantees } from './sections/lock.js';
import { networkGuarantees } from './sections/network.js';
import { readWriteGuarantees } from './sections/read-write.js';
import { semaphoreGuarantees } from './sections/semaphore.js';
import { soakGuarantees } from './sections/soak.js';
import { eventually, sleep } from './timing.js';

/**
 * Registers the dlock conformance suite for one provider: the lock section, the network-faults section
 * (with the `network` hook), the semaphore section and the read-write section (skipped with the reason
 * on a provider whose backend offers neither). `factory` must return a new provider instance (its own
 * connection) on each call; all instances must reach the same backend. Every guarantee is recorded
 * in the `dlock.conformance/1` report as held, violated or skipped (with the reason).
 */
/** How long inLine() waits for a line: generous, as a busy machine can take seconds to connect. */
const IN_LINE_BOUND_MS = 10_000;

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
  let first: LockProvider | undefined;
  let keyCounter = 0;
  let measurements: Record<string, number> = {};

  const kit: KitContext = {
    name,
    options,
    ttlMs,
    marginMs,
    connectTimeoutMs,
    get first() {
      if (!first) throw new Error('the conformance kit has not opened its first provider yet');
      return first;
    },
    open: async () => {
      const provider = await factory();
      providers.push(provider);
      return provider;
    },
    openWarm: async () => {
      const provider = await kit.open();
      const warm = await provider.tryAcquire(kit.freshKey('warm'), { ttlMs: 10_000 });
      await warm?.release();
      return provider;
    },
    inLine: async (key, count) => {
      const inspect = kit.first.inspect?.bind(kit.first);
      const shown = inspect ? (await inspect(key)).waiters : undefined;
      if (!inspect || shown === undefined) {
        await sleep(60);
        return;
      }
      const reached = await eventually(
        async () => ((await inspect(key)).waiters?.length ?? 0) >= count,
        IN_LINE_BOUND_MS,
      );
      expect(reached, `${count} request(s) waiting in line on ${key}`).toBe(true);
    },
    factory,
    track: (provider) => {
      providers.push(provider);
    },
    freshKey: (label) => `conf-${label}-${process.pid}-${Date.now().toString(36)}-${keyCounter++}`,
    lapse: async (provider: LockProvider, lease: Lease) => {
      if (options.lapse) return options.lapse(provider, lease);
      await sleep(ttlMs + marginMs);
    },
    expectFree: async (key: string, kind: ResidueKind = 'lock') => {
      // A waiter's withdrawal may finish after its acquire settled: an UNSUBSCRIBE sent, not awaited
      // (redis), or a queue node whose delete failed and is retried as a background clean-up (zookeeper).
      // So what is left must be gone within the margin, not in the same instant: a busy machine saw a
      // subscriber still counted on redis, and an aborted waiter's node reported as the holder on
      // zookeeper, right after the acquire was aborted.
      const leftover = async () => [
        ...(kind === 'lock' && (await kit.first.holder(key)) !== null ? [`a holder of ${key}`] : []),
        ...((await options.residue?.(key, kind)) ?? []),
      ];
      let left: string[] = [];
      await eventually(async () => {
        left = await leftover();
        return left.length === 0;
      }, marginMs);
      expect(left).toEqual([]);
    },
    measure: (label, valueMs) => {
      measurements[label] = Math.round(valueMs * 10) / 10;
    },
  };

  describe(`dlock conformance: ${name}`, () => {
    beforeAll(async () => {
      process.on('unhandledRejection', onUnhandled);
      first = await kit.open();
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
          primitiveCapabilities: {
            semaphore: declared(() =>
              (first as LockProvider).semaphore(kit.freshKey('declared'), { limit: 1 }),
            ),
            readWrite: declared(() => (first as LockProvider).readWriteLock(kit.freshKey('declared'))),
          },
          finishedAt: new Date().toISOString(),
          results,
        });
      }
    });

    const guarantees: Guarantee[] = [
      ...lockGuarantees(kit),
      ...networkGuarantees(kit),
      ...semaphoreGuarantees(kit),
      ...readWriteGuarantees(kit),
      ...soakGuarantees(kit),
    ];
    for (const guarantee of guarantees) {
      const section = guarantee.section ?? 'lock';
      it(
        guarantee.title,
        async (context) => {
          const base = { id: guarantee.id, title: guarantee.title, section };
          const skipReason = guarantee.skipReason?.();
          if (skipReason) {
            results.push({ ...base, status: 'skipped', detail: skipReason });
            console.info(`[dlock conformance] ${name}: skipped "${guarantee.title}": ${skipReason}`);
            context.skip(skipReason);
          }
          measurements = {};
          try {
            await guarantee.run();
            results.push({ ...base, status: 'held', ...measured() });
          } catch (error) {
            const detail = error instanceof Error ? error.message : String(error);
            results.push({ ...base, status: 'violated', detail, ...measured() });
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

  /** A primitive's declared capabilities (making the object sends nothing), or null when it has none. */
  function declared(make: () => { readonly capabilities: Capabilities }): Capabilities | null {
    try {
      return make().capabilities;
    } catch (error) {
      if (error instanceof UnsupportedError) return null;
      throw error;
    }
  }

  function measured(): { measurements?: Record<string, number> } {
    return Object.keys(measurements).length > 0 ? { measurements } : {};
  }
}
