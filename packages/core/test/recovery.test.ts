import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Attempt,
  BackendUnavailableError,
  type Grant,
  type HolderInfo,
  InvalidArgumentError,
  type LockDriver,
  type LockProvider,
  type LockRequest,
  LockTimeoutError,
  MemoryLockStore,
  type MemoryTicket,
  NotHeldError,
  createLockProvider,
  createMemoryDriver,
  createMemoryProvider,
  withLock,
} from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Operation = 'attempt' | 'release' | 'extend' | 'withdraw' | 'waitForChange';
type Fault =
  /** Fail before doing anything: the backend certainly did not apply the request. */
  | 'refused'
  /** Apply the request, then report its outcome as unknown (the reply was lost). */
  | 'reply-lost'
  /** Fail with a non-transient error (authentication). */
  | 'denied'
  /** Never answer. */
  | 'hang';

/**
 * The memory reference driver behind a switchboard of faults, one per operation: what a driver does
 * when its network misbehaves. Lifecycle tests in core use it to pin core's recovery policy down; every
 * real backend is checked against the same policy through a TCP fault proxy in the conformance kit.
 */
class FaultyDriver implements LockDriver<MemoryTicket, MemoryTicket> {
  readonly inner: LockDriver<MemoryTicket, MemoryTicket>;
  readonly faults: Partial<Record<Operation, { fault: Fault; times: number }>> = {};
  readonly calls: Record<Operation, number> = {
    attempt: 0,
    release: 0,
    extend: 0,
    withdraw: 0,
    waitForChange: 0,
  };
  extendDelayMs = 0;

  constructor(store: MemoryLockStore) {
    this.inner = createMemoryDriver(store);
  }

  get backend() {
    return this.inner.backend;
  }
  get address() {
    return 'faulty-memory';
  }
  get capabilities() {
    return this.inner.capabilities;
  }
  get limits() {
    return this.inner.limits;
  }

  fail(operation: Operation, fault: Fault, times = 1): void {
    this.faults[operation] = { fault, times };
  }

  #take(operation: Operation): Fault | undefined {
    this.calls[operation]++;
    const entry = this.faults[operation];
    if (!entry || entry.times <= 0) return undefined;
    entry.times--;
    return entry.fault;
  }

  #error(operation: Operation, fault: Fault): BackendUnavailableError {
    return new BackendUnavailableError('memory', 'faulty-memory', `${operation}: injected ${fault}`, {
      transient: fault !== 'denied',
    });
  }

  async attempt(
    request: LockRequest,
    ticket: MemoryTicket | undefined,
  ): Promise<Attempt<MemoryTicket, MemoryTicket>> {
    const fault = this.#take('attempt');
    if (fault === 'hang') return new Promise(() => {});
    if (fault === 'refused' || fault === 'denied') throw this.#error('attempt', fault);
    const result = await this.inner.attempt(request, ticket);
    if (fault === 'reply-lost') {
      const sent = result.outcome === 'granted' ? result.grant.handle : (result.ticket ?? ticket);
      return { outcome: 'unknown', ticket: sent as MemoryTicket, cause: this.#error('attempt', fault) };
    }
    return result;
  }

  async waitForChange(request: LockRequest, ticket: MemoryTicket | undefined, maxWaitMs: number) {
    const fault = this.#take('waitForChange');
    if (fault) throw this.#error('waitForChange', fault);
    return this.inner.waitForChange(request, ticket, maxWaitMs);
  }

  async withdraw(request: LockRequest, ticket: MemoryTicket) {
    const fault = this.#take('withdraw');
    if (fault) throw this.#error('withdraw', fault);
    return this.inner.withdraw(request, ticket);
  }

  async extend(key: string, grant: Grant<MemoryTicket>, ttlMs: number) {
    const fault = this.#take('extend');
    if (this.extendDelayMs > 0) await sleep(this.extendDelayMs);
    if (fault) throw this.#error('extend', fault);
    return this.inner.extend(key, grant, ttlMs);
  }

  async release(key: string, grant: Grant<MemoryTicket>) {
    const fault = this.#take('release');
    if (fault === 'reply-lost') {
      await this.inner.release(key, grant);
      throw this.#error('release', fault);
    }
    if (fault) throw this.#error('release', fault);
    return this.inner.release(key, grant);
  }

  holder(key: string): Promise<HolderInfo | null> {
    return this.inner.holder(key);
  }

  close() {
    return this.inner.close();
  }
}

const open: LockProvider[] = [];
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((provider) => provider.close()));
});

function setup(retry = {}) {
  const store = new MemoryLockStore();
  const driver = new FaultyDriver(store);
  const provider = createLockProvider(driver, { retry: { minDelayMs: 5, maxDelayMs: 50, ...retry } });
  const other = createMemoryProvider({ store });
  open.push(provider, other);
  return { store, driver, provider, other };
}

/** Reaches the backend once, as a provider in service has. */
async function warm(provider: LockProvider) {
  const lease = await provider.acquire('warm-up', { ttlMs: 1_000 });
  await lease.release();
}

