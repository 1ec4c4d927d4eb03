import pRetry from 'p-retry';
import { BackendUnavailableError, InvalidArgumentError } from './errors.js';
import { pause } from './timing.js';

/**
 * How core rides out transient backend failures — one policy for every operation that can be retried
 * (a waiting acquire's attempts, release, the clean-up of unknown outcomes, close). Delays grow
 * exponentially with jitter (p-retry): try n waits `min(maxDelayMs, minDelayMs × factor^(n−1) × r)`,
 * r uniform in [1, 2) when `jitter` is on. Each backend supplies defaults fitted to its own timeouts;
 * `retry` in the provider options overrides them field by field.
 *
 * The design follows Apache Curator's RetryLoop: connection loss is retried under a policy, and the
 * caller's budget (`waitMs`), not the first transport error, decides when to give up.
 */
export interface RetryPolicy {
  /** Delay before the first retry (ms). */
  readonly minDelayMs: number;
  /** Longest delay between two tries (ms), jitter included. */
  readonly maxDelayMs: number;
  /** Growth of the delay per try (>= 1). */
  readonly factor: number;
  /** Multiply each delay by a random factor in [1, 2), so contenders fall out of step. */
  readonly jitter: boolean;
  /**
   * A waiting acquire gives up with BackendUnavailableError when its tries have failed without a
   * single answer from the backend for this long (ms), even with `waitMs` left: the backend is then
   * persistently down rather than blinking. (A provider that has never reached its backend gives up at
   * the first failure, so a wrong address or a server that is down at start fails fast.)
   */
  readonly outageMs: number;
  /**
   * How long core keeps retrying, in the background, the clean-up of a request whose outcome was
   * unknown or whose place in line could not be given up (ms). Clean-up also stops as soon as the
   * driver reports nothing is left to undo.
   */
  readonly cleanupMs: number;
  /** How long `close()` keeps retrying releases and clean-ups before it closes connections (ms). */
  readonly closeMs: number;
}

export type RetryPolicyOptions = Partial<RetryPolicy>;

/** Core's defaults; backends override them from their own connect and call timeouts. */
export const defaultRetryPolicy: RetryPolicy = Object.freeze({
  minDelayMs: 50,
  maxDelayMs: 1_000,
  factor: 2,
  jitter: true,
  outageMs: 15_000,
  cleanupMs: 60_000,
  closeMs: 5_000,
});

const durationFields = ['minDelayMs', 'maxDelayMs', 'outageMs', 'cleanupMs', 'closeMs'] as const;

/**
 * The effective policy: core's defaults, then the backend's, then the caller's. Throws
 * InvalidArgumentError naming the field (`retry.<field>`) for a bad value or an unknown field.
 */
export function resolveRetryPolicy(...layers: Array<RetryPolicyOptions | undefined>): RetryPolicy {
  const merged: Record<string, unknown> = { ...defaultRetryPolicy };
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (typeof layer !== 'object' || layer === null) {
      throw new InvalidArgumentError('retry', layer, 'an object of retry policy fields');
    }
    for (const [field, value] of Object.entries(layer)) {
      if (!(field in defaultRetryPolicy)) {
        throw new InvalidArgumentError(
          `retry.${field}`,
          value,
          `one of the fields ${Object.keys(defaultRetryPolicy).join(', ')}`,
        );
      }
      if (value !== undefined) merged[field] = value;
    }
  }
  for (const field of durationFields) {
    const value = merged[field];
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new InvalidArgumentError(`retry.${field}`, value, 'a finite number of milliseconds >= 0');
    }
  }
  if (typeof merged.factor !== 'number' || !Number.isFinite(merged.factor) || merged.factor < 1) {
    throw new InvalidArgumentError('retry.factor', merged.factor, 'a finite number >= 1');
  }
  if (typeof merged.jitter !== 'boolean') {
    throw new InvalidArgumentError('retry.jitter', merged.jitter, 'true or false');
  }
  if ((merged.maxDelayMs as number) < (merged.minDelayMs as number)) {
    throw new InvalidArgumentError('retry.maxDelayMs', merged.maxDelayMs, 'at least retry.minDelayMs');
  }
  return Object.freeze(merged) as unknown as RetryPolicy;
}

/** A failure that trying again may fix: a transient BackendUnavailableError. */
export function isTransient(error: unknown): error is BackendUnavailableError {
  return error instanceof BackendUnavailableError && error.transient;
}

/**
 * A stop condition that is cheap to check on every try: `aborted` and `reason` are plain fields, and
 * `toSignal()` (an AbortSignal that aborts with it) is called only when a retry has to wait, so the
 * common case — the first try succeeds — never builds one.
 */
export interface StopSource {
  readonly aborted: boolean;
  readonly reason: unknown;
  toSignal(): AbortSignal;
}

