import { setMaxListeners } from 'node:events';
import type {
  AcquireOptions,
  Capabilities,
  HolderInfo,
  Lease,
  LockDriver,
  LockProvider,
  LockRequest,
  TryAcquireOptions,
} from './contract.js';
import { InvalidArgumentError, LockLostError, LockTimeoutError, ProviderClosedError } from './errors.js';
import { DriverLease } from './lease.js';
import { defaultIdentity, ignore, now, pause, raceAbort } from './timing.js';
import {
  validateDuration,
  validateIdentity,
  validateKey,
  validateOptionalDuration,
  validateSignal,
} from './validation.js';

export interface ProviderOptions {
  /** A provider over the backend's native election layout, exposed as `provider.election`. */
  election?: LockProvider;
  /** Lease lifetime when `acquire` is given no ttlMs. Default 30 000 ms. */
  defaultTtlMs?: number;
  /**
   * Longest a waiter sleeps between attempts when no push notification arrives (a lost message or a
   * silent expiry costs at most this much). Default 1 000 ms.
   */
  fallbackRecheckMs?: number;
  /** Identity used when `acquire` is given none. Default host:pid:random. */
  identity?: string;
}

/**
 * Turns a backend driver into a LockProvider. This is the only place that waits, times out, handles
 * abort, and tracks leases, so every backend behaves the same way at the edges.
 */
export function createLockProvider<Handle, Ticket>(
  driver: LockDriver<Handle, Ticket>,
  options: ProviderOptions = {},
): LockProvider {
  return new DriverLockProvider(driver, options);
}

/** Reason for ending a request that completed normally (a shared instance: no allocation per request). */
const requestFinished = new Error('the lock request finished');

class DriverLockProvider<Handle, Ticket> implements LockProvider {
  readonly #driver: LockDriver<Handle, Ticket>;
  readonly #defaultTtlMs: number;
  readonly #fallbackRecheckMs: number;
  readonly #identity: string;
  readonly election: LockProvider | undefined;
  readonly watchHolder: ((key: string, signal: AbortSignal) => AsyncIterable<HolderInfo | null>) | undefined;
  readonly #closing = new AbortController();
  readonly #leases = new Set<DriverLease<Handle>>();
  #closed: Promise<void> | undefined;

