import {
  BackendUnavailableError,
  KeyConflictError,
  type Lease,
  LockLostError,
  type LockProvider,
  LockTimeoutError,
} from '@dlock/core';
import { createRedisProvider } from '@dlock/redis';
import { type FaultProxy, type RedisServer, startFaultProxy, startRedis } from '@dlock/testkit';
import { SpanStatusCode } from '@opentelemetry/api';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attributeNames as A, metricNames as M, spanNames } from '../src/index.js';
import { otelHarness, spanAttributeKeys } from './otel.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const redis = { [A.backend]: 'redis', [A.kind]: 'lock' };
const outcome = (value: string) => ({ ...redis, [A.outcome]: value });

/**
 * The real OpenTelemetry SDK (in-memory exporters) on a real redis-server through @dlock/redis:
 * contention, a timeout, a key holding data, two lost leases (the key deleted under a holder; a ttl that lapses), a
 * release that fails behind a black-holed TCP proxy, and the metrics and spans each one leaves.
 */
describe('@dlock/opentelemetry on a real Redis', () => {
  let server: RedisServer;
  let proxy: FaultProxy;
  let raw: Redis;
  const providers: LockProvider[] = [];
  const otel = otelHarness({ holdSpans: true });

  beforeAll(async () => {
    server = await startRedis();
    proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: server.port } });
    raw = new Redis(server.url, { maxRetriesPerRequest: 1 });
    raw.on('error', () => {});
  });
  afterAll(async () => {
    proxy?.heal();
    await Promise.allSettled(providers.map((provider) => provider.close()));
    raw?.disconnect();
    await proxy?.close();
    await server?.stop();
    await otel.shutdown();
  });
  function provider(url = server.url, options: Parameters<typeof createRedisProvider>[0] = {}) {
    const locks = createRedisProvider({ url, ...options });
    providers.push(locks);
    return locks;
  }

  it('records contention, a timeout, lost leases and a failed release as metrics and spans', async () => {
    const holder = provider();
    const contender = provider();
    const granted: Lease[] = [];

    // Contention: one holder, a tryAcquire that finds it busy, a waiter that times out, one that
    // gets the lock when the holder lets go.
    const first = await holder.acquire('invoice-42', { ttlMs: 10_000 });
    granted.push(first);
    expect(await contender.tryAcquire('invoice-42')).toBeNull();
    await expect(contender.acquire('invoice-42', { waitMs: 200 })).rejects.toBeInstanceOf(LockTimeoutError);
    const queued = contender.acquire('invoice-42', { waitMs: 10_000, ttlMs: 10_000 });
    await sleep(50);
    await first.release();
    const second = await queued;
    granted.push(second);
    await second.release();

    // A lease lost because its key vanished: the next extension finds no owner.
    const deleted = await holder.acquire('deleted', { ttlMs: 10_000 });
    granted.push(deleted);
    expect(await raw.del('dlock:deleted')).toBe(1);
    await expect(deleted.extend()).rejects.toBeInstanceOf(LockLostError);
    expect(deleted.signal.aborted).toBe(true);

    // A lease lost because its ttl lapsed without an extension.
    const lapsing = await holder.acquire('lapsing', { ttlMs: 100 });
    granted.push(lapsing);
    await sleep(250);
    expect(lapsing.signal.aborted).toBe(true);

    // A key that holds application data: no lock can use it, and that is no outage.
    await raw.set('dlock:app-data', '{"x":1}');
    await expect(holder.acquire('app-data', { waitMs: 1_000 })).rejects.toBeInstanceOf(KeyConflictError);

    // A release that fails: the server is cut off (a black hole) between acquire and release.
    const cutOff = provider(proxy.url('redis'), { commandTimeoutMs: 200, retry: { cleanupMs: 300 } });
    const stranded = await cutOff.acquire('stranded', { ttlMs: 10_000 });
    granted.push(stranded);
    proxy.blackhole();
    await expect(stranded.release()).rejects.toBeInstanceOf(BackendUnavailableError);
    proxy.heal();

    const recorded = await otel.collect();
    expect(recorded.sum(M.acquireRequests, outcome('granted'))).toBe(5);
    expect(recorded.sum(M.acquireRequests, outcome('busy'))).toBe(1);
    expect(recorded.sum(M.acquireRequests, outcome('timeout'))).toBe(1);
    expect(recorded.points(M.acquireRequests, outcome('invalid'))[0]!.attributes[A.errorType]).toBe(
      'KeyConflictError',
    );
    expect(recorded.sum(M.acquireRequests)).toBe(8);
    expect(recorded.points(M.acquireRequests, outcome('timeout'))[0]!.attributes).toEqual({
      ...outcome('timeout'),
      [A.mode]: 'wait',
      [A.errorType]: 'LockTimeoutError',
    });
    expect(recorded.count(M.acquireDuration)).toBe(8);
    // Lower bounds only (a busy machine only makes waits longer): the timeout waited its waitMs, the
    // queued acquire until the release 50 ms later.
    const timeoutWait = recorded.points(M.acquireDuration, outcome('timeout'))[0]!.value as { min: number };
    expect(timeoutWait.min).toBeGreaterThanOrEqual(200);
    const grantedWait = recorded.points(M.acquireDuration, outcome('granted'))[0]!.value as { max: number };
    expect(grantedWait.max).toBeGreaterThanOrEqual(45);

    expect(recorded.sum(M.leaseLost, { ...redis, [A.lostReason]: 'taken-over' })).toBe(1);
    expect(recorded.sum(M.leaseLost, { ...redis, [A.lostReason]: 'expired' })).toBe(1);
    expect(recorded.sum(M.leaseLost)).toBe(2);
    expect(recorded.sum(M.extendFailures, { ...redis, [A.errorType]: 'LockLostError' })).toBe(1);
    expect(recorded.sum(M.releaseFailures, { ...redis, [A.errorType]: 'BackendUnavailableError' })).toBe(1);
    expect(recorded.sum(M.releaseFailures)).toBe(1);

    expect(recorded.count(M.leaseDuration, { ...redis, [A.end]: 'released' })).toBe(2);
    expect(recorded.count(M.leaseDuration, { ...redis, [A.end]: 'lost' })).toBe(2);
    expect(recorded.count(M.leaseDuration, { ...redis, [A.end]: 'release-failed' })).toBe(1);
    // Every lease taken has ended one way or another.
    expect(recorded.sum(M.leaseActive, redis)).toBe(0);
    expect(recorded.attributeKeys().has(A.key)).toBe(false);

    const acquires = otel.spans(spanNames.acquire);
    expect(acquires).toHaveLength(8);
    expect(
      acquires
        .filter((span) => span.attributes[A.outcome] === 'granted')
        .map((span) => span.attributes[A.token]),
    ).toEqual(granted.map((lease) => lease.token.toString()));
    const timedOut = acquires.find((span) => span.attributes[A.outcome] === 'timeout')!;
    expect(timedOut.status).toEqual({ code: SpanStatusCode.ERROR, message: 'timeout' });
    expect(timedOut.attributes).toMatchObject({
      ...redis,
      [A.mode]: 'wait',
      [A.errorType]: 'LockTimeoutError',
    });

    const holds = otel.spans(spanNames.hold);
    expect(holds).toHaveLength(5);
    const deletedHold = holds.find((span) => span.attributes[A.token] === deleted.token.toString())!;
    expect(deletedHold.attributes).toMatchObject({ [A.end]: 'lost', [A.lostReason]: 'taken-over' });
    expect(deletedHold.status).toEqual({ code: SpanStatusCode.ERROR, message: 'lost: taken-over' });
    const failedHold = holds.find((span) => span.attributes[A.end] === 'release-failed')!;
    expect(failedHold.attributes[A.errorType]).toBe('BackendUnavailableError');
    expect(failedHold.status.code).toBe(SpanStatusCode.ERROR);

    // Keys are tenant data: without recordKeys they appear nowhere, not even in a status message.
    const all = otel.spans();
    expect(spanAttributeKeys(all).has(A.key)).toBe(false);
    for (const key of ['invoice-42', 'deleted', 'lapsing', 'app-data', 'stranded']) {
      expect(all.some((span) => span.status.message?.includes(key))).toBe(false);
    }
  });
});
