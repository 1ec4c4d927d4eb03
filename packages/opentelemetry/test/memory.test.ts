import { channel, tracingChannel } from 'node:diagnostics_channel';
import {
  BackendUnavailableError,
  InvalidArgumentError,
  type Lease,
  LockTimeoutError,
  MemoryLockStore,
  channelNames,
  createLockProvider,
  createMemoryDriver,
  createMemoryProvider,
} from '@dlock/core';
import { SpanStatusCode, metrics, trace } from '@opentelemetry/api';
import { afterEach, describe, expect, it } from 'vitest';
import { attributeNames as A, metricNames as M, instrument, spanNames } from '../src/index.js';
import { otelHarness, spanAttributeKeys } from './otel.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const memory = { [A.backend]: 'memory', [A.kind]: 'lock' };

/** Whether anyone listens on any of the channels @dlock/opentelemetry subscribes to. */
function anySubscribers(): boolean {
  return (
    tracingChannel(channelNames.acquire).hasSubscribers ||
    [channelNames.released, channelNames.lost, channelNames.releaseFailed, channelNames.extendFailed].some(
      (name) => channel(name).hasSubscribers,
    )
  );
}

describe('instrument() on the memory provider', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  function harness(options: Parameters<typeof otelHarness>[0] = {}) {
    const otel = otelHarness(options);
    cleanups.push(() => otel.shutdown());
    return otel;
  }
  function provider(store = new MemoryLockStore()) {
    const locks = createMemoryProvider({ store });
    cleanups.push(() => locks.close());
    return locks;
  }

  it('subscribes to nothing until called, and to nothing again after unsubscribe()', async () => {
    expect(anySubscribers()).toBe(false);
    const otel = harness();
    expect(anySubscribers()).toBe(true);
    const locks = provider();
    await (await locks.acquire('before')).release();
    otel.instrumentation.unsubscribe();
    otel.instrumentation.unsubscribe();
    expect(anySubscribers()).toBe(false);
    await (await locks.acquire('after')).release();

    const recorded = await otel.collect();
    expect(recorded.sum(M.acquireRequests)).toBe(1);
    expect(otel.spans(spanNames.acquire)).toHaveLength(1);
  });

  it('rejects bad options with InvalidArgumentError naming the field', () => {
    expect(() => instrument({ recordKeys: 'yes' as never })).toThrow(InvalidArgumentError);
    expect(() => instrument({ recordKeys: 'yes' as never })).toThrow(/recordKeys/);
    expect(() => instrument({ holdSpans: 1 as never })).toThrow(/holdSpans/);
    expect(() => instrument({ meterProvider: {} as never })).toThrow(/meterProvider/);
    expect(() => instrument({ tracerProvider: {} as never })).toThrow(/tracerProvider/);
    expect(() => instrument(null as never)).toThrow(/options/);
    expect(anySubscribers()).toBe(false);
  });

  it('records on the global providers by default, and is disposable', async () => {
    const otel = harness();
    otel.instrumentation.unsubscribe();
    // No SDK registered globally: the API's no-op providers take the measurements, and nothing breaks.
    expect(metrics.getMeterProvider()).toBeDefined();
    expect(trace.getTracerProvider()).toBeDefined();
    {
      using _instrumentation = instrument();
      expect(anySubscribers()).toBe(true);
      await (await provider().acquire('global')).release();
    }
    expect(anySubscribers()).toBe(false);
  });

  it('records acquire outcomes, wait and hold times, leases held and lost, and a span per acquire with its token', async () => {
    const otel = harness();
    const store = new MemoryLockStore();
    const a = provider(store);
    const b = provider(store);
    const acquired: Lease[] = [];

    await otel.tracer.startActiveSpan('request', async (request) => {
      const first = await a.acquire('k', { ttlMs: 5_000 });
      acquired.push(first);
      expect((await otel.collect()).sum(M.leaseActive, memory)).toBe(1);

      expect(await b.tryAcquire('k')).toBeNull();
      await expect(b.acquire('k', { waitMs: 50 })).rejects.toBeInstanceOf(LockTimeoutError);

      const queued = b.acquire('k', { waitMs: 5_000, ttlMs: 40 });
      await sleep(30);
      await first.release();
      const second = await queued;
      acquired.push(second);

      const other = await a.acquire('k2');
      acquired.push(other);
      const cancel = new AbortController();
      const abandoned = b.acquire('k2', { signal: cancel.signal });
      await sleep(10);
      cancel.abort();
      await expect(abandoned).rejects.toMatchObject({ name: 'AbortError' });

      await sleep(100); // second's 40 ms ttl lapses without an extension
      expect(second.signal.aborted).toBe(true);
      request.end();
    });

    const recorded = await otel.collect();
    const outcome = (value: string) => ({ ...memory, [A.outcome]: value });
    expect(recorded.sum(M.acquireRequests, outcome('granted'))).toBe(3);
    expect(recorded.sum(M.acquireRequests, outcome('busy'))).toBe(1);
    expect(recorded.sum(M.acquireRequests, outcome('timeout'))).toBe(1);
    expect(recorded.sum(M.acquireRequests, outcome('aborted'))).toBe(1);
    expect(recorded.sum(M.acquireRequests)).toBe(6);
    expect(recorded.points(M.acquireRequests, outcome('timeout'))[0]!.attributes).toEqual({
      ...outcome('timeout'),
      [A.mode]: 'wait',
      [A.errorType]: 'LockTimeoutError',
    });
    expect(recorded.points(M.acquireRequests, outcome('aborted'))[0]!.attributes[A.errorType]).toBe(
      'AbortError',
    );
    expect(recorded.points(M.acquireRequests, outcome('busy'))[0]!.attributes[A.mode]).toBe('try');

    expect(recorded.count(M.acquireDuration)).toBe(6);
    // Lower bounds only: the timeout waited at least its waitMs, the queued acquire until the release.
    const waited = (value: string) =>
      recorded.points(M.acquireDuration, outcome(value)).map((point) => point.value as { min?: number });
    expect(waited('timeout')[0]!.min).toBeGreaterThanOrEqual(50);
    expect(
      Math.max(
        ...recorded
          .points(M.acquireDuration, outcome('granted'))
          .map((p) => (p.value as { max: number }).max),
      ),
    ).toBeGreaterThanOrEqual(25);

    expect(recorded.count(M.leaseDuration, { [A.end]: 'released' })).toBe(1);
    expect(recorded.count(M.leaseDuration, { [A.end]: 'lost', [A.lostReason]: 'expired' })).toBe(1);
    expect(recorded.sum(M.leaseLost, { ...memory, [A.lostReason]: 'expired' })).toBe(1);
    expect(recorded.sum(M.leaseActive, memory)).toBe(1); // k2 is still held
    await acquired[2]!.release();
    expect((await otel.collect()).sum(M.leaseActive, memory)).toBe(0);

    expect(recorded.attributeKeys().has(A.key)).toBe(false);

    const spans = otel.spans(spanNames.acquire);
    const requestSpan = otel.spans('request')[0]!;
    expect(spans).toHaveLength(6);
    for (const span of spans) {
      expect(span.parentSpanContext?.spanId).toBe(requestSpan.spanContext().spanId);
      expect(span.instrumentationScope.name).toBe('@dlock/opentelemetry');
    }
    const granted = spans.filter((span) => span.attributes[A.outcome] === 'granted');
    expect(granted.map((span) => span.attributes[A.token])).toEqual(
      acquired.map((lease) => lease.token.toString()),
    );
    expect(granted.every((span) => span.status.code === SpanStatusCode.UNSET)).toBe(true);
    const timedOut = spans.find((span) => span.attributes[A.outcome] === 'timeout')!;
    expect(timedOut.status).toEqual({ code: SpanStatusCode.ERROR, message: 'timeout' });
    expect(timedOut.attributes[A.errorType]).toBe('LockTimeoutError');
    expect(timedOut.attributes[A.tries]).toBeGreaterThanOrEqual(1);
    expect(spans.find((span) => span.attributes[A.outcome] === 'busy')!.status.code).toBe(
      SpanStatusCode.UNSET,
    );
    expect(spanAttributeKeys(spans).has(A.key)).toBe(false);
    expect(otel.spans(spanNames.hold)).toHaveLength(0);
  });

  it('recordKeys: true adds dlock.key to metrics and spans, and error messages to span statuses', async () => {
    const otel = harness({ recordKeys: true });
    const store = new MemoryLockStore();
    const held = await provider(store).acquire('tenant-7/invoice-42');
    await expect(provider(store).acquire('tenant-7/invoice-42', { waitMs: 20 })).rejects.toThrow(
      LockTimeoutError,
    );
    await held.release();

    const recorded = await otel.collect();
    const keyed = { [A.key]: 'tenant-7/invoice-42' };
    expect(recorded.sum(M.acquireRequests, keyed)).toBe(2);
    expect(recorded.count(M.leaseDuration, keyed)).toBe(1);
    const timedOut = otel.spans(spanNames.acquire).find((span) => span.attributes[A.outcome] === 'timeout')!;
    expect(timedOut.attributes[A.key]).toBe('tenant-7/invoice-42');
    expect(timedOut.status.message).toContain('tenant-7/invoice-42');
  });

  it('holdSpans: true records a span per lease from the grant to its end, a sibling of its acquire span', async () => {
    const otel = harness({ holdSpans: true });
    const locks = provider();
    const leases = await otel.tracer.startActiveSpan('job', async (job) => {
      const kept = await locks.acquire('kept');
      const lapsing = await locks.acquire('lapsing', { ttlMs: 30 });
      await sleep(20);
      await kept.release();
      await sleep(60);
      job.end();
      return [kept, lapsing] as const;
    });

    const job = otel.spans('job')[0]!;
    const holds = otel.spans(spanNames.hold);
    expect(holds).toHaveLength(2);
    const released = holds.find((span) => span.attributes[A.end] === 'released')!;
    const lost = holds.find((span) => span.attributes[A.end] === 'lost')!;
    expect(released.attributes[A.token]).toBe(leases[0].token.toString());
    expect(lost.attributes[A.token]).toBe(leases[1].token.toString());
    expect(released.attributes).toMatchObject({ ...memory, [A.end]: 'released' });
    expect(released.status.code).toBe(SpanStatusCode.UNSET);
    expect(lost.attributes).toMatchObject({ ...memory, [A.end]: 'lost', [A.lostReason]: 'expired' });
    expect(lost.status).toEqual({ code: SpanStatusCode.ERROR, message: 'lost: expired' });
    for (const span of holds) expect(span.parentSpanContext?.spanId).toBe(job.spanContext().spanId);
    // The hold spans the time the lease was held (kept: at least the 20 ms before its release).
    expect(durationMs(released.duration)).toBeGreaterThanOrEqual(15);
  });

  it('counts failed releases and extensions by error.type, and ends the hold at the failed release', async () => {
    const otel = harness({ holdSpans: true });
    // The memory reference driver, with a network that refuses releases and extensions on demand.
    const inner = createMemoryDriver(new MemoryLockStore());
    let refusing = false;
    const refused = async () => {
      throw new BackendUnavailableError('memory', 'memory', 'refused');
    };
    const driver = new Proxy(inner, {
      get(target, property) {
        if (refusing && (property === 'release' || property === 'extend')) return refused;
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const locks = createLockProvider(driver, { retry: { cleanupMs: 30, minDelayMs: 5, maxDelayMs: 10 } });
    cleanups.push(() => locks.close());

    const lease = await locks.acquire('flaky', { ttlMs: 5_000 });
    refusing = true;
    await expect(lease.extend()).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(lease.release()).rejects.toBeInstanceOf(BackendUnavailableError);
    refusing = false;
    await lease.release();

    const recorded = await otel.collect();
    const unavailable = { ...memory, [A.errorType]: 'BackendUnavailableError' };
    expect(recorded.sum(M.extendFailures, unavailable)).toBe(1);
    expect(recorded.sum(M.releaseFailures, unavailable)).toBe(1);
    // The failed release ended the hold; the release that then succeeded does not end it twice.
    expect(recorded.count(M.leaseDuration, { [A.end]: 'release-failed' })).toBe(1);
    expect(recorded.count(M.leaseDuration)).toBe(1);
    expect(recorded.sum(M.leaseActive, memory)).toBe(0);
    const [hold] = otel.spans(spanNames.hold);
    expect(hold!.attributes).toMatchObject({
      [A.end]: 'release-failed',
      [A.errorType]: 'BackendUnavailableError',
    });
    expect(hold!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'release failed' });
  });
});

function durationMs([seconds, nanos]: [number, number]): number {
  return seconds * 1_000 + nanos / 1e6;
}
