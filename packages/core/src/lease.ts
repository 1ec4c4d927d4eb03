import type { Grant, LeaseDriver, LockRequest, ReadWriteMode } from './contract.js';
import { type LeaseKind, type LostReason, publish } from './diagnostics.js';
import { BackendUnavailableError, LockLostError, NotHeldError } from './errors.js';
import { type RetryPolicy, gaveUp, retryAfterFirstFailure } from './retry.js';
import { now } from './timing.js';
import { validateDuration } from './validation.js';

/** What a lease needs from the provider that granted it. */
export interface LeaseContext<Handle> {
  readonly driver: LeaseDriver<LockRequest, Handle, unknown>;
  readonly kind: LeaseKind;
  readonly policy: RetryPolicy;
  /** Stops release retries once the provider has closed (after its closeMs). */
  readonly stopRetries: AbortSignal;
  /** Called once the release is confirmed (the provider stops tracking the lease). */
  readonly onReleased: (lease: DriverLease<Handle>) => void;
}

/**
 * The one Lease implementation every backend and every primitive shares (a lock, a permit, a read or
 * a write lease). It owns the lost-signal: the signal aborts when the local validity window closes
 * without an extension, when the driver reports the grant lost (session expiry, dropped connection),
 * or when an extension finds another owner — and never once release() has been called, so a released
 * lease is never reported lost (issue 11: an extension in flight during release used to abort it).
 *
 * release() retries transient failures under the provider's retry policy while the validity window is
 * open; a release that still fails can be called again and really sends again.
 *
 * Nothing is built per lease that nobody uses: the AbortController behind `signal` (the most expensive
 * object a lease would otherwise make) is created when the signal is first read, already aborted if
 * the lease was lost before.
 */
export class DriverLease<Handle> {
  readonly key: string;
  readonly identity: string;
  readonly token: bigint;
  readonly ttlMs: number;
  /** Semaphores: how many permits this lease takes. */
  readonly permits: number | undefined;
  /** Read-write locks: which side. */
  readonly mode: ReadWriteMode | undefined;
  readonly #context: LeaseContext<Handle>;
  readonly #grant: Grant<Handle>;
  readonly #grantedAt = now();
  #lost: AbortController | undefined;
  /** Why the lease was lost; set once, whether or not the signal has been built. */
  #lostReason: LockLostError | undefined;
  #validUntil: number;
  #expiryTimer: NodeJS.Timeout | undefined;
  /** Set by the first release() call: from then on the lease is over for its holder. */
  #releaseRequested = false;
  #released = false;
  #release: Promise<void> | undefined;
  #releaseFailed = false;
  #onBackendLost: ((reason?: unknown) => void) | undefined;

