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
import { DriverLease } from './lease.js';
import { type RetryPolicy, gaveUp, isTransient, retryTransient } from './retry.js';
import { ignore, now, pause, raceAbort } from './timing.js';
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
  /** Acquires still running: close() waits for them to settle (and withdraw) before closing drivers. */
  readonly pending = new Set<Promise<unknown>>();
  /** Aborted once close() has given background clean-ups all the time it allows (closeMs). */
  readonly cleanupsStopped = new AbortController();
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
    // Every pending acquire listens for close(): hundreds at once are normal, not a leak.
    setMaxListeners(0, this.closing.signal);
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

  constructor(driver: LeaseDriver<Request, Handle, Ticket>, kind: LeaseKind, state: ProviderState) {
    this.driver = driver;
    this.kind = kind;
    this.#state = state;
  }

  checkKey(key: unknown, field = 'key'): asserts key is string {
    try {
      validateKey(key, this.driver.limits.maxKeyBytes);
      this.driver.validateKey?.(key as string);
    } catch (error) {
      if (field !== 'key' && error instanceof InvalidArgumentError) {
        throw new InvalidArgumentError(field, error.value, error.message.replace(/^invalid key: /, ''));
      }
      throw error;
    }
  }

  checkOpen(): void {
    if (this.#state.closed) throw new ProviderClosedError(this.driver.backend);
  }

  /**
   * Validates the caller's options, then waits for (mode 'wait') or tries once (mode 'try') to get a
   * lease. `extras` are the primitive's own request fields (limit and permits, or mode).
   */
  async acquire(
    key: string,
    options: AcquireOptions,
    mode: 'wait' | 'try',
    extras: Extras<Request>,
  ): Promise<DriverLease<Handle> | null> {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', options, 'an object');
    }
    const ttlMs = options.ttlMs ?? this.#state.defaultTtlMs;
    validateDuration('ttlMs', ttlMs, this.driver.limits.minTtlMs);
    validateOptionalDuration('waitMs', options.waitMs, 0);
    validateSignal('signal', options.signal);
    validateIdentity(options.identity);
    this.checkOpen();
    options.signal?.throwIfAborted();
    const waitMs = mode === 'try' ? 0 : (options.waitMs ?? Number.POSITIVE_INFINITY);
    const identity = options.identity ?? this.#state.identity;
    let running: Promise<DriverLease<Handle> | null>;
    if (!acquireChannel.hasSubscribers) {
      running = this.#acquire(key, ttlMs, waitMs, mode, identity, options.signal, extras, undefined);
    } else {
      const message: AcquireMessage = {
        backend: this.driver.backend,
        key,
        kind: this.kind,
        mode,
        identity,
        waitMs,
      };
      running = acquireChannel.tracePromise(
        () => this.#acquire(key, ttlMs, waitMs, mode, identity, options.signal, extras, message),
        message,
      );
    }
    const pending = this.#state.pending;
    pending.add(running);
    try {
      return await running;
    } finally {
      pending.delete(running);
    }
  }

  async #acquire(
    key: string,
    ttlMs: number,
    waitMs: number,
    mode: 'wait' | 'try',
    identity: string,
    signal: AbortSignal | undefined,
    extras: Extras<Request>,
    message: AcquireMessage | undefined,
  ): Promise<DriverLease<Handle> | null> {
    const state = this.#state;
    const { driver } = this;
    const { policy } = state;
    const startedAt = now();
    const deadline = startedAt + waitMs;
    const giveUp = signal ? AbortSignal.any([signal, state.closing.signal]) : state.closing.signal;
    // The request's own signal tells the driver that this request is over, whatever the outcome, so
    // it can drop subscriptions or watches it kept for it.
    const requestEnd = new AbortController();
    const forwardGiveUp = () => requestEnd.abort(giveUp.reason);
    giveUp.addEventListener('abort', forwardGiveUp, { once: true });
    // An attempt still in flight when waitMs (plus the settle grace) has run out is abandoned: the
    // caller is answered within a known bound, and a late result is undone like any other.
    let expiry: NodeJS.Timeout | undefined;
    let stop = giveUp;
    if (mode === 'wait' && Number.isFinite(waitMs)) {
      const expired = new AbortController();
      expiry = setTimeout(() => expired.abort(budgetSpent), waitMs + state.settleGraceMs);
      stop = AbortSignal.any([giveUp, expired.signal]);
    }
    const request = { key, identity, ttlMs, signal: requestEnd.signal, ...extras } as Request;

    let ticket: Ticket | undefined;
    let granted = false;
    let tries = 0;
    let sawBusy = false;
    let failingSince: number | undefined;
    let lastFailure: unknown;
    let outcome: AcquireOutcome = 'unavailable';
    try {
      for (;;) {
        let attempt: Attempt<Handle, Ticket>;
        let obtained: Attempt<Handle, Ticket> | undefined;
        try {
          attempt = await retryTransient(
            policy,
            {
              maxRetryTimeMs: mode === 'try' ? 0 : deadline - now(),
              signal: stop,
              // Never answered: fail fast. Answered before: ride out the outage within its bound.
              shouldRetry: () =>
                state.reached && failingSince !== undefined && now() - failingSince < policy.outageMs,
              onFailure: (error) => {
                if (!(error instanceof BackendUnavailableError)) return;
                lastFailure = error;
                failingSince ??= now();
              },
            },
            async () => {
              tries++;
              const result = await raceAbort(driver.attempt(request, ticket), stop, (late) =>
                this.#undo(request, late),
              );
              if (result.outcome === 'unknown') {
                // The request reached a connected backend, which may have applied it: keep what was
                // sent, so the next attempt adopts it and a give-up undoes it.
                ticket = result.ticket;
                state.reached = true;
                throw this.#unavailable(result.cause, 'the outcome of the attempt is unknown');
              }
              obtained = result;
              return result;
            },
          );
        } catch (error) {
          // Given up right after an attempt succeeded: undo what it obtained.
          if (obtained) this.#undo(request, obtained);
          if (giveUp.aborted) {
            outcome = state.closing.signal.aborted ? 'closed' : 'aborted';
            throw giveUp.reason;
          }
          if (stop.aborted && stop !== giveUp) {
            // waitMs ran out with an attempt in flight or a retry pending.
            if (sawBusy && failingSince === undefined) {
              outcome = 'timeout';
              throw new LockTimeoutError(key, waitMs);
            }
            throw gaveUp(
              driver.backend,
              driver.address,
              `acquire "${key}"`,
              lastFailure ??
                new BackendUnavailableError(
                  driver.backend,
                  driver.address,
                  `no answer within waitMs=${waitMs} + settleGraceMs=${state.settleGraceMs}`,
                ),
              tries,
              now() - startedAt,
            );
          }
          if (error instanceof BackendUnavailableError) {
            throw tries > 1
              ? gaveUp(driver.backend, driver.address, `acquire "${key}"`, error, tries, now() - startedAt)
              : error;
          }
          // The key itself is unusable (a bad key, or one holding application data): not an outage.
          if (error instanceof InvalidArgumentError || error instanceof KeyConflictError) outcome = 'invalid';
          throw error;
        }
        state.reached = true;
        failingSince = undefined;
        if (attempt.outcome === 'granted') {
          granted = true;
          outcome = 'granted';
          const lease = new DriverLease(
            {
              driver: driver as unknown as LeaseDriver<LockRequest, Handle, unknown>,
              kind: this.kind,
              policy,
              stopRetries: state.cleanupsStopped.signal,
              onReleased: (done) => state.leases.delete(done as DriverLease<unknown>),
            },
            request,
            attempt.grant,
          );
          state.leases.add(lease as DriverLease<unknown>);
          if (message) message.token = lease.token;
          return lease;
        }
        sawBusy = true;
        ticket = attempt.ticket ?? ticket;
        if (mode === 'try') {
          outcome = 'busy';
          return null;
        }
        const remaining = deadline - now();
        if (remaining <= 0) {
          outcome = 'timeout';
          throw new LockTimeoutError(key, waitMs);
        }
        await this.#waitForChange(request, ticket, Math.min(state.fallbackRecheckMs, remaining), stop);
      }
    } finally {
      clearTimeout(expiry);
      giveUp.removeEventListener('abort', forwardGiveUp);
      if (!requestEnd.signal.aborted) requestEnd.abort(requestFinished);
      if (!granted && ticket !== undefined) await this.#withdraw(request, ticket);
      if (message) {
        message.outcome = outcome;
        message.tries = tries;
        message.waitedMs = now() - startedAt;
      }
    }
  }

  async #waitForChange(request: Request, ticket: Ticket | undefined, maxWaitMs: number, stop: AbortSignal) {
    let failed = false;
    const change = this.driver.waitForChange(request, ticket, maxWaitMs).catch(() => {
      failed = true;
    });
    // The driver promises to settle within maxWaitMs; the guard covers one that does not.
    let guard: NodeJS.Timeout | undefined;
    const overdue = new Promise<void>((resolve) => {
      guard = setTimeout(resolve, maxWaitMs + 50);
    });
    try {
      await raceAbort(Promise.race([change, overdue]), stop);
    } catch {
      // Aborted or out of time: the next step of the loop decides.
    } finally {
      clearTimeout(guard);
    }
    // A wait that failed at once (the backend is unreachable) must not turn the loop into a busy one:
    // the next attempt is then subject to the retry policy's back-off.
    if (failed && !stop.aborted) await pause(Math.min(maxWaitMs, this.#state.policy.minDelayMs), stop);
  }

  /** Undoes what an attempt obtained after its caller had given up. */
  #undo(request: Request, late: Attempt<Handle, Ticket>): void {
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

  #unavailable(cause: Error, detail: string): BackendUnavailableError {
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
