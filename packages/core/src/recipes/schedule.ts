import { Cron } from 'croner';
import type { LockProvider } from '../contract.js';
import { InvalidArgumentError } from '../errors.js';
import { validateDuration, validateKey } from '../validation.js';
import { type ErrorReporter, logError, safeReport } from './callbacks.js';
import {
  type ExclusiveGuard,
  type ExclusiveRunOptions,
  runExclusive,
  validateExclusiveRunOptions,
} from './exclusive-run.js';
import { LeaderElector, type LeaderElectorOptions } from './leader-elector.js';

export interface ScheduleOptions extends ExclusiveRunOptions {
  /** The job's name; in mode 'leader' also the key of its lock, shared by every instance. */
  name: string;
  /** Period in ms. Ticks fall on multiples of it since the Unix epoch, so every instance fires the same ones. */
  every?: number;
  /** A 5- or 6-field cron expression (seconds first when 6), parsed by croner. Exactly one of every / cron. */
  cron?: string;
  /** IANA time zone the cron expression is read in. Default: the process's. */
  timezone?: string;
  /**
   * Mode 'followers' (required) or 'leader' (optional: then only the leader tries): the elector whose
   * leader decides, or the options to create one that runs until stop() (releaseOnCancel defaults to
   * true for it).
   */
  elector?: LeaderElector | LeaderElectorOptions;
  /** Receives what a job threw, a lock lost during a run, and backend errors. Default: stderr. */
  onError?: (error: unknown, tick: ScheduledTick | undefined) => void;
}

export interface ScheduledTick {
  readonly name: string;
  /** The tick's wall-clock instant — the same on every instance, so it identifies the tick. */
  readonly scheduledAt: Date;
  /** Mode 'leader': the fencing token of this run's lock. */
  readonly token: bigint | undefined;
}

/** `signal` aborts when stop() is called or, in mode 'leader', when the job's lock is lost. */
export type ScheduledJob = (signal: AbortSignal, tick: ScheduledTick) => unknown;

export interface ScheduleHandle {
  /** When the next tick fires, or null once stopped or when the cron expression has no more runs. */
  nextRunAt(): Date | null;
  /**
   * Fires no more ticks, aborts the signal of a running job and resolves once it has settled and its lock
   * was released (after lockAtLeastForMs, as always), and stops an elector the schedule created.
   */
  stop(): Promise<void>;
}

interface TickPlan {
  /** The first tick strictly after `epochMs`, or null when there is none. */
  nextAfter(epochMs: number): number | null;
  /** The shortest gap between ticks (for cron: among the next few): lockAtLeastForMs must stay below it. */
  readonly shortestGapMs: number;
}

// Long sleeps are cut into slices so a wall-clock jump is noticed and setTimeout's 2^31 ms limit is never hit.
const longestSleepMs = 60_000;
const cronGapSample = 16;

/**
 * Runs `job` on a schedule across every instance that calls this with the same name: in mode 'leader'
 * each tick runs on exactly one instance (ShedLock semantics: a held lock means skip, not queue), in
 * 'followers' on every non-leader, in 'all' on every instance. A tick that arrives while this instance
 * is still running the previous one is skipped. Missed ticks (a blocked process) are not caught up.
 */