export interface RetryRun {
  /** Longest time spent retrying, measured from the first try (ms); one try is always made. */
  readonly maxRetryTimeMs: number;
  /** Stops retrying: a pending delay ends and the run rejects with the signal's reason. */
  readonly signal?: AbortSignal | StopSource;
  /** Extra condition for retrying a transient failure (checked after each failed try). */
  readonly shouldRetry?: (error: BackendUnavailableError) => boolean;
  /** Told about every failed try, transient or not. */
  readonly onFailure?: (error: unknown, tries: number) => void;
  /** Background work: its delays must not keep the process alive. */
  readonly unref?: boolean;
}

/**
 * Runs `operation` until it succeeds, retrying transient failures under `policy` within the run's
 * bounds. Rejects with the last failure, or with the signal's reason when the signal aborts — also
 * right after a try that succeeded (as p-retry does), so a caller whose operation obtains something
 * must keep hold of it itself and undo it in that case.
 *
 * The first try is made directly: p-retry (its option object, its closures, its abort listeners) is
 * entered only after a transient failure, with the delays and the time budget it would have used had
 * it made the first try itself. On the hot path — the first try succeeds — this costs one call.
 */
export async function retryTransient<T>(
  policy: RetryPolicy,
  run: RetryRun,
  operation: (tries: number) => Promise<T>,
): Promise<T> {
  const { signal } = run;
  if (signal?.aborted) throw signal.reason;
  const startedAt = performance.now();
  const budgetMs = Math.max(0, run.maxRetryTimeMs);
  let result: T;
  try {
    result = await operation(1);
  } catch (error) {
    return retryAfterFirstFailure(policy, run, operation, error, startedAt, budgetMs);
  }
  if (signal?.aborted) throw signal.reason;
  return result;
}

/**
 * The rest of `retryTransient` after a first try that failed with `failure`: what p-retry 7 does after
 * a failed try (its onAttemptFailure: tell `onFailure`, check the budget and `shouldRetry`, wait the
 * first delay), then p-retry itself for the tries after that. `startedAt` (performance.now()) and
 * `budgetMs` (the run's maxRetryTimeMs) are taken before the first try. For callers on a hot path that
 * make the first try themselves, checking `run.signal` before it and after it succeeds.
 */
export async function retryAfterFirstFailure<T>(
  policy: RetryPolicy,
  run: RetryRun,
  operation: (tries: number) => Promise<T>,
  failure: unknown,
  startedAt: number,
  budgetMs: number,
): Promise<T> {
  const error =
    failure instanceof Error
      ? failure
      : new TypeError(`Non-error was thrown: "${failure}". You should only throw errors.`);
  run.onFailure?.(error, 1);
  let remainingMs = budgetMs - (performance.now() - startedAt);
  if (remainingMs <= 0 || !shouldRetry(run, error)) throw error;
  const signal = run.signal === undefined ? undefined : abortSignalOf(run.signal);
  signal?.throwIfAborted();
  const random = policy.jitter ? Math.random() + 1 : 1;
  const delayMs = Math.min(Math.round(random * policy.minDelayMs), policy.maxDelayMs, remainingMs);
  if (delayMs > 0) await pause(delayMs, signal, run.unref);
  signal?.throwIfAborted();
  remainingMs = budgetMs - (performance.now() - startedAt);
  // p-retry counts its delays from its own first try: scaling minDelayMs by one factor continues the
  // sequence (try n waits minDelayMs × factor^(n−1)), and the budget is what is left of ours.
  return pRetry((tries) => operation(tries + 1), {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: policy.minDelayMs * policy.factor,
    maxTimeout: policy.maxDelayMs,
    factor: policy.factor,
    randomize: policy.jitter,
    maxRetryTime: Math.max(0, remainingMs),
    signal,
    unref: run.unref ?? false,
    onFailedAttempt: ({ error: failed, attemptNumber }) => run.onFailure?.(failed, attemptNumber + 1),
    shouldRetry: ({ error: failed }) => shouldRetry(run, failed),
  });
}

function shouldRetry(run: RetryRun, error: unknown): boolean {
  return isTransient(error) && (run.shouldRetry?.(error) ?? true);
}

function abortSignalOf(source: AbortSignal | StopSource): AbortSignal {
  return source instanceof AbortSignal ? source : source.toSignal();
}

/**
 * The error a caller sees when core gives up after retrying: the last cause, the number of tries and
 * how long they took, under the backend and address of that cause.
 */
export function gaveUp(
  backend: string,
  address: string,
  what: string,
  last: unknown,
  tries: number,
  elapsedMs: number,
): BackendUnavailableError {
  const cause = last instanceof Error ? last : new Error(String(last));
  const detail = cause instanceof BackendUnavailableError ? cause.detail : cause.message;
  return new BackendUnavailableError(
    last instanceof BackendUnavailableError ? last.backend : backend,
    last instanceof BackendUnavailableError ? last.address : address,
    `${what}: gave up after ${tries} ${tries === 1 ? 'try' : 'tries'} in ${Math.round(elapsedMs)} ms; last failure: ${detail}`,
    { cause, tries, transient: last instanceof BackendUnavailableError ? last.transient : true },
  );
}
