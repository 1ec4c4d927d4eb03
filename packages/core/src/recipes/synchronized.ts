import type { LockProvider } from '../contract.js';
import { InvalidArgumentError } from '../errors.js';
import { withLock } from '../renewal.js';
import {
  validateDuration,
  validateIdentity,
  validateKey,
  validateOptionalDuration,
  validateSignal,
} from '../validation.js';
import { heldLease, runHolding } from './lease-scope.js';

export interface SynchronizedOptions {
  /**
   * The lease ttl: how long the lock outlives a caller that dies while running `fn` (the "hold at most"
   * of @SynchronizedLock). While `fn` runs, a watchdog renews the lease, so a live caller is never cut
   * off; if a renewal fails, the lease's signal (see currentLease()) aborts and the call rejects with
   * LockLostError.
   */
  holdDurationMs: number;
  /** How long a caller may wait for its turn before LockTimeoutError. Default: as long as it takes. */
  waitMs?: number;
  /** Time between renewals. Default: a third of holdDurationMs. */
  renewIntervalMs?: number;
  /** Who holds the lock while `fn` runs, as holder() shows. Default: the provider's identity. */
  identity?: string;
  /** Aborting stops waiting for the lock (a running `fn` is not interrupted). */
  signal?: AbortSignal;
}

/** @internal Validates once, up front, so a bad option fails where it is written, not on the first call. */
export function validateSynchronizedOptions(options: unknown): asserts options is SynchronizedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object with holdDurationMs');
  }
  const { holdDurationMs, waitMs, renewIntervalMs, identity, signal } = options as SynchronizedOptions;
  validateDuration('holdDurationMs', holdDurationMs, 1);
  validateOptionalDuration('waitMs', waitMs, 0);
  validateOptionalDuration('renewIntervalMs', renewIntervalMs, 1);
  if (renewIntervalMs !== undefined && renewIntervalMs >= holdDurationMs) {
    throw new InvalidArgumentError(
      'renewIntervalMs',
      renewIntervalMs,
      `less than holdDurationMs (${holdDurationMs})`,
    );
  }
  validateIdentity(identity);
  validateSignal('signal', signal);
}

/**
 * @internal Runs `body` as the only holder of `key` cluster-wide. A call made from inside a body that
 * already holds `key` on `provider` runs at once under that lock: like Java's reentrant locks, a
 * synchronized method may call itself.
 */
export function runSynchronized<T>(
  provider: LockProvider,
  key: string,
  options: SynchronizedOptions,
  body: () => T | Promise<T>,
): Promise<T> {
  if (heldLease(provider, key)) return Promise.resolve().then(body);
  const { holdDurationMs, renewIntervalMs, ...acquireOptions } = options;
  return withLock(provider, key, (lease) => runHolding(provider, lease, body), {
    ...acquireOptions,
    ttlMs: holdDurationMs,
    ...(renewIntervalMs === undefined ? {} : { renewIntervalMs }),
  });
}

/**
 * Wraps `fn` so that at most one caller in the whole cluster runs it at a time; other callers wait for
 * their turn with the backend's push wake-ups (no fixed retry sleeps). The wrapped function resolves
 * with fn's result, or rejects with fn's error, LockTimeoutError (waitMs passed), the signal's reason,
 * or LockLostError (the lock could not be kept while fn ran — its result may rest on unguarded work).
 * Inside fn, currentLease() is the lease (its signal and fencing token).
 */
export function synchronized<A extends unknown[], R>(
  provider: LockProvider,
  key: string,
  fn: (...args: A) => R | Promise<R>,
  options: SynchronizedOptions,
): (...args: A) => Promise<R> {
  if (typeof provider !== 'object' || provider === null || typeof provider.acquire !== 'function') {
    throw new InvalidArgumentError('provider', provider, 'a LockProvider');
  }
  validateKey(key, Number.POSITIVE_INFINITY);
  if (typeof fn !== 'function') throw new InvalidArgumentError('fn', fn, 'a function');
  validateSynchronizedOptions(options);
  const fixed = { ...options };
  return (...args: A) => runSynchronized(provider, key, fixed, () => fn(...args));
}
