import { setMaxListeners } from 'node:events';
import type { AcquireOptions, Attempt, LeaseDriver, LockRequest } from './contract.js';
import {
  type AcquireMessage,
  type AcquireOutcome,
  type LeaseKind,
  acquireChannel,
  publish,
} from './diagnostics.js';
import {
  BackendUnavailableError,
  InvalidArgumentError,
  KeyConflictError,
  LockError,
  LockTimeoutError,
  ProviderClosedError,
} from './errors.js';
import { DriverLease, type LeaseContext } from './lease.js';
import {
  type RetryPolicy,
  type RetryRun,
  type StopSource,
  gaveUp,
  isTransient,
  retryAfterFirstFailure,
  retryTransient,
} from './retry.js';
import { type Deadline, SharedDeadlines, ignore, now, pause } from './timing.js';
import {
  validateDuration,
  validateIdentity,
  validateKey,
  validateOptionalDuration,
  validateSignal,
} from './validation.js';

/**
 * What every engine of one provider shares: the closing signal, the leases it holds, the clean-ups
 * still running in the background, the retry policy, and whether the backend has ever answered.
 */
export class ProviderState {
  readonly closing = new AbortController();
  readonly leases = new Set<DriverLease<unknown>>();
  readonly cleanups = new Set<Promise<void>>();
  /** Acquires still running: close() stops them and waits for them to settle (and withdraw). */
  readonly requests = new Set<AcquireRun<LockRequest, unknown, unknown>>();
  /** Aborted once close() has given background clean-ups all the time it allows (closeMs). */
  readonly cleanupsStopped = new AbortController();
  /** The waitMs + settleGraceMs deadlines of pending acquires: one timer for all of them. */
  readonly requestDeadlines = new SharedDeadlines(this.requests);
  readonly policy: RetryPolicy;
  readonly defaultTtlMs: number;
  readonly fallbackRecheckMs: number;
  readonly settleGraceMs: number;
  readonly identity: string;
  /**
   * Whether the backend has answered this provider at least once. Until it has, a transient failure
   * is not retried: a wrong address, or a server that is down at start, fails fast.
   */
  reached = false;
  closed: Promise<void> | undefined;
  #idle: (() => void) | undefined;

  constructor(settings: {
    policy: RetryPolicy;
    defaultTtlMs: number;
    fallbackRecheckMs: number;
    settleGraceMs: number;
    identity: string;
  }) {
    this.policy = settings.policy;
    this.defaultTtlMs = settings.defaultTtlMs;
    this.fallbackRecheckMs = settings.fallbackRecheckMs;
    this.settleGraceMs = settings.settleGraceMs;
    this.identity = settings.identity;
    // Election providers and drivers may listen for close() too.
    setMaxListeners(0, this.closing.signal);
    // One listener stops every pending request (not one listener per request).
    const { signal } = this.closing;
    signal.addEventListener(
      'abort',
      () => {
        for (const request of [...this.requests]) request.giveUp(signal.reason);
      },
      { once: true },
    );
  }

  /** A request left `requests`. */
  requestDone(): void {
    this.requestDeadlines.left();
    if (this.requests.size === 0) this.#idle?.();
  }

  /** Resolves once no acquire is running (for close(), after the closing signal stopped them). */
  whenIdle(): Promise<void> {
    if (this.requests.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idle = () => {
        this.#idle = undefined;
        resolve();
      };
    });
  }

  /** Runs `work` in the background; close() waits for it (bounded by the policy's closeMs). */
  track(work: Promise<void>): void {
    const tracked = work.catch(ignore).finally(() => this.cleanups.delete(tracked));
    this.cleanups.add(tracked);
  }
}

/** Reason for ending a request that completed normally (a shared instance: no allocation per request). */
const requestFinished = new Error('the lock request finished');
/** Reason the in-flight attempt is abandoned when waitMs (plus the settle grace) has run out. */
const budgetSpent = new Error('waitMs ran out');

