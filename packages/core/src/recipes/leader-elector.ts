import type { HolderInfo, Lease, LockProvider } from '../contract.js';
import { publish } from '../diagnostics.js';
import { InvalidArgumentError, LockLostError, ProviderClosedError } from '../errors.js';
import { defaultIdentity, now, pause } from '../timing.js';
import { validateDuration, validateIdentity, validateKey, validateSignal } from '../validation.js';
import { type ErrorReporter, invokeCallback, logError, safeReport } from './callbacks.js';
import { type InstanceRole, electionProviderOf, leaderChanges, leaderOf } from './roles.js';

/** Where an error reported to `onError` came from. */
export type LeaderElectorErrorSource =
  | 'campaign'
  | 'renew'
  | 'release'
  | 'observe'
  | 'onStartedLeading'
  | 'onStoppedLeading'
  | 'onNewLeader';

/** What `onStartedLeading` learns about the term it starts. */
export interface LeaderTerm {
  readonly key: string;
  readonly identity: string;
  /** The lease's fencing token: hand it to the resources the leader writes, so a stale leader is refused. */
  readonly token: bigint;
}

export interface LeaderElectorOptions {
  /** The election key: one per service whose instances elect a leader. */
  key: string;
  /** This instance's identity as other instances see it. Default: host:pid:random. */
  identity?: string;
  /** Lease ttl: how long a crashed leader keeps others waiting. Default 45 000 ms (the expiry). */
  leaseDurationMs?: number;
  /**
   * A leader that has not renewed successfully for this long stops leading (its signal aborts), even
   * though its lease may still be valid. Must be < leaseDurationMs. Default: 2/3 of leaseDurationMs.
   */
  renewDeadlineMs?: number;
  /**
   * Time between renewals, between leader polls where the backend cannot push, and between campaign
   * retries after a backend error. renewDeadlineMs must exceed 1.2 × this. Default: 1/3 of leaseDurationMs
   * (15 000 ms: the heartbeat).
   */
  retryPeriodMs?: number;
  /**
   * When run()'s signal aborts, release the lease so the next leader starts at once (possibly while
   * this leader's onStartedLeading work is still draining). Default false: the claim is left to end
   * leaseDurationMs after the last successful renewal — by expiry on ttl backends, by a release the
   * elector sends then on session backends (etcd, ZooKeeper), whose leases never expire while the
   * provider is open — so the next leader starts as it would after a crash.
   */
  releaseOnCancel?: boolean;
  /**
   * Called when this instance becomes leader. `signal` aborts when the term ends — at the renew
   * deadline at the latest, so before the lease can expire. The promise it returns is not awaited
   * before the term ends; if it rejects (other than with the signal's own reason), the error goes to
   * onError and the elector resigns.
   */
  onStartedLeading?: (signal: AbortSignal, term: LeaderTerm) => unknown;
  /** Called exactly once at the end of every term; awaited before the lease is released. */
  onStoppedLeading?: () => unknown;
  /** Called with the leader's identity on every observed change of leader, the first one included. */
  onNewLeader?: (identity: string) => unknown;
  /** Receives every error of the background loops and callbacks. Default: written to stderr. */
  onError?: (error: unknown, source: LeaderElectorErrorSource) => void;
}

type TermEnding = 'lost' | 'resigned' | 'cancelled';

/**
 * One term of leadership. Its signal aborts at the renew deadline, which is checked against the clock
 * both by a timer and whenever someone asks `isValid()`: after the process was suspended (SIGSTOP, a
 * long GC pause, a blocked event loop) another overdue timer may run before the deadline timer does.
 */
class Term {
  readonly lease: Lease;
  ending: TermEnding = 'lost';
  readonly torndown: Promise<void>;
  readonly markTornDown: () => void;
  readonly #controller = new AbortController();
  readonly #renewDeadlineMs: number;
  /** When the last successful renewal (or the term's start) was sent. */
  renewedAt: number;
  #deadlineAt: number;
  #deadlineTimer: NodeJS.Timeout | undefined;