describe('unknown outcomes', () => {
  it('a waiting acquire whose reply was lost adopts what it obtained instead of leaving an orphan', async () => {
    const { store, driver, provider, other } = setup();
    await warm(provider);
    driver.fail('attempt', 'reply-lost');
    const lease = await provider.acquire('k', { ttlMs: 30_000, waitMs: 5_000 });
    expect(driver.calls.attempt).toBe(3);
    expect((await other.holder('k'))?.token).toBe(lease.token);
    await lease.release();
    expect(store.residue('k')).toEqual([]);
  });

  it('tryAcquire stays one attempt: it rejects an unknown outcome and undoes it', async () => {
    const { store, driver, provider, other } = setup();
    await warm(provider);
    driver.fail('attempt', 'reply-lost');
    await expect(provider.tryAcquire('k', { ttlMs: 30_000 })).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(await other.holder('k')).toBeNull();
    expect(store.residue('k')).toEqual([]);
  });

  it('an unknown outcome whose undo fails at first is undone in the background once the backend answers', async () => {
    const { store, driver, provider, other } = setup();
    await warm(provider);
    driver.fail('attempt', 'reply-lost');
    driver.fail('withdraw', 'refused', 3);
    await expect(provider.tryAcquire('k', { ttlMs: 30_000 })).rejects.toBeInstanceOf(BackendUnavailableError);
    expect(store.residue('k')).not.toEqual([]);
    await expect.poll(() => store.residue('k'), { timeout: 2_000 }).toEqual([]);
    expect(driver.calls.withdraw).toBe(4);
    expect(await other.holder('k')).toBeNull();
  });
});