type Extras<Request extends LockRequest> = Omit<Request, keyof LockRequest>;

/**
 * The request a driver sees. `signal` is a prototype getter, so a request whose driver never reads it
 * (a granted first attempt, a tryAcquire) costs no AbortController and no closure.
 */
class DriverRequest implements LockRequest {
  readonly key: string;
  readonly identity: string;
  readonly ttlMs: number;
  readonly #run: AcquireRun<LockRequest, unknown, unknown>;

  constructor(run: AcquireRun<LockRequest, unknown, unknown>, key: string, identity: string, ttlMs: number) {
    this.#run = run;
    this.key = key;
    this.identity = identity;
    this.ttlMs = ttlMs;
  }

  /** Aborted when the caller gives up (abort, provider closing), and when the request is over. */
  get signal(): AbortSignal {
    return this.#run.requestSignal();
  }

  /** False for tryAcquire (see LockRequest). A getter too: nothing stored per request. */
  get willWait(): boolean {
    return this.#run.mode === 'wait';
  }
}

/**
 * One acquire request in progress: what the loop keeps between attempts, and how the request ends
 * early. Ending is tracked in plain fields rather than with AbortSignals composed per request
 * (AbortSignal.any, an AbortController for the settle grace, one for the driver): the caller's signal
 * gets one listener (when there is one), the provider's close() reaches every request through
 * ProviderState.requests, and the waitMs + settleGraceMs deadline is an entry in the provider's shared
 * deadline timer. The AbortSignals that a driver (`request.signal`) or a retry delay may need are
 * built only when one of them asks.
 */
class AcquireRun<Request extends LockRequest, Handle, Ticket> implements StopSource, RetryRun, Deadline {
  readonly request: Request;
  readonly #engine: LeaseEngine<Request, Handle, Ticket>;
  readonly #state: ProviderState;
  readonly mode: 'wait' | 'try';
  readonly startedAt = now();
  /** When waitMs runs out. */
  readonly deadline: number;
  /** When waitMs + settleGraceMs runs out (Infinity without a finite waitMs): an attempt in flight then is abandoned. */
  readonly dueAt: number;
  ticket: Ticket | undefined;
  tries = 0;
  sawBusy = false;
  failingSince: number | undefined;
  lastFailure: unknown;
  /** What the current try obtained, so that giving up right after it undoes it. */
  obtained: Attempt<Handle, Ticket> | undefined;
  /** The caller's signal aborted, or the provider is closing. */
  gaveUp = false;
  giveUpReason: unknown;
  /** waitMs + settleGraceMs ran out. */
  expired = false;
  aborted = false;
  reason: unknown;
  #finished = false;
  /** Rejects the attempt or wait in flight (one at a time: the loop is sequential). */
  #reject: ((reason: unknown) => void) | undefined;
  #stopSignal: AbortController | undefined;
  #requestEnd: AbortController | undefined;

  constructor(
    engine: LeaseEngine<Request, Handle, Ticket>,
    state: ProviderState,
    request: { key: string; identity: string; ttlMs: number; extras: Extras<Request> },
    mode: 'wait' | 'try',
    waitMs: number,
  ) {
    this.#engine = engine;
    this.#state = state;
    this.mode = mode;
    this.deadline = this.startedAt + waitMs;
    this.dueAt = mode === 'wait' ? this.deadline + state.settleGraceMs : Number.POSITIVE_INFINITY;
    const driverRequest = new DriverRequest(
      this as unknown as AcquireRun<LockRequest, unknown, unknown>,
      request.key,
      request.identity,
      request.ttlMs,
    );
    this.request = Object.assign(driverRequest, request.extras) as unknown as Request;
  }

  /** RetryRun: a waiting acquire retries within waitMs; tryAcquire makes one try. */
  get maxRetryTimeMs(): number {
    return this.mode === 'try' ? 0 : this.deadline - now();
  }

