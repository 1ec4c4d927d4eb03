import type { Grant, Lease, LockDriver } from './contract.js';
import { LockLostError, NotHeldError } from './errors.js';
import { now } from './timing.js';
import { validateDuration } from './validation.js';

/**
 * The one Lease implementation every backend shares. It owns the lost-signal: the signal aborts when
 * the local validity window closes without an extension, when the driver reports the grant lost
 * (session expiry, dropped connection), or when an extension finds another owner.
 */
export class DriverLease<Handle> implements Lease {
  readonly key: string;
  readonly identity: string;
  readonly token: bigint;
  readonly ttlMs: number;
  readonly #driver: LockDriver<Handle, unknown>;
  readonly #grant: Grant<Handle>;
  readonly #lost = new AbortController();
  readonly #onFinished: (lease: DriverLease<Handle>) => void;
  #expiryTimer: NodeJS.Timeout | undefined;
  #release: Promise<void> | undefined;
  #detachBackendLost: (() => void) | undefined;

  constructor(
    driver: LockDriver<Handle, unknown>,
    key: string,
    identity: string,
    ttlMs: number,
    grant: Grant<Handle>,
    onFinished: (lease: DriverLease<Handle>) => void,
  ) {
    this.#driver = driver;
    this.key = key;
    this.identity = identity;
    this.ttlMs = ttlMs;
    this.token = grant.token;
    this.#grant = grant;
    this.#onFinished = onFinished;
    const backendLost = grant.lost;
    if (backendLost) {
      const onBackendLost = () =>
        this.#markLost(
          backendLost.reason instanceof LockLostError
            ? backendLost.reason
            : new LockLostError(
                key,
                `${driver.backend} session lost (${describeReason(backendLost.reason)})`,
                {
                  cause: backendLost.reason,
                },
              ),
        );
      if (backendLost.aborted) onBackendLost();
      else {
        backendLost.addEventListener('abort', onBackendLost, { once: true });
        // A driver may share one `lost` signal across many grants: detach once this lease is over,
        // or every lease ever taken would stay reachable from it.
        this.#detachBackendLost = () => backendLost.removeEventListener('abort', onBackendLost);
      }
    }
    this.#armExpiry(grant.validUntil);
  }

  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  get released(): boolean {
    return this.#release !== undefined;
  }

  async extend(ttlMs: number = this.ttlMs): Promise<void> {
    validateDuration('ttlMs', ttlMs, this.#driver.limits.minTtlMs);
    if (this.#release) throw new NotHeldError(this.key, 'extend');
    if (this.signal.aborted) throw this.signal.reason;
    let validUntil: number;
    try {
      validUntil = await this.#driver.extend(this.key, this.#grant, ttlMs);
    } catch (error) {
      // Another owner (or no owner) means the lock is gone for good; a transport error leaves the
      // lease valid until its window closes, and the caller (or the watchdog) may try again.
      if (error instanceof LockLostError) this.#markLost(error);
      throw error;
    }
    if (this.#release) throw new NotHeldError(this.key, 'extend');
    if (this.signal.aborted) throw this.signal.reason;
    this.#armExpiry(validUntil);
  }

  release(): Promise<void> {
    this.#release ??= this.#releaseOnce();
    return this.#release;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** For the provider's close(): the lease ends because its provider is going away. */
  markLost(reason: LockLostError): void {
    this.#markLost(reason);
  }

  async #releaseOnce(): Promise<void> {
    this.#clearExpiry();
    this.#detachBackendLost?.();
    try {
      await this.#driver.release(this.key, this.#grant);
    } finally {
      this.#onFinished(this);
    }
  }

  #armExpiry(validUntil: number): void {
    this.#clearExpiry();
    if (!Number.isFinite(validUntil)) return;
    const remaining = validUntil - now();
    if (remaining <= 0) {
      this.#markLost(new LockLostError(this.key, 'the lease expired before it could be used or extended'));
      return;
    }
    this.#expiryTimer = setTimeout(
      () =>
        this.#markLost(new LockLostError(this.key, `ttl of ${this.ttlMs} ms elapsed without an extension`)),
      remaining,
    );
    // A lease timer alone must not keep a process alive that has nothing else to do.
    this.#expiryTimer.unref();
  }

  #clearExpiry(): void {
    if (this.#expiryTimer) clearTimeout(this.#expiryTimer);
    this.#expiryTimer = undefined;
  }

  #markLost(reason: LockLostError): void {
    this.#clearExpiry();
    this.#detachBackendLost?.();
    if (!this.#lost.signal.aborted) this.#lost.abort(reason);
  }
}

function describeReason(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
