import type { AcquireOptions, Lease, LockProvider } from './contract.js';
import { LockLostError } from './errors.js';
import { ignore } from './timing.js';
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
}

/**
 * Runs `fn` while holding `key`: acquires, keeps the lease renewed, releases on every exit path, and
 * rejects with LockLostError if ownership was lost while `fn` ran (even if `fn` itself succeeded —
 * its result may rest on work done without the lock).
 */
export async function withLock<T>(
  provider: LockProvider,
  key: string,
  fn: (lease: Lease) => Promise<T> | T,
  options: WithLockOptions = {},
): Promise<T> {
  const { renewIntervalMs, ...acquireOptions } = options;
  validateOptionalDuration('renewIntervalMs', renewIntervalMs, 1);
  const lease = await provider.acquire(key, acquireOptions);
  const renewal = renewInBackground(
    lease,
    renewIntervalMs === undefined ? {} : { intervalMs: renewIntervalMs },
  );
  let outcome: { ok: true; value: T } | { ok: false; error: unknown };
  try {
    outcome = { ok: true, value: await fn(lease) };
  } catch (error) {
    outcome = { ok: false, error };
  }
  renewal.stop();
  const lost = lease.signal.aborted ? (lease.signal.reason as unknown) : undefined;
  if (lost !== undefined) {
    lease.release().catch(ignore);
    if (lost instanceof LockLostError) throw lost;
    throw new LockLostError(key, 'ownership could not be guaranteed while the function ran', { cause: lost });
  }
  if (!outcome.ok) {
    // The function's own failure is the one worth reporting; the lock expires if release fails too.
    await lease.release().catch(ignore);
    throw outcome.error;
  }
  await lease.release();
  return outcome.value;
}