  constructor(lease: Lease, renewDeadlineMs: number) {
    this.lease = lease;
    this.#renewDeadlineMs = renewDeadlineMs;
    let markTornDown = () => {};
    this.torndown = new Promise<void>((resolve) => {
      markTornDown = resolve;
    });
    this.markTornDown = markTornDown;
    // The acquire's send time is unknown here; the lease's own expiry (measured from before the
    // request) still ends the term first if the grant took long to arrive.
    this.renewedAt = now();
    this.#deadlineAt = this.renewedAt + renewDeadlineMs;
    this.#armDeadline();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** A renewal sent at `sentAt` succeeded: the deadline moves to renewDeadlineMs after it. */
  renewed(sentAt: number): void {
    if (this.signal.aborted) return;
    this.renewedAt = sentAt;
    this.#deadlineAt = sentAt + this.#renewDeadlineMs;
    this.#armDeadline();
  }

  isValid(): boolean {
    if (this.signal.aborted) return false;
    if (now() < this.#deadlineAt) return true;
    this.end('lost', this.#deadlineMissed());
    return false;
  }

  end(ending: TermEnding, reason: unknown): void {
    if (this.signal.aborted) return;
    this.ending = ending;
    clearTimeout(this.#deadlineTimer);
    this.#controller.abort(reason);
  }

  #armDeadline(): void {
    clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = setTimeout(
      () => this.end('lost', this.#deadlineMissed()),
      Math.max(0, this.#deadlineAt - now()),
    );
  }

  #deadlineMissed(): LockLostError {
    return new LockLostError(
      this.lease.key,
      `no renewal succeeded within renewDeadlineMs=${this.#renewDeadlineMs}; stepping down before the lease can expire`,
    );
  }
}

/**
 * Leader election with callbacks, after Kubernetes client-go's leaderelection: campaign for `key`,
 * keep the lease renewed every retryPeriod, and stop leading at the renew deadline — strictly before
 * the lease can expire, so a leader has stopped acting before anyone else can be elected. Campaigns
 * through the backend's native election layout (`provider.election`) where there is one.
 */
export class LeaderElector {
  readonly key: string;
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly releaseOnCancel: boolean;
  readonly #provider: LockProvider;
  readonly #options: LeaderElectorOptions;
  #running = false;
  #term: Term | undefined;
  #reportedLeader: string | undefined;
  /** The leader run()'s observation last saw (null: nobody); undefined before the first observation. */
  #observedLeader: string | null | undefined;

  constructor(provider: LockProvider, options: LeaderElectorOptions) {
    if (typeof provider !== 'object' || provider === null || typeof provider.acquire !== 'function') {
      throw new InvalidArgumentError('provider', provider, 'a LockProvider');
    }
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', options, 'an object');
    }
    validateKey(options.key, Number.POSITIVE_INFINITY);
    validateIdentity(options.identity);
    const leaseDurationMs = options.leaseDurationMs ?? 45_000;
    validateDuration('leaseDurationMs', leaseDurationMs, 1);
    const renewDeadlineMs = options.renewDeadlineMs ?? Math.round((leaseDurationMs * 2) / 3);
    validateDuration('renewDeadlineMs', renewDeadlineMs, 1);
    const retryPeriodMs = options.retryPeriodMs ?? Math.round(leaseDurationMs / 3);
    validateDuration('retryPeriodMs', retryPeriodMs, 1);
    if (!(leaseDurationMs > renewDeadlineMs)) {
      throw new InvalidArgumentError(
        'leaseDurationMs',
        leaseDurationMs,
        `greater than renewDeadlineMs (${renewDeadlineMs}), so a leader steps down before its lease expires`,
      );
    }
    if (!(renewDeadlineMs > 1.2 * retryPeriodMs)) {
      throw new InvalidArgumentError(
        'renewDeadlineMs',
        renewDeadlineMs,
        `greater than 1.2 × retryPeriodMs (${1.2 * retryPeriodMs}), so a failed renewal is retried before the deadline`,
      );
    }
    if (options.releaseOnCancel !== undefined && typeof options.releaseOnCancel !== 'boolean') {
      throw new InvalidArgumentError('releaseOnCancel', options.releaseOnCancel, 'a boolean');
    }
    for (const field of ['onStartedLeading', 'onStoppedLeading', 'onNewLeader', 'onError'] as const) {
      const callback = options[field];
      if (callback !== undefined && typeof callback !== 'function') {
        throw new InvalidArgumentError(field, callback, 'a function');
      }
    }
    this.key = options.key;
    this.identity = options.identity ?? defaultIdentity();
    this.leaseDurationMs = leaseDurationMs;
    this.renewDeadlineMs = renewDeadlineMs;
    this.retryPeriodMs = retryPeriodMs;
    this.releaseOnCancel = options.releaseOnCancel ?? false;
    this.#provider = electionProviderOf(provider);
    this.#options = options;
  }

  /**
   * Whether this instance leads right now. Checks the renew deadline against the clock, so it is right
   * even when called before the deadline timer had a chance to run (after a suspended process resumes):
   * call it right before an action that must never be taken by two leaders.
   */
  isLeader(): boolean {
    return this.#term?.isValid() ?? false;
  }

  /**
   * Whether this instance is a follower right now: run() is campaigning, this instance does not lead,
   * and it has observed another instance leading. False before the first election is observed, so
   * follower-only work never starts on an instance that is about to win.
   */
  isFollower(): boolean {
    if (!this.#running || this.isLeader()) return false;
    return typeof this.#observedLeader === 'string' && this.#observedLeader !== this.identity;
  }

  /** The identity of the current leader (this instance's when it leads), or null when nobody leads. */
  async leader(): Promise<string | null> {
    if (this.isLeader()) return this.identity;
    return leaderOf(this.#provider, this.key);
  }

  /** The role of any instance of this service, by identity. */
  async roleOf(identity: string): Promise<InstanceRole> {
    return (await this.leader()) === identity ? 'leader' : 'follower';
  }

  /**
   * Leader changes as the backend reports them: the current leader (or null) first, then each change
   * observed (changes closer together than one read or poll coalesce, see LockProvider.watchHolder),
   * until `signal` aborts or the loop breaks. Independent of run(): observers need not campaign.
   */
  observe(signal?: AbortSignal): AsyncGenerator<HolderInfo | null, void, undefined> {
    validateSignal('signal', signal);
    return leaderChanges(this.#provider, this.key, {
      pollMs: this.retryPeriodMs,
      signal: signal ?? new AbortController().signal,
      onError: this.#reporter('observe'),
    });
  }

  /**
   * Gives leadership up now: the term's signal aborts, onStoppedLeading runs, the lease is released,
   * and run() campaigns again only after retryPeriodMs — time for a waiting instance to take over.
   * Resolves once the lease is released; a no-op when this instance does not lead.
   */
  async resign(): Promise<void> {
    const term = this.#term;
    if (!term) return;
    term.end('resigned', new DOMException(`leadership of "${this.key}" was resigned`, 'AbortError'));
    await term.torndown;
  }

  /**
   * Campaigns, leads, and campaigns again, until `signal` aborts. Resolves once the run has ended:
   * the last term's onStoppedLeading has returned and, with releaseOnCancel, its lease is released.
   * Backend errors are reported and retried after retryPeriodMs; it rejects only when retrying cannot
   * help (InvalidArgumentError, ProviderClosedError) — after ending any term.
   */
  async run(signal?: AbortSignal): Promise<void> {
    validateSignal('signal', signal);
    if (this.#running) {
      throw new InvalidArgumentError('run', 'a second concurrent run', 'one run at a time per LeaderElector');
    }
    this.#running = true;
    const runSignal = signal ?? new AbortController().signal;
    const observer = new AbortController();
    const observing = this.#observeLeaders(AbortSignal.any([runSignal, observer.signal]));
    try {
      while (!runSignal.aborted) {
        let lease: Lease;
        try {
          lease = await this.#provider.acquire(this.key, {
            identity: this.identity,
            ttlMs: this.leaseDurationMs,
            signal: runSignal,
          });
        } catch (error) {
          if (runSignal.aborted) break;
          if (error instanceof InvalidArgumentError || error instanceof ProviderClosedError) throw error;
          this.#report(error, 'campaign');
          await pause(this.retryPeriodMs, runSignal);
          continue;
        }
        const ending = await this.#serveTerm(lease, runSignal);
        if (ending === 'resigned') await pause(this.retryPeriodMs, runSignal);
      }
    } finally {
      observer.abort();
      await observing;
      this.#running = false;
      this.#observedLeader = undefined;
    }
  }

  async #serveTerm(lease: Lease, runSignal: AbortSignal): Promise<TermEnding> {
    const term = new Term(lease, this.renewDeadlineMs);
    const termStartedAt = now();
    this.#term = term;
    const onLeaseLost = () => term.end('lost', lease.signal.reason);
    const onCancel = () => term.end('cancelled', runSignal.reason);
    lease.signal.addEventListener('abort', onLeaseLost, { once: true });
    runSignal.addEventListener('abort', onCancel, { once: true });
    if (lease.signal.aborted) onLeaseLost();
    if (runSignal.aborted) onCancel();
    try {
      void this.#renew(term);
      this.#noteLeader(this.identity);
      publish.electorTerm(() => ({
        key: this.key,
        identity: this.identity,
        event: 'started',
        token: lease.token,
      }));
      this.#startLeading(term);
      await new Promise<void>((resolve) => {
        if (term.signal.aborted) resolve();
        else term.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      lease.signal.removeEventListener('abort', onLeaseLost);
      runSignal.removeEventListener('abort', onCancel);
      this.#term = undefined;
    }
    await invokeCallback(this.#reporter('onStoppedLeading'), () => this.#options.onStoppedLeading?.());
    // Released only after onStoppedLeading returned, so a hand-over can wait for the work to stop.
    // A lost lease is released too: the backend ignores a release from an owner it no longer knows.
    if (term.ending !== 'cancelled' || this.releaseOnCancel) {
      await lease.release().catch((error: unknown) => this.#report(error, 'release'));
    } else {
      // Left to end where a ttl lease would expire: session-held leases never do on their own.
      const release = () => lease.release().catch((error: unknown) => this.#report(error, 'release'));
      setTimeout(release, Math.max(0, term.renewedAt + this.leaseDurationMs - now())).unref();
    }
    term.markTornDown();
    publish.electorTerm(() => ({
      key: this.key,
      identity: this.identity,
      event: 'stopped',
      token: lease.token,
      ending: term.ending,
      termMs: now() - termStartedAt,
    }));
    return term.ending;
  }

  #startLeading(term: Term): void {
    const started = this.#options.onStartedLeading;
    if (!started || term.signal.aborted) return;
    const failed = (error: unknown) => {
      // Work that stops by rethrowing the abort reason did what was asked.
      if (term.signal.aborted && error === term.signal.reason) return;
      this.#report(error, 'onStartedLeading');
      term.end('resigned', error);
    };
    try {
      Promise.resolve(
        started(term.signal, { key: this.key, identity: this.identity, token: term.lease.token }),
      ).catch(failed);
    } catch (error) {
      failed(error);
    }
  }

  /**
   * Renews every retryPeriod; a failure is retried sooner until the term's deadline. The elector keeps
   * its own loop instead of core's renewInBackground because the deadline needs each success's send time.
   */
  async #renew(term: Term): Promise<void> {
    let delayMs = this.retryPeriodMs;
    while (!term.signal.aborted) {
      await pause(delayMs, term.signal);
      if (term.signal.aborted) return;
      const sentAt = now();
      try {
        await term.lease.extend(this.leaseDurationMs);
        term.renewed(sentAt);
        delayMs = this.retryPeriodMs;
      } catch (error) {
        // A lost lease has aborted its signal, which ended the term; anything else is worth a retry.
        if (term.lease.signal.aborted || term.signal.aborted) return;
        this.#report(error, 'renew');
        delayMs = Math.max(1, Math.floor(this.retryPeriodMs / 3));
      }
    }
  }

  async #observeLeaders(signal: AbortSignal): Promise<void> {
    const changes = leaderChanges(this.#provider, this.key, {
      pollMs: this.retryPeriodMs,
      signal,
      onError: this.#reporter('observe'),
    });
    try {
      for await (const holder of changes) {
        this.#observedLeader = holder?.identity ?? null;
        // While this instance leads, its valid lease is better evidence than a possibly delayed observation.
        if (holder && !this.isLeader()) this.#noteLeader(holder.identity);
      }
    } catch (error) {
      // The campaign meets the same error and ends run() with it; observing just stops.
      this.#report(error, 'observe');
    }
  }

  #noteLeader(identity: string): void {
    if (identity === this.#reportedLeader) return;
    this.#reportedLeader = identity;
    void invokeCallback(this.#reporter('onNewLeader'), () => this.#options.onNewLeader?.(identity));
  }

  #reporter(source: LeaderElectorErrorSource): ErrorReporter {
    const onError = this.#options.onError;
    return onError ? (error) => onError(error, source) : logError(`LeaderElector "${this.key}"`, source);
  }

  #report(error: unknown, source: LeaderElectorErrorSource): void {
    safeReport(this.#reporter(source), error);
  }
}
