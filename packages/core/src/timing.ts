import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/** Monotonic milliseconds; wall-clock jumps must not shorten or stretch a lease. */
export const now = (): number => performance.now();

/** The default identity: which host and process holds a lock, plus randomness to tell providers apart. */
export function defaultIdentity(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Resolves after `ms`, or early when `signal` aborts (resolving, not rejecting: callers re-check the
 * signal themselves, and a rejection nobody awaits would be an unhandled one).
 */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Settles with `work`, or rejects with the signal's reason as soon as `signal` aborts. When the
 * signal wins, a later result of `work` is handed to `onLateResult` (e.g. to release a grant that
 * arrived after the caller gave up) and a later failure is swallowed: nothing escapes unhandled.
 */
export function raceAbort<T>(
  work: Promise<T>,
  signal: AbortSignal,
  onLateResult?: (value: T) => void,
): Promise<T> {
  if (signal.aborted) {
    work.then((value) => onLateResult?.(value), ignore);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      settled = true;
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) onLateResult?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!settled) reject(error);
      },
    );
  });
}

export function ignore(): void {}
