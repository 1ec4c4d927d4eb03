import {
  BackendUnavailableError,
  type Lease,
  LockError,
  type LockProvider,
  NotHeldError,
  type RetryPolicyOptions,
  withLock,
} from '@dlock/core';
import { expect } from 'vitest';
import type { Guarantee, KitContext, NetworkFaults } from '../kit.js';
import { eventually, sleep } from '../timing.js';

/**
 * How long after the backend is reachable again a caller that was told "failed" may still own
 * something (issue 11: "about one second"): one back-off of the default retry policy (≤ 1 s) plus
 * the driver's reconnect, with the kit's margin for a busy machine.
 */
const ORPHAN_BOUND_MS = 1_000;

/**
 * The network-faults section: a lost reply, a 1 s blip, an outage of twice the connect timeout, a
 * failed release, a flushed script cache. Each fault is real (the testkit's TCP fault proxy between the
 * provider and its servers). These are the failure reports of redlock, redis-semaphore, Redisson,
 * Curator, kazoo, etcd and client-go that dlock's recovery policy answers (issue 11).
 */
export function networkGuarantees(kit: KitContext): Guarantee[] {
  const { options, marginMs, freshKey } = kit;
  const network = options.network;
  const skipReason = () =>
    network
      ? undefined
      : options.unreachable
        ? 'no network hook (fault proxy in front of the servers) was supplied for this backend'
        : 'in-process backend: there is no network between the provider and its state';

  /** A provider behind the proxy that has reached its backend once, as one in service has. */
  const connect = async (
    retry?: RetryPolicyOptions,
  ): Promise<{ provider: LockProvider; faults: NetworkFaults }> => {
    const connected = await network!.connect(retry ? { retry } : {});
    kit.track(connected.provider);
    const warmUp = await connected.provider.acquire(freshKey('warm'), { ttlMs: 10_000, waitMs: 10_000 });
    await warmUp.release();
    return connected;
  };
  const holderIs = async (key: string, lease: Lease) =>
    (await kit.first.holder(key))?.identity === lease.identity;
  const freeWithin = (key: string, ms: number) =>
    eventually(async () => (await kit.first.holder(key)) === null, ms);
  const settle = <T>(work: Promise<T>) =>
    work.then(
      (value) => ({ value, error: undefined }),
      (error: unknown) => ({ value: undefined, error }),
    );

  return [
    {
      id: 'net-lost-acquire-reply',
      section: 'network',
      title: 'a lost acquire reply leaves no orphan: the caller holds the lock, or it is free within ~1 s',
      skipReason,
      timeoutMs: 60_000,
      run: async () => {
        const { provider, faults } = await connect();
        for (const mode of ['wait', 'try'] as const) {
          const key = freshKey(`lost-reply-${mode}`);
          const dropped = faults.dropNextReply();
          const outcome = await settle<Lease | null>(
            mode === 'wait'
              ? provider.acquire(key, { ttlMs: 30_000, waitMs: 10_000 })
              : provider.tryAcquire(key, { ttlMs: 30_000 }),
          );
          await Promise.race([dropped, sleep(2_000)]);
          const reachableAt = performance.now();
          if (outcome.value) {
            // The retry adopted (or re-took) the lock: the caller knows it holds it.
            expect(await holderIs(key, outcome.value)).toBe(true);
            kit.measure(`${mode}: reply lost → caller holds`, performance.now() - reachableAt);
            await outcome.value.release();
            await kit.expectFree(key);
            continue;
          }
          if (outcome.value === null) {
            // tryAcquire found the key free after the reset and nothing was taken? It cannot be busy.
            throw new Error(`tryAcquire of a free key returned null after a lost reply (${kit.name})`);
          }
          expect(outcome.error).toBeInstanceOf(LockError);
          const bound = ORPHAN_BOUND_MS + marginMs * 2;
          expect(await freeWithin(key, bound), `orphan of "${key}" still held ${bound} ms later`).toBe(true);
          kit.measure(`${mode}: reachable again → orphan gone`, performance.now() - reachableAt);
          await kit.expectFree(key);
        }
      },
    },
    {
      id: 'net-blip-waiting',
      section: 'network',
      title:
        'a 1 s blip during a waiting acquire does not reject it; it is granted soon after the holder releases',
      skipReason,
      timeoutMs: 60_000,
      run: async () => {
        const key = freshKey('blip');
        const held = await kit.first.acquire(key, { ttlMs: 30_000 });
        const { provider, faults } = await connect();
        const waiting = settle(provider.acquire(key, { ttlMs: 30_000, waitMs: 20_000 }));
        await sleep(200);
        faults.outage(1_000);
        await sleep(1_000 + 300);
        const releasedAt = performance.now();
        await held.release();
        const { value: lease, error } = await waiting;
        expect(error, 'the waiting acquire rejected').toBeUndefined();
        const handoffMs = performance.now() - releasedAt;
        kit.measure('holder released → waiter holds (after a 1 s blip)', handoffMs);
        // A push wake-up, or at worst the fallback re-check (1 s) after the watch was re-established.
        expect(handoffMs).toBeLessThan(2_000 + marginMs * 2);
        await lease!.release();
        await kit.expectFree(key);
      },
    },
    {
      id: 'net-long-outage-waiting',
      section: 'network',
      title: 'an outage of twice the connect timeout within waitMs does not reject a waiting acquire',
      skipReason,
      timeoutMs: 120_000,
      run: async () => {
        const outageMs = 2 * network!.connectTimeoutMs;
        const key = freshKey('outage');
        const held = await kit.first.acquire(key, { ttlMs: 60_000 });
        const { provider, faults } = await connect();
        const waiting = settle(provider.acquire(key, { ttlMs: 30_000, waitMs: outageMs + 30_000 }));
        await sleep(200);
        faults.outage(outageMs);
        await sleep(outageMs + 500);
        const releasedAt = performance.now();
        await held.release();
        const { value: lease, error } = await waiting;
        expect(error, 'the waiting acquire rejected').toBeUndefined();
        kit.measure(
          `holder released → waiter holds (after a ${outageMs} ms outage)`,
          performance.now() - releasedAt,
        );
        await lease!.release();
        await kit.expectFree(key);
      },
    },
    {
      id: 'net-release-retried',
      section: 'network',
      title:
        'a release during a blip completes once the backend is back; a failed release can be called again; close() retries it',
      skipReason,
      timeoutMs: 90_000,
      run: async () => {
        // A release in a 1 s blip rides it out.
        const { provider, faults } = await connect();
        const key = freshKey('release-blip');
        const lease = await provider.acquire(key, { ttlMs: 30_000 });
        faults.outage(1_000);
        const blipEndsAt = performance.now() + 1_000;
        const released = await settle(lease.release());
        if (released.error) {
          expect(released.error).toBeInstanceOf(BackendUnavailableError);
          await lease.release();
        }
        expect(await freeWithin(key, ORPHAN_BOUND_MS + marginMs * 2)).toBe(true);
        kit.measure('blip over → lock free after release()', Math.max(0, performance.now() - blipEndsAt));

        // A release that gave up (short cleanupMs, black-holed network) is sent again by a second call.
        const quick = await connect({ cleanupMs: 200 });
        const key2 = freshKey('release-again');
        const lease2 = await quick.provider.acquire(key2, { ttlMs: 30_000 });
        quick.faults.blackhole();
        const first = await settle(lease2.release());
        quick.faults.heal();
        if (first.error) expect(first.error).toBeInstanceOf(BackendUnavailableError);
        const healedAt = performance.now();
        await settle(lease2.release());
        expect(await freeWithin(key2, ORPHAN_BOUND_MS + marginMs * 2)).toBe(true);
        kit.measure('heal → lock free after a second release()', performance.now() - healedAt);

        // close() releases what is still held, riding out a blip.
        const closing = await connect();
        const key3 = freshKey('release-close');
        await closing.provider.acquire(key3, { ttlMs: 30_000 });
        closing.faults.outage(1_000);
        await closing.provider.close();
        expect(await freeWithin(key3, ORPHAN_BOUND_MS + marginMs * 2)).toBe(true);
      },
    },
    {
      id: 'net-withlock-result',
      section: 'network',
      title:
        "withLock returns fn's result when only its release failed, and hands the failure to onReleaseError",
      skipReason,
      timeoutMs: 60_000,
      run: async () => {
        const { provider, faults } = await connect({ cleanupMs: 200 });
        const key = freshKey('withlock-release');
        const failures: unknown[] = [];
        const result = await withLock(
          provider,
          key,
          async () => {
            faults.blackhole();
            return 'work done under a valid lease';
          },
          { ttlMs: 30_000, onReleaseError: (error) => failures.push(error) },
        );
        faults.heal();
        expect(result).toBe('work done under a valid lease');
        expect(failures.length).toBeLessThanOrEqual(1);
        for (const failure of failures) expect(failure).toBeInstanceOf(LockError);
        kit.measure('release failures reported', failures.length);
      },
    },
    {
      id: 'net-released-never-lost',
      section: 'network',
      title:
        "a released lease's signal never aborts, even with an extension in flight (slow network, flushed script cache); extend() then rejects NotHeldError",
      skipReason,
      timeoutMs: 90_000,
      run: async () => {
        const { provider, faults } = await connect();
        const triggers: Array<['slow-network' | 'script-cache', number]> = [];
        for (let i = 0; i < 5; i++) triggers.push(['slow-network', i]);
        if (network?.flushScriptCache) for (let i = 0; i < 5; i++) triggers.push(['script-cache', i]);
        const ttlMs = 1_000;
        const leases: Lease[] = [];
        for (const [trigger, trial] of triggers) {
          const lease = await provider.acquire(freshKey(`released-${trigger}-${trial}`), { ttlMs });
          leases.push(lease);
          if (trigger === 'slow-network') faults.delay(150, 'both');
          else await network!.flushScriptCache!();
          const extending = settle(lease.extend());
          await sleep(5);
          await lease.release();
          faults.heal();
          const extended = await extending;
          if (extended.error !== undefined) expect(extended.error).toBeInstanceOf(NotHeldError);
          await expect(lease.extend()).rejects.toBeInstanceOf(NotHeldError);
        }
        // Past every lease's ttl: no expiry timer, late reply or session event may abort a released lease.
        await sleep(ttlMs + marginMs);
        expect(leases.filter((lease) => lease.signal.aborted).map((lease) => lease.key)).toEqual([]);
      },
    },
  ];
}