  constructor(
    context: LeaseContext<Handle>,
    request: LockRequest & { readonly permits?: number; readonly mode?: ReadWriteMode },
    grant: Grant<Handle>,
  ) {
    this.#context = context;
    this.key = request.key;
    this.identity = request.identity;
    this.ttlMs = request.ttlMs;
    this.permits = request.permits;
    this.mode = request.mode;
    this.token = grant.token;
    this.#grant = grant;
    this.#validUntil = grant.validUntil;
    const backendLost = grant.lost;
    if (backendLost?.aborted) this.#backendLost(backendLost.reason);
    else if (backendLost) {
      this.#onBackendLost = (reason?: unknown) =>
        this.#backendLost(reason instanceof Event ? backendLost.reason : reason);
      if (backendLost instanceof AbortSignal) {
        backendLost.addEventListener('abort', this.#onBackendLost, { once: true });
      } else {
        backendLost.onLost = this.#onBackendLost;
      }
    }
    this.#armExpiry();
  }

  get signal(): AbortSignal {
    if (!this.#lost) {
      this.#lost = new AbortController();
      if (this.#lostReason) this.#lost.abort(this.#lostReason);
    }
    return this.#lost.signal;
  }

  /** True once release() has been called (whether or not the backend has confirmed it yet). */
  get released(): boolean {
    return this.#releaseRequested;
  }

  async extend(ttlMs: number = this.ttlMs): Promise<void> {
    const { driver } = this.#context;
    validateDuration('ttlMs', ttlMs, driver.limits.minTtlMs);
    if (this.#releaseRequested) throw new NotHeldError(this.key, 'extend', leaseNouns[this.#context.kind]);
    if (this.#lostReason) throw this.#lostReason;
    let validUntil: number;
    try {
      validUntil = await driver.extend(this.key, this.#grant, ttlMs);
    } catch (error) {
      // Released meanwhile: whatever the extension found, the holder let go on purpose.
      if (this.#releaseRequested) throw new NotHeldError(this.key, 'extend', leaseNouns[this.#context.kind]);
      // Another owner (or no owner) means the lock is gone for good; a transport error leaves the
      // lease valid until its window closes, and the caller (or the watchdog) may try again.
      if (error instanceof LockLostError) this.#markLost(error, 'taken-over');
      publish.extendFailed(() => ({ ...this.#describe(), ttlMs, error }));
      throw error;
    }
    if (this.#releaseRequested) throw new NotHeldError(this.key, 'extend', leaseNouns[this.#context.kind]);
    if (this.#lostReason) throw this.#lostReason;
    this.#validUntil = validUntil;
    this.#armExpiry();
    publish.extended(() => ({ ...this.#describe(), ttlMs }));
  }

  release(): Promise<void> {
    if (this.#released) return Promise.resolve();
    if (!this.#releaseRequested) {
      this.#releaseRequested = true;
      this.#clearExpiry();
      this.#detachBackendLost();
    }
    // A release that failed is sent again by the next call.
    if (this.#releaseFailed) {
      this.#releaseFailed = false;
      this.#release = undefined;
    }
    this.#release ??= this.#releaseWithRetries();
    return this.#release;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** For the provider's close(): the lease ends because its provider is going away. */
  markLost(reason: LockLostError): void {
    this.#markLost(reason, 'closed');
  }

  /**
   * Retries transient failures while the validity window is open (after that the lock has lapsed at
   * the backend, or will within the drift allowance, and one more try is all that is worth sending).
   * Session-held leases have no window; their retries stop at the policy's cleanupMs, or sooner when
   * the session is lost, since the driver's release then has nothing left to do.
   */
  async #releaseWithRetries(): Promise<void> {
    const { driver, policy, stopRetries } = this.#context;
    const startedAt = now();
    let tries = 0;
    let lastError: unknown;
    const send = () => driver.release(this.key, this.#grant);
    try {
      // The retry policy (retry.ts retryTransient) with its first try made here: p-retry only after a
      // failure, and nothing built for it when the first try succeeds.
      if (stopRetries.aborted) throw stopRetries.reason;
      const budgetMs = Math.max(0, Math.min(this.#validUntil - startedAt, policy.cleanupMs));
      try {
        await send();
      } catch (error) {
        const run = {
          maxRetryTimeMs: budgetMs,
          signal: stopRetries,
          onFailure: (failure: unknown, attempt: number) => {
            tries = attempt;
            lastError = failure;
          },
        };
        await retryAfterFirstFailure(policy, run, send, error, startedAt, budgetMs);
      }
      if (stopRetries.aborted) throw stopRetries.reason;
    } catch (error) {
      this.#releaseFailed = true;
      const failure =
        error instanceof BackendUnavailableError && tries > 1
          ? gaveUp(
              driver.backend,
              driver.address,
              `release "${this.key}"`,
              lastError,
              tries,
              now() - startedAt,
            )
          : error;
      publish.releaseFailed(() => ({
        ...this.#describe(),
        identity: this.identity,
        error: failure,
        tries,
        heldMs: now() - this.#grantedAt,
      }));
      throw failure;
    }
    publish.released(() => ({
      ...this.#describe(),
      identity: this.identity,
      heldMs: now() - this.#grantedAt,
      tries: tries + 1,
    }));
    this.#released = true;
    this.#context.onReleased(this);
  }

  #describe() {
    return {
      lease: this,
      backend: this.#context.driver.backend,
      key: this.key,
      kind: this.#context.kind,
      token: this.token,
    };
  }

  #armExpiry(): void {
    this.#clearExpiry();
    const validUntil = this.#validUntil;
    if (!Number.isFinite(validUntil)) return;
    const remaining = validUntil - now();
    if (remaining <= 0) {
      this.#markLost(
        new LockLostError(this.key, 'the lease expired before it could be used or extended'),
        'expired',
      );
      return;
    }
    // A timer of its own rather than the provider's shared one: created in the same tick as the grant,
    // for the remaining window, it fires before a backend timer started with the full ttl in that tick
    // (the memory store's expiry, whose validUntil has no drift margin).
    this.#expiryTimer = setTimeout(this.#windowClosed, remaining);
    // A lease timer alone must not keep a process alive that has nothing else to do.
    this.#expiryTimer.unref();
  }

  #clearExpiry(): void {
    if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
  }

  readonly #windowClosed = (): void => {
    this.#expiryTimer = undefined;
    this.#markLost(
      new LockLostError(this.key, `ttl of ${this.ttlMs} ms elapsed without an extension`),
      'expired',
    );
  };

  #backendLost(reason: unknown): void {
    this.#markLost(
      reason instanceof LockLostError
        ? reason
        : new LockLostError(
            this.key,
            `${this.#context.driver.backend} session lost (${describeReason(reason)})`,
            { cause: reason },
          ),
      // A driver that reports the end of a ttl itself (memory) reports it once the window closed.
      now() >= this.#validUntil ? 'expired' : 'session',
    );
  }

  /**
   * Once this lease is over it stops listening to its grant's `lost`: a driver may share one signal
   * across many grants, and every lease ever taken would otherwise stay reachable from it.
   */
  #detachBackendLost(): void {
    const listener = this.#onBackendLost;
    if (!listener) return;
    this.#onBackendLost = undefined;
    const backendLost = this.#grant.lost;
    if (backendLost instanceof AbortSignal) backendLost.removeEventListener('abort', listener);
    else if (backendLost?.onLost === listener) backendLost.onLost = undefined;
  }

  #markLost(error: LockLostError, reason: LostReason): void {
    this.#clearExpiry();
    this.#detachBackendLost();
    if (this.#lostReason || this.#releaseRequested) return;
    this.#lostReason = error;
    this.#lost?.abort(error);
    publish.lost(() => ({
      ...this.#describe(),
      identity: this.identity,
      reason,
      error,
      heldMs: now() - this.#grantedAt,
    }));
  }
}

/** How a NotHeldError names each kind of lease. */
const leaseNouns: Record<LeaseKind, string> = {
  lock: 'lock',
  permit: 'semaphore permit on',
  read: 'read lease on',
  write: 'write lease on',
};

function describeReason(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
