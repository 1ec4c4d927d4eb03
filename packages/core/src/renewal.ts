import type {
  AcquireOptions,
  Lease,
  LockProvider,
  PermitAcquireOptions,
  PermitLease,
  ReadWriteLease,
  ReadWriteLock,
  Semaphore,
} from './contract.js';
import { InvalidArgumentError, LockLostError } from './errors.js';
import { validateOptionalDuration } from './validation.js';

export interface RenewalOptions {
  /** ttl requested on each extension. Default: the lease's own ttl. */
  ttlMs?: number;
  /** Time between extensions. Default: a third of the ttl, so two more tries fit before expiry. */
  intervalMs?: number;
}

export interface Renewal {
  /** Stops extending; the lease itself stays held until released or expired. */
  stop(): void;
}

/**
 * The watchdog: extends `lease` in the background until stopped or lost. A failed extension is never
 * silent — a lost lock aborts the lease's signal (the lease does that), and a transport failure is
 * retried sooner; if no extension succeeds before the lease's window closes, its signal aborts then.
 */
export function renewInBackground(lease: Lease, options: RenewalOptions = {}): Renewal {
  const ttlMs = options.ttlMs ?? lease.ttlMs;
  validateOptionalDuration('ttlMs', options.ttlMs, 1);
  const intervalMs = options.intervalMs ?? Math.max(1, Math.floor(ttlMs / 3));
  validateOptionalDuration('intervalMs', options.intervalMs, 1);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const stop = () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    lease.signal.removeEventListener('abort', stop);
  };
  const schedule = (delayMs: number) => {
    if (stopped || lease.signal.aborted) return;
    timer = setTimeout(async () => {
      let nextDelay = intervalMs;
      try {
        await lease.extend(ttlMs);
      } catch {
        // Lost: the lease has aborted its signal and `schedule` stops. Otherwise retry sooner.
        nextDelay = Math.max(1, Math.floor(intervalMs / 3));
      }
      schedule(nextDelay);
    }, delayMs);
  };
  lease.signal.addEventListener('abort', stop, { once: true });
  schedule(intervalMs);
  return { stop };
}

export interface WithLockOptions extends AcquireOptions {
  /** Time between background extensions. Default: a third of the ttl. */
  renewIntervalMs?: number;
  /**
   * Told when the final release failed (after the provider's retries). The function's result is
   * returned anyway: the work ran under a valid lease, and the lock ends by its ttl or session. Default:
   * a process warning (code DLOCK_RELEASE_FAILED), written once per process; every failure is also
   * published on the `dlock:lease:release-failed` diagnostics channel.
   */
  onReleaseError?: (error: unknown, lease: Lease) => void;
}

export type WithPermitOptions = WithLockOptions & PermitAcquireOptions;

let releaseWarningWritten = false;

/** The default onReleaseError: one process warning, so a failing release is never silently dropped. */
function warnReleaseFailedOnce(error: unknown, lease: Lease): void {
  if (releaseWarningWritten) return;
  releaseWarningWritten = true;
  const detail = error instanceof Error ? error.message : String(error);
  process.emitWarning(
    `releasing "${lease.key}" failed after retries; the lock ends by its ttl or session (${detail}). ` +
      'Pass onReleaseError to handle this; further failures are not written (see the dlock:lease:release-failed channel).',
    { code: 'DLOCK_RELEASE_FAILED' },
  );
}

/**
 * Runs `fn` while holding a lease from `acquire`: keeps it renewed, releases it on every exit path, and
 * rejects with LockLostError if ownership was lost while `fn` ran (even if `fn` itself succeeded — its
 * result may rest on work done without the lock). When only the final release fails, `fn`'s result
 * (or error) still wins and the failure goes to `onReleaseError`.
 */
export async function runWithLease<L extends Lease, T>(
  acquire: (options: AcquireOptions) => Promise<L>,
  fn: (lease: L) => Promise<T> | T,
  options: WithLockOptions & Record<string, unknown>,
): Promise<T> {
  const { renewIntervalMs, onReleaseError, ...acquireOptions } = options;
  validateOptionalDuration('renewIntervalMs', renewIntervalMs, 1);
  if (onReleaseError !== undefined && typeof onReleaseError !== 'function') {
    throw new InvalidArgumentError('onReleaseError', onReleaseError, 'a function (error, lease) => void');
  }
  const lease = await acquire(acquireOptions);
  const renewal = renewInBackground(
    lease,
    renewIntervalMs === undefined ? {} : { intervalMs: renewIntervalMs },
  );
  const releaseFailed = (error: unknown) => {
    try {
      (onReleaseError ?? warnReleaseFailedOnce)(error, lease);
    } catch {
      // A throwing hook must not turn a finished call into a failed one.
    }
  };
  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, value: await fn(lease) };
  } catch (error) {
    outcome = { ok: false, error };
  }
  renewal.stop();
  const lost = lease.signal.aborted ? (lease.signal.reason as unknown) : undefined;
  if (lost !== undefined) {
    lease.release().catch(releaseFailed);
    if (lost instanceof LockLostError) throw lost;
    throw new LockLostError(lease.key, 'ownership could not be guaranteed while the function ran', {
      cause: lost,
    });
  }
  await lease.release().catch(releaseFailed);
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/** Runs `fn` while holding `key` on `provider`; see runWithLease for the exact contract. */
export function withLock<T>(
  provider: LockProvider,
  key: string,
  fn: (lease: Lease) => Promise<T> | T,
  options: WithLockOptions = {},
): Promise<T> {
  return runWithLease((acquireOptions) => provider.acquire(key, acquireOptions), fn, { ...options });
}

/** Runs `fn` while holding `permits` (default 1) permits of `semaphore`; see runWithLease. */
export function withPermit<T>(
  semaphore: Semaphore,
  fn: (lease: PermitLease) => Promise<T> | T,
  options: WithPermitOptions = {},
): Promise<T> {
  return runWithLease((acquireOptions) => semaphore.acquire(acquireOptions), fn, { ...options });
}

/** Runs `fn` while holding a read lease of `lock`; see runWithLease. */
export function withReadLock<T>(
  lock: ReadWriteLock,
  fn: (lease: ReadWriteLease) => Promise<T> | T,
  options: WithLockOptions = {},
): Promise<T> {
  return runWithLease((acquireOptions) => lock.read.acquire(acquireOptions), fn, { ...options });
}

/** Runs `fn` while holding the write lease of `lock`; see runWithLease. */
export function withWriteLock<T>(
  lock: ReadWriteLock,
  fn: (lease: ReadWriteLease) => Promise<T> | T,
  options: WithLockOptions = {},
): Promise<T> {
  return runWithLease((acquireOptions) => lock.write.acquire(acquireOptions), fn, { ...options });
}