  /** RetryRun: retries stop when this request does. */
  get signal(): StopSource {
    return this;
  }

  /** RetryRun: never answered, fail fast; answered before, ride out the outage within its bound. */
  shouldRetry(): boolean {
    return (
      this.#state.reached &&
      this.failingSince !== undefined &&
      now() - this.failingSince < this.#state.policy.outageMs
    );
  }

  onFailure(error: unknown): void {
    if (!(error instanceof BackendUnavailableError)) return;
    this.lastFailure = error;
    this.failingSince ??= now();
  }

  /** StopSource: an AbortSignal that aborts with this request, for retry delays and pauses. */
  toSignal(): AbortSignal {
    if (!this.#stopSignal) {
      this.#stopSignal = new AbortController();
      if (this.aborted) this.#stopSignal.abort(this.reason);
    }
    return this.#stopSignal.signal;
  }

  /** The caller's signal aborted, or the provider is closing. */
  giveUp(reason: unknown): void {
    if (this.gaveUp || this.#finished) return;
    this.gaveUp = true;
    this.giveUpReason = reason;
    this.#requestEnd?.abort(reason);
    this.#stop(reason);
  }

  /** Deadline: waitMs + settleGraceMs has run out. */
  deadlinePassed(): void {
    if (this.#finished) return;
    this.expired = true;
    this.#stop(budgetSpent);
  }

  /** The request is over: the driver's `request.signal` (if it has asked for it) says so. */
  finish(): void {
    this.#finished = true;
    if (this.#requestEnd && !this.#requestEnd.signal.aborted) this.#requestEnd.abort(requestFinished);
  }

  requestSignal(): AbortSignal {
    if (!this.#requestEnd) {
      this.#requestEnd = new AbortController();
      if (this.gaveUp) this.#requestEnd.abort(this.giveUpReason);
      else if (this.#finished) this.#requestEnd.abort(requestFinished);
    }
    return this.#requestEnd.signal;
  }

  /**
   * One try of the driver's attempt (the retry operation): settles with its result, or rejects as soon
   * as the request is stopped — a result that arrives after that is undone. An unknown outcome keeps
   * its ticket (the next attempt adopts what it obtained; a give-up undoes it) and counts as a
   * transient failure.
   */
  readonly attemptOnce = (): Promise<Attempt<Handle, Ticket>> => {
    this.tries++;
    return this.race(this.#engine.driver.attempt(this.request, this.ticket), this.#onAttempt, this.#undoLate);
  };

  /**
   * Settles with `work` (passed through `accept`, which may throw), or rejects as soon as the request
   * is stopped; a result that arrives after that goes to `onLate`, and a late failure is swallowed
   * (timing.ts raceAbort, without abort listeners).
   */
  race<T>(work: Promise<T>, accept?: (value: T) => T, onLate?: (value: T) => void): Promise<T> {
    if (this.aborted) {
      work.then((value) => onLate?.(value), ignore);
      return Promise.reject(this.reason);
    }
    return new Promise<T>((resolve, reject) => {
      this.#reject = reject;
      work.then(
        (value) => {
          if (this.#reject !== reject) return onLate?.(value);
          this.#reject = undefined;
          if (!accept) return resolve(value);
          try {
            resolve(accept(value));
          } catch (error) {
            reject(error);
          }
        },
        (error: unknown) => {
          if (this.#reject !== reject) return;
          this.#reject = undefined;
          reject(error);
        },
      );
    });
  }

  #onAttempt = (result: Attempt<Handle, Ticket>): Attempt<Handle, Ticket> => {
    if (result.outcome === 'unknown') {
      // The request reached a connected backend, which may have applied it: keep what was sent, so
      // the next attempt adopts it and a give-up undoes it.
      this.ticket = result.ticket;
      this.#state.reached = true;
      throw this.#engine.unavailable(result.cause, 'the outcome of the attempt is unknown');
    }
    this.obtained = result;
    return result;
  };

  #undoLate = (late: Attempt<Handle, Ticket>): void => this.#engine.undo(this.request, late);

  #stop(reason: unknown): void {
    if (!this.aborted) {
      this.aborted = true;
      this.reason = reason;
      this.#stopSignal?.abort(reason);
    }
    const reject = this.#reject;
    this.#reject = undefined;
    reject?.(reason);
  }
}

/**
 * The acquire loop, written once for every primitive a backend offers (locks, semaphore permits, read
 * and write leases): attempt → if busy, wait for a push wake-up (or the fallback re-check) → attempt
 * again; transient failures and unknown outcomes are retried within waitMs under the retry policy;
 * whatever a request obtained but cannot keep (a late grant, a place in line, an unknown outcome) is
 * undone, in the background if the caller has already been answered.
 */
export class LeaseEngine<Request extends LockRequest, Handle, Ticket> {
  readonly driver: LeaseDriver<Request, Handle, Ticket>;
  readonly kind: LeaseKind;
  readonly #state: ProviderState;
  /** What every lease of this engine shares (one object, not one per lease). */
  readonly #leaseContext: LeaseContext<Handle>;

  constructor(driver: LeaseDriver<Request, Handle, Ticket>, kind: LeaseKind, state: ProviderState) {
    this.driver = driver;
    this.kind = kind;
    this.#state = state;
    this.#leaseContext = {
      driver: driver as unknown as LeaseDriver<LockRequest, Handle, unknown>,
      kind,
      policy: state.policy,
      stopRetries: state.cleanupsStopped.signal,
      onReleased: (lease) => state.leases.delete(lease as DriverLease<unknown>),
    };
  }

  checkKey(key: unknown, field = 'key'): asserts key is string {
    try {
      validateKey(key, this.driver.limits.maxKeyBytes);
      this.driver.validateKey?.(key as string);
    } catch (error) {
      if (field !== 'key' && error instanceof InvalidArgumentError) {
        throw new InvalidArgumentError(field, error.value, error.allowed);
      }
      throw error;
    }
  }

  checkOpen(): void {
    if (this.#state.closed) throw new ProviderClosedError(this.driver.backend);
  }

  /**
   * Validates the caller's options (and `key` too, with `checkKey`), then waits for (mode 'wait') or
   * tries once (mode 'try') to get a lease. `extras` are the primitive's own request fields (limit and
   * permits, or mode). Invalid input rejects; it never throws synchronously.
   */
  acquire(
    key: string,
    options: AcquireOptions,
    mode: 'wait' | 'try',
    extras: Extras<Request>,
    checkKey = false,
  ): Promise<DriverLease<Handle> | null> {
    let ttlMs: number;
    try {
      if (checkKey) this.checkKey(key);
      if (typeof options !== 'object' || options === null) {
        throw new InvalidArgumentError('options', options, 'an object');
      }
      ttlMs = options.ttlMs ?? this.#state.defaultTtlMs;
      validateDuration('ttlMs', ttlMs, this.driver.limits.minTtlMs);
      validateOptionalDuration('waitMs', options.waitMs, 0);
      validateSignal('signal', options.signal);
      validateIdentity(options.identity);
      this.checkOpen();
      options.signal?.throwIfAborted();
    } catch (error) {
      return Promise.reject(error);
    }
    const waitMs = mode === 'try' ? 0 : (options.waitMs ?? Number.POSITIVE_INFINITY);
    const identity = options.identity ?? this.#state.identity;
    const run = new AcquireRun(this, this.#state, { key, identity, ttlMs, extras }, mode, waitMs);
    if (!acquireChannel.hasSubscribers) return this.#acquire(run, waitMs, options.signal, undefined);
    const message: AcquireMessage = {
      backend: this.driver.backend,
      key,
      kind: this.kind,
      mode,
      identity,
      waitMs,
    };
    return acquireChannel.tracePromise(() => this.#acquire(run, waitMs, options.signal, message), message);
  }

  async #acquire(
    run: AcquireRun<Request, Handle, Ticket>,
    waitMs: number,
    signal: AbortSignal | undefined,
    message: AcquireMessage | undefined,
  ): Promise<DriverLease<Handle> | null> {
    const state = this.#state;
    const { driver } = this;
    const { policy } = state;
    const { request } = run;
    const { key } = request;
    const requests = state.requests as Set<unknown>;
    requests.add(run);
    if (state.closing.signal.aborted) run.giveUp(state.closing.signal.reason);
    const onCallerAbort = signal && (() => run.giveUp(signal.reason));
    if (onCallerAbort) signal.addEventListener('abort', onCallerAbort, { once: true });
    // An attempt still in flight when waitMs (plus the settle grace) has run out is abandoned: the
    // caller is answered within a known bound, and a late result is undone like any other.
    if (run.dueAt !== Number.POSITIVE_INFINITY) state.requestDeadlines.schedule(run as never);

    let granted = false;
    let outcome: AcquireOutcome = 'unavailable';
    try {
      for (;;) {
        let attempt: Attempt<Handle, Ticket>;
        run.obtained = undefined;
        try {
          // The retry policy's first try, made directly (retry.ts retryTransient): p-retry only
          // after a failure.
          if (run.aborted) throw run.reason;
          const startedAt = performance.now();
          const budgetMs = Math.max(0, run.maxRetryTimeMs);
          try {
            attempt = await run.attemptOnce();
          } catch (error) {
            attempt = await retryAfterFirstFailure(policy, run, run.attemptOnce, error, startedAt, budgetMs);
          }
          if (run.aborted) throw run.reason;
        } catch (error) {
          // Given up right after an attempt succeeded: undo what it obtained.
          if (run.obtained) this.undo(request, run.obtained);
          if (run.gaveUp) {
            outcome = state.closing.signal.aborted ? 'closed' : 'aborted';
            throw run.giveUpReason;
          }
          if (run.expired) {
            // waitMs ran out with an attempt in flight or a retry pending.
            if (run.sawBusy && run.failingSince === undefined) {
              outcome = 'timeout';
              throw new LockTimeoutError(key, waitMs);
            }
            throw gaveUp(
              driver.backend,
              driver.address,
              `acquire "${key}"`,
              run.lastFailure ??
                new BackendUnavailableError(
                  driver.backend,
                  driver.address,
                  `no answer within waitMs=${waitMs} + settleGraceMs=${state.settleGraceMs}`,
                ),
              run.tries,
              now() - run.startedAt,
            );
          }
          if (error instanceof BackendUnavailableError) {
            throw run.tries > 1
              ? gaveUp(
                  driver.backend,
                  driver.address,
                  `acquire "${key}"`,
                  error,
                  run.tries,
                  now() - run.startedAt,
                )
              : error;
          }
          // The key itself is unusable (a bad key, or one holding application data): not an outage.
          if (error instanceof InvalidArgumentError || error instanceof KeyConflictError) outcome = 'invalid';
          throw error;
        }
        state.reached = true;
        run.failingSince = undefined;
        if (attempt.outcome === 'granted') {
          granted = true;
          outcome = 'granted';
          const lease = new DriverLease(this.#leaseContext, request, attempt.grant);
          state.leases.add(lease as DriverLease<unknown>);
          if (message) message.token = lease.token;
          return lease;
        }
        run.sawBusy = true;
        run.ticket = attempt.ticket ?? run.ticket;
        if (run.mode === 'try') {
          outcome = 'busy';
          return null;
        }
        const remaining = run.deadline - now();
        if (remaining <= 0) {
          outcome = 'timeout';
          throw new LockTimeoutError(key, waitMs);
        }
        await this.#waitForChange(run, Math.min(state.fallbackRecheckMs, remaining));
      }
    } finally {
      if (onCallerAbort) signal.removeEventListener('abort', onCallerAbort);
      run.finish();
      // close() waits for this: a request settles after its withdrawal.
      if (!granted && run.ticket !== undefined) await this.#withdraw(request, run.ticket);
      requests.delete(run);
      state.requestDone();
      if (message) {
        message.outcome = outcome;
        message.tries = run.tries;
        message.waitedMs = now() - run.startedAt;
      }
    }
  }

  async #waitForChange(run: AcquireRun<Request, Handle, Ticket>, maxWaitMs: number): Promise<void> {
    let failed = false;
    const change = this.driver.waitForChange(run.request, run.ticket, maxWaitMs).catch(() => {
      failed = true;
    });
    // The driver promises to settle within maxWaitMs; the guard covers one that does not.
    let guard: NodeJS.Timeout | undefined;
    const overdue = new Promise<void>((resolve) => {
      guard = setTimeout(resolve, maxWaitMs + 50);
    });
    try {
      await run.race(Promise.race([change, overdue]));
    } catch {
      // Stopped or out of time: the next step of the loop decides.
    } finally {
      clearTimeout(guard);
    }
    // A wait that failed at once (the backend is unreachable) must not turn the loop into a busy one:
    // the next attempt is then subject to the retry policy's back-off.
    if (failed && !run.aborted)
      await pause(Math.min(maxWaitMs, this.#state.policy.minDelayMs), run.toSignal());
  }

  /** Undoes what an attempt obtained after its caller had given up. */
  undo(request: Request, late: Attempt<Handle, Ticket>): void {
    if (late.outcome === 'granted') {
      this.#inBackground(request, 'release a late grant', () => this.driver.release(request.key, late.grant));
    } else if (late.ticket !== undefined) {
      const ticket = late.ticket;
      this.#inBackground(request, 'withdraw', () => this.driver.withdraw(request, ticket));
    }
  }

  /**
   * Gives up a place in line or undoes an unknown outcome. The first try is awaited, so a healthy
   * backend shows nothing left behind when the caller is answered; if it fails transiently, retries
   * continue in the background (Curator's protected-mode clean-up, ZOOKEEPER-1262).
   */
  async #withdraw(request: Request, ticket: Ticket): Promise<void> {
    try {
      await this.driver.withdraw(request, ticket);
    } catch (error) {
      if (isTransient(error)) {
        this.#inBackground(request, 'withdraw', () => this.driver.withdraw(request, ticket), 1);
      }
    }
  }

  #inBackground(request: Request, what: string, operation: () => Promise<void>, failedTries = 0): void {
    const state = this.#state;
    let tries = failedTries;
    const work = retryTransient(
      state.policy,
      {
        maxRetryTimeMs: state.policy.cleanupMs,
        signal: state.cleanupsStopped.signal,
        unref: true,
        onFailure: (_error, attempt) => {
          tries = failedTries + attempt;
        },
      },
      operation,
    ).then(
      () =>
        publish.cleanup(() => ({
          backend: this.driver.backend,
          key: request.key,
          kind: this.kind,
          outcome: 'done',
          tries: tries + 1,
        })),
      (error: unknown) =>
        publish.cleanup(() => ({
          backend: this.driver.backend,
          key: request.key,
          kind: this.kind,
          outcome: 'gave-up',
          tries,
          error: error instanceof LockError ? error : new Error(`${what}: ${String(error)}`),
        })),
    );
    state.track(work);
  }

  /** The failure an unknown outcome counts as (transient: the retry policy may try again). */
  unavailable(cause: Error, detail: string): BackendUnavailableError {
    if (cause instanceof BackendUnavailableError) return cause;
    return new BackendUnavailableError(
      this.driver.backend,
      this.driver.address,
      `${detail}: ${cause.message}`,
      {
        cause,
      },
    );
  }
}