  constructor(driver: LockDriver<Handle, Ticket>, options: ProviderOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', options, 'an object');
    }
    this.#driver = driver;
    this.#defaultTtlMs = options.defaultTtlMs ?? 30_000;
    validateDuration('defaultTtlMs', this.#defaultTtlMs, driver.limits.minTtlMs);
    this.#fallbackRecheckMs = options.fallbackRecheckMs ?? 1_000;
    validateDuration('fallbackRecheckMs', this.#fallbackRecheckMs, 1);
    validateIdentity(options.identity);
    this.#identity = options.identity ?? defaultIdentity();
    // Every pending acquire listens for close(): hundreds at once are normal, not a leak.
    setMaxListeners(0, this.#closing.signal);
    this.election = options.election;
    const watch = driver.watchHolder?.bind(driver);
    this.watchHolder = watch
      ? (key, signal) => {
          this.#checkKey(key);
          return watch(key, signal);
        }
      : undefined;
  }

  get backend(): string {
    return this.#driver.backend;
  }

  get capabilities(): Capabilities {
    return this.#driver.capabilities;
  }

  acquire(key: string, options: AcquireOptions = {}): Promise<Lease> {
    return this.#acquire(key, options, 'wait') as Promise<Lease>;
  }

  tryAcquire(key: string, options: TryAcquireOptions = {}): Promise<Lease | null> {
    return this.#acquire(key, options, 'try');
  }

  async holder(key: string): Promise<HolderInfo | null> {
    this.#checkKey(key);
    if (this.#closed) throw new ProviderClosedError(this.backend);
    return this.#driver.holder(key);
  }

  close(): Promise<void> {
    this.#closed ??= this.#closeOnce();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #closeOnce(): Promise<void> {
    this.#closing.abort(new ProviderClosedError(this.backend));
    await this.election?.close();
    const leases = [...this.#leases];
    for (const lease of leases) lease.markLost(new LockLostError(lease.key, 'its provider was closed'));
    await Promise.allSettled(leases.map((lease) => lease.release()));
    await this.#driver.close();
  }

  #checkKey(key: unknown): asserts key is string {
    validateKey(key, this.#driver.limits.maxKeyBytes);
    this.#driver.validateKey?.(key);
  }

  async #acquire(key: string, options: AcquireOptions, mode: 'wait' | 'try'): Promise<Lease | null> {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', options, 'an object');
    }
    this.#checkKey(key);
    const ttlMs = options.ttlMs ?? this.#defaultTtlMs;
    validateDuration('ttlMs', ttlMs, this.#driver.limits.minTtlMs);
    validateOptionalDuration('waitMs', options.waitMs, 0);
    validateSignal('signal', options.signal);
    validateIdentity(options.identity);
    if (this.#closed) throw new ProviderClosedError(this.backend);
    options.signal?.throwIfAborted();

    const waitMs = options.waitMs ?? Number.POSITIVE_INFINITY;
    const deadline = now() + waitMs;
    const giveUp = options.signal
      ? AbortSignal.any([options.signal, this.#closing.signal])
      : this.#closing.signal;
    // The request's own signal also tells the driver that this request is over, whatever the outcome,
    // so it can drop subscriptions or watches it kept for it.
    const requestEnd = new AbortController();
    const forwardGiveUp = () => requestEnd.abort(giveUp.reason);
    giveUp.addEventListener('abort', forwardGiveUp, { once: true });
    const request: LockRequest = {
      key,
      identity: options.identity ?? this.#identity,
      ttlMs,
      signal: requestEnd.signal,
    };
    let ticket: Ticket | undefined;
    let granted = false;
    try {
      for (;;) {
        const attempt = await raceAbort(this.#driver.attempt(request, ticket), giveUp, (late) => {
          // The caller gave up while the attempt was in flight: undo whatever it obtained.
          if (late.acquired) this.#driver.release(key, late.grant).catch(ignore);
          else if (late.ticket !== undefined) this.#driver.withdraw(request, late.ticket).catch(ignore);
        });
        if (attempt.acquired) {
          granted = true;
          const lease = new DriverLease(this.#driver, key, request.identity, ttlMs, attempt.grant, (done) =>
            this.#leases.delete(done),
          );
          this.#leases.add(lease);
          return lease;
        }
        ticket = attempt.ticket ?? ticket;
        if (mode === 'try') return null;
        const remaining = deadline - now();
        if (remaining <= 0) throw new LockTimeoutError(key, waitMs);
        await this.#waitForChange(request, ticket, Math.min(this.#fallbackRecheckMs, remaining), giveUp);
      }
    } finally {
      giveUp.removeEventListener('abort', forwardGiveUp);
      if (!requestEnd.signal.aborted) requestEnd.abort(requestFinished);
      if (!granted && ticket !== undefined) await this.#driver.withdraw(request, ticket).catch(ignore);
    }
  }

  async #waitForChange(
    request: LockRequest,
    ticket: Ticket | undefined,
    maxWaitMs: number,
    giveUp: AbortSignal,
  ) {
    const change = this.#driver.waitForChange(request, ticket, maxWaitMs);
    change.catch(ignore);
    // The driver promises to settle within maxWaitMs; the guard covers one that does not.
    let guard: NodeJS.Timeout | undefined;
    const overdue = new Promise<void>((resolve) => {
      guard = setTimeout(resolve, maxWaitMs + 50);
    });
    try {
      await raceAbort(Promise.race([change, overdue]), giveUp);
    } finally {
      clearTimeout(guard);
    }
  }
}