describe('transient failures while waiting', () => {
  it('a waiting acquire retries transient failures within waitMs and keeps its place in line', async () => {
    const { driver, provider, other } = setup();
    await warm(provider);
    const held = await other.acquire('k', { ttlMs: 10_000 });
    const third = createMemoryProvider();
    open.push(third);
    const waiting = provider.acquire('k', { ttlMs: 10_000, waitMs: 10_000 });
    await sleep(30);
    driver.fail('attempt', 'refused', 4);
    driver.fail('waitForChange', 'refused', 2);
    await held.release();
    const lease = await waiting;
    expect(lease.signal.aborted).toBe(false);
    expect(driver.calls.attempt).toBeGreaterThanOrEqual(5);
    await lease.release();
  });

  it('a provider that never reached its backend fails at the first transient failure', async () => {
    const { driver, provider } = setup();
    driver.fail('attempt', 'refused', 100);
    const error = await provider.acquire('k', { waitMs: 60_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(driver.calls.attempt).toBe(1);
  });

  it('gives up when the backend stays down for outageMs, naming the last cause and the tries', async () => {
    const { driver, provider } = setup({ outageMs: 300 });
    await warm(provider);
    driver.fail('attempt', 'refused', 10_000);
    const started = performance.now();
    const error = (await provider
      .acquire('k', { waitMs: 60_000 })
      .catch((e: unknown) => e)) as BackendUnavailableError;
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(error.tries).toBeGreaterThan(1);
    expect(error.message).toMatch(/gave up after \d+ tries/);
    expect(error.message).toContain('injected refused');
    // outageMs plus one back-off at most, with slack for a busy machine.
    expect(performance.now() - started).toBeLessThan(300 + 50 + 1_000);
  });

  it('does not retry a failure that is not transient (authentication)', async () => {
    const { driver, provider } = setup();
    await warm(provider);
    driver.fail('attempt', 'denied', 100);
    const error = (await provider
      .acquire('k', { waitMs: 60_000 })
      .catch((e: unknown) => e)) as BackendUnavailableError;
    expect(error.transient).toBe(false);
    expect(driver.calls.attempt).toBe(2);
  });

  it('answers within waitMs + settleGraceMs when an attempt never returns, and says the backend did not answer', async () => {
    const { driver, provider } = setup();
    await warm(provider);
    driver.fail('attempt', 'hang');
    const started = performance.now();
    const error = await provider.acquire('k', { waitMs: 200 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/no answer within waitMs=200/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(200 + 500 - 5);
    expect(performance.now() - started).toBeLessThan(200 + 500 + 1_000);
  });

  it('rejects LockTimeoutError, not BackendUnavailableError, when the key was simply held all along', async () => {
    const { provider, other } = setup();
    await warm(provider);
    const held = await other.acquire('k', { ttlMs: 10_000 });
    await expect(provider.acquire('k', { waitMs: 100 })).rejects.toBeInstanceOf(LockTimeoutError);
    await held.release();
  });
});

describe('release', () => {
  it('retries a transient failure while the lease is valid, then the lock is free', async () => {
    const { driver, provider, other } = setup();
    const lease = await provider.acquire('k', { ttlMs: 10_000 });
    driver.fail('release', 'refused', 3);
    await lease.release();
    expect(driver.calls.release).toBe(4);
    expect(await other.holder('k')).toBeNull();
  });

  it('a rejected release can be called again, and it really sends again', async () => {
    const { driver, provider, other } = setup({ cleanupMs: 60 });
    const lease = await provider.acquire('k', { ttlMs: 30_000 });
    driver.fail('release', 'refused', 1_000);
    await expect(lease.release()).rejects.toBeInstanceOf(BackendUnavailableError);
    const sent = driver.calls.release;
    expect((await other.holder('k'))?.token).toBe(lease.token);
    driver.fail('release', 'refused', 0);
    await lease.release();
    expect(driver.calls.release).toBe(sent + 1);
    expect(await other.holder('k')).toBeNull();
    await lease.release();
    expect(driver.calls.release).toBe(sent + 1);
  });

  it('close() retries the release of a lease whose release failed', async () => {
    // cleanupMs bounds the retries of both releases: the first gives up after it; the one close() sends
    // needs three tries (two failures, 5-20 ms apart) within it. 1 s leaves a busy machine ample room
    // (60 ms did not, under a CPU hog).
    const { driver, provider, other } = setup({ cleanupMs: 1_000 });
    const lease = await provider.acquire('k', { ttlMs: 30_000 });
    driver.fail('release', 'refused', 1_000);
    await expect(lease.release()).rejects.toBeInstanceOf(BackendUnavailableError);
    driver.fail('release', 'refused', 2);
    await provider.close();
    expect(await other.holder('k')).toBeNull();
    expect(lease.signal.aborted).toBe(false);
  });

  it('a released lease is never reported lost, even with an extension in flight; extend then rejects NotHeldError', async () => {
    const { driver, provider } = setup();
    for (let trial = 0; trial < 10; trial++) {
      const lease = await provider.acquire(`k${trial}`, { ttlMs: 200 });
      driver.extendDelayMs = 20;
      driver.fail('extend', trial % 2 === 0 ? 'refused' : 'reply-lost');
      const extending = lease.extend().catch((e: unknown) => e);
      await lease.release();
      expect(await extending).toBeInstanceOf(NotHeldError);
      await expect(lease.extend()).rejects.toBeInstanceOf(NotHeldError);
      driver.extendDelayMs = 0;
      await sleep(trial === 0 ? 300 : 5);
      expect(lease.signal.aborted).toBe(false);
    }
  });
});

describe('withLock when only the release fails', () => {
  it("returns fn's result and hands the release failure to onReleaseError", async () => {
    const { driver, provider } = setup({ cleanupMs: 50 });
    const failures: unknown[] = [];
    const result = await withLock(
      provider,
      'k',
      async () => {
        driver.fail('release', 'refused', 1_000);
        return 42;
      },
      { ttlMs: 30_000, onReleaseError: (error) => failures.push(error) },
    );
    expect(result).toBe(42);
    expect(failures).toHaveLength(1);
    expect(failures[0]).toBeInstanceOf(BackendUnavailableError);
  });

  it('writes one process warning by default, and publishes every failure on its channel', async () => {
    const { driver, provider } = setup({ cleanupMs: 20 });
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    const published: unknown[] = [];
    const onPublished = (message: unknown) => published.push(message);
    subscribe('dlock:lease:release-failed', onPublished);
    try {
      for (const key of ['a', 'b']) {
        expect(
          await withLock(provider, key, () => {
            driver.fail('release', 'refused', 1_000);
            return key;
          }),
        ).toBe(key);
      }
      await sleep(10);
      expect(warnings.filter((w) => (w as { code?: string }).code === 'DLOCK_RELEASE_FAILED')).toHaveLength(
        1,
      );
      expect(published).toHaveLength(2);
      expect(published[0]).toMatchObject({ key: 'a', tries: expect.any(Number), heldMs: expect.any(Number) });
      expect((published[0] as { lease: { key: string } }).lease.key).toBe('a');
    } finally {
      process.off('warning', onWarning);
      unsubscribe('dlock:lease:release-failed', onPublished);
    }
  });
});

describe('retry policy options', () => {
  it('rejects a bad retry field with InvalidArgumentError naming it', () => {
    const store = new MemoryLockStore();
    const driver = createMemoryDriver(store);
    for (const [retry, field] of [
      [{ minDelayMs: -1 }, 'retry.minDelayMs'],
      [{ factor: 0.5 }, 'retry.factor'],
      [{ jitter: 'yes' }, 'retry.jitter'],
      [{ outageMs: Number.NaN }, 'retry.outageMs'],
      [{ maxDelayMs: 1, minDelayMs: 10 }, 'retry.maxDelayMs'],
      [{ retries: 3 }, 'retry.retries'],
    ] as const) {
      expect(() => createLockProvider(driver, { retry: retry as never })).toThrow(InvalidArgumentError);
      expect(() => createLockProvider(driver, { retry: retry as never })).toThrow(field);
    }
    expect(() => createLockProvider(driver, { settleGraceMs: -1 })).toThrow(/settleGraceMs/);
  });
});
