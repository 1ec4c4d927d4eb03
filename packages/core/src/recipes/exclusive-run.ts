import type { Lease, LockProvider } from '../contract.js';
import { InvalidArgumentError, LockTimeoutError } from '../errors.js';
import { withLock } from '../renewal.js';
import { now, pause } from '../timing.js';
import { validateDuration, validateIdentity } from '../validation.js';
import type { LeaderElector } from './leader-elector.js';
import { runHolding } from './lease-scope.js';

/**
 * Where a scheduled job runs — the @SchedulerLock(model = master | slave) choice:
 * - 'leader': exactly one instance runs each tick, whichever takes the job's lock first (ShedLock);
 *   with an elector, only its leader tries.
 * - 'followers': every instance that is not the elected leader — whose elector is running and has seen
 *   another instance lead (so not before the first election, nor on an instance about to win it).
 * - 'all': every instance.
 */
export type ScheduleMode = 'leader' | 'followers' | 'all';

const scheduleModes: readonly ScheduleMode[] = ['leader', 'followers', 'all'];

export interface ExclusiveRunOptions {
  /** Default 'leader'. */
  mode?: ScheduleMode;
  /**
   * Mode 'leader': the ttl of the job's lock — how long it outlives a runner that crashed. While the job
   * runs, a watchdog renews it (so a slow job is never run twice at once), and the job's signal aborts
   * if a renewal fails.
   */
  lockAtMostForMs?: number;
  /**
   * Mode 'leader': the lock is held at least this long from the start of a run, however fast the job.
   * It must exceed the clock skew between instances (plus their timer lateness): an instance whose
   * clock is behind fires the same tick later and must still find it taken. Must be < the tick period.
   */
  lockAtLeastForMs?: number;
  /** Who holds the job's lock, as holder() shows. Default: the provider's identity. */
  identity?: string;
}

/** @internal How one run of a job is guarded; built once from validated options. */
export interface ExclusiveGuard {
  readonly provider: LockProvider;
  readonly name: string;
  readonly mode: ScheduleMode;
  readonly lockAtMostForMs: number;
  readonly lockAtLeastForMs: number;
  readonly identity: string | undefined;
}

export type ExclusiveOutcome<T> =
  | { readonly ran: true; readonly value: T }
  /** 'held': another runner has the lock; 'not-leader' / 'not-follower': the elector's role ruled it out. */
  | { readonly ran: false; readonly skipped: 'held' | 'not-leader' | 'not-follower' };

/** @internal Checks the mode and lock timings together, so a bad combination fails where it is written. */
export function validateExclusiveRunOptions(options: ExclusiveRunOptions, hasElector: boolean): ScheduleMode {
  const mode = options.mode ?? 'leader';
  if (!scheduleModes.includes(mode)) {
    throw new InvalidArgumentError('mode', mode, scheduleModes.map((m) => `'${m}'`).join(', '));
  }
  if (mode === 'leader') {
    validateDuration('lockAtMostForMs', options.lockAtMostForMs, 1);
    validateDuration('lockAtLeastForMs', options.lockAtLeastForMs, 0);
    if (options.lockAtLeastForMs > options.lockAtMostForMs) {
      throw new InvalidArgumentError(
        'lockAtLeastForMs',
        options.lockAtLeastForMs,
        `at most lockAtMostForMs (${options.lockAtMostForMs})`,
      );
    }
  } else {
    for (const field of ['lockAtMostForMs', 'lockAtLeastForMs'] as const) {
      if (options[field] !== undefined) {
        throw new InvalidArgumentError(field, options[field], `unset: only mode 'leader' takes a lock`);
      }
    }
  }
  if (mode === 'followers' && !hasElector) {
    throw new InvalidArgumentError(
      'elector',
      undefined,
      `a LeaderElector (or its options) for mode 'followers'`,
    );
  }
  if (mode === 'all' && hasElector) {
    throw new InvalidArgumentError('elector', 'an elector', `unset for mode 'all'`);
  }
  validateIdentity(options.identity);
  return mode;
}

/**
 * @internal One run of a guarded job. In mode 'leader' a busy lock means skip, never queue: the lock is
 * tried once, renewed while the body runs, held until lockAtLeastForMs has passed, then released.
 * Rejects with the body's error, or LockLostError when the lock could not be kept while it ran.
 */
export async function runExclusive<T>(
  guard: ExclusiveGuard,
  elector: LeaderElector | undefined,
  stop: AbortSignal,
  body: (signal: AbortSignal, lease: Lease | undefined) => T | Promise<T>,
): Promise<ExclusiveOutcome<T>> {
  if (guard.mode === 'all') return { ran: true, value: await body(stop, undefined) };
  if (guard.mode === 'followers') {
    if (!elector?.isFollower()) return { ran: false, skipped: 'not-follower' };
    return { ran: true, value: await body(stop, undefined) };
  }
  if (elector && !elector.isLeader()) return { ran: false, skipped: 'not-leader' };
  let entered = false;
  try {
    const value = await withLock(
      guard.provider,
      guard.name,
      async (lease) => {
        entered = true;
        const holdUntil = now() + guard.lockAtLeastForMs;
        try {
          const signal = AbortSignal.any([lease.signal, stop]);
          return await runHolding(guard.provider, lease, () => body(signal, lease));
        } finally {
          // Even a fast or failed run keeps the tick taken until an instance whose clock is behind
          // (by less than lockAtLeastForMs) fires the same tick and finds the lock held.
          await pause(holdUntil - now());
        }
      },
      { ttlMs: guard.lockAtMostForMs, waitMs: 0, identity: guard.identity },
    );
    return { ran: true, value };
  } catch (error) {
    if (!entered && error instanceof LockTimeoutError) return { ran: false, skipped: 'held' };
    throw error;
  }
}