export function scheduleExclusive(
  provider: LockProvider,
  options: ScheduleOptions,
  job: ScheduledJob,
): ScheduleHandle {
  if (typeof provider !== 'object' || provider === null || typeof provider.tryAcquire !== 'function') {
    throw new InvalidArgumentError('provider', provider, 'a LockProvider');
  }
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object with name and every or cron');
  }
  validateKey(options.name, Number.POSITIVE_INFINITY);
  if (typeof job !== 'function') throw new InvalidArgumentError('job', job, 'a function');
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new InvalidArgumentError('onError', options.onError, 'a function');
  }
  const plan = planTicks(options);
  const mode = validateExclusiveRunOptions(options, options.elector !== undefined);
  if (
    mode === 'leader' &&
    options.lockAtLeastForMs !== undefined &&
    options.lockAtLeastForMs >= plan.shortestGapMs
  ) {
    throw new InvalidArgumentError(
      'lockAtLeastForMs',
      options.lockAtLeastForMs,
      `less than the period between ticks (${plan.shortestGapMs} ms), or the next tick would find the lock held`,
    );
  }
  const guard: ExclusiveGuard = {
    provider,
    name: options.name,
    mode,
    lockAtMostForMs: options.lockAtMostForMs ?? 0,
    lockAtLeastForMs: options.lockAtLeastForMs ?? 0,
    identity: options.identity,
  };
  const report = (tick: ScheduledTick | undefined): ErrorReporter =>
    options.onError
      ? (error) => options.onError?.(error, tick)
      : logError(
          `scheduleExclusive "${options.name}"`,
          tick ? `the run of ${tick.scheduledAt.toISOString()}` : 'the elector',
        );

  const stop = new AbortController();
  const ownElector =
    options.elector === undefined || options.elector instanceof LeaderElector
      ? undefined
      : new LeaderElector(provider, {
          // stop() has waited for the running job by the time the elector stops: hand over at once.
          releaseOnCancel: true,
          ...(options.identity ? { identity: options.identity } : {}),
          ...options.elector,
        });
  const elector = ownElector ?? (options.elector as LeaderElector | undefined);
  const electorRun = ownElector
    ?.run(stop.signal)
    .catch((error: unknown) => safeReport(report(undefined), error));

  let timer: NodeJS.Timeout | undefined;
  let nextTick: number | null = null;
  let running: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;

  const runTick = async (scheduledAt: number): Promise<void> => {
    const tick: ScheduledTick = { name: options.name, scheduledAt: new Date(scheduledAt), token: undefined };
    try {
      await runExclusive(guard, elector, stop.signal, (signal, lease) =>
        job(signal, lease ? { ...tick, token: lease.token } : tick),
      );
    } catch (error) {
      // A job that stops by rethrowing the stop reason did what was asked.
      if (!(stop.signal.aborted && error === stop.signal.reason)) safeReport(report(tick), error);
    }
  };
  const fire = (scheduledAt: number) => {
    arm(Math.max(scheduledAt, Date.now()));
    if (running) return;
    running = runTick(scheduledAt).finally(() => {
      running = undefined;
    });
  };
  const sleepUntil = (at: number) => {
    const remaining = at - Date.now();
    if (remaining <= 0) return fire(at);
    timer = setTimeout(() => sleepUntil(at), Math.min(remaining, longestSleepMs));
  };
  const arm = (after: number) => {
    if (stop.signal.aborted) return;
    nextTick = plan.nextAfter(after);
    if (nextTick !== null) sleepUntil(nextTick);
  };
  arm(Date.now());

  const stopOnce = async () => {
    stop.abort();
    clearTimeout(timer);
    nextTick = null;
    await running;
    await electorRun;
  };
  return {
    nextRunAt: () => (nextTick === null ? null : new Date(nextTick)),
    stop: () => {
      stopping ??= stopOnce();
      return stopping;
    },
  };
}

function planTicks(options: ScheduleOptions): TickPlan {
  const { every, cron, timezone } = options;
  if (every !== undefined && cron !== undefined) {
    throw new InvalidArgumentError('cron', cron, 'unset when every is given: one schedule per job');
  }
  if (every !== undefined) {
    validateDuration('every', every, 1);
    return { nextAfter: (epochMs) => (Math.floor(epochMs / every) + 1) * every, shortestGapMs: every };
  }
  if (cron === undefined) {
    throw new InvalidArgumentError('every', undefined, 'a period in ms, or a cron expression in cron');
  }
  if (typeof cron !== 'string') throw new InvalidArgumentError('cron', cron, 'a cron expression string');
  if (timezone !== undefined && (typeof timezone !== 'string' || timezone.length === 0)) {
    throw new InvalidArgumentError('timezone', timezone, 'an IANA time zone name such as "Europe/Berlin"');
  }
  let pattern: Cron;
  try {
    pattern = new Cron(cron, { paused: true, ...(timezone ? { timezone } : {}) });
  } catch (error) {
    throw new InvalidArgumentError('cron', cron, `a 5- or 6-field cron expression (${describe(error)})`);
  }
  let upcoming: Date[];
  try {
    upcoming = pattern.nextRuns(cronGapSample);
  } catch (error) {
    // croner checks the time zone only when it first computes a run.
    throw new InvalidArgumentError('timezone', timezone, `an IANA time zone name (${describe(error)})`);
  }
  if (upcoming.length === 0) throw new InvalidArgumentError('cron', cron, 'an expression with a future run');
  let shortestGapMs = Number.POSITIVE_INFINITY;
  for (let i = 1; i < upcoming.length; i++) {
    shortestGapMs = Math.min(
      shortestGapMs,
      (upcoming[i]?.getTime() ?? 0) - (upcoming[i - 1]?.getTime() ?? 0),
    );
  }
  return {
    nextAfter: (epochMs) => pattern.nextRun(new Date(epochMs))?.getTime() ?? null,
    shortestGapMs,
  };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
