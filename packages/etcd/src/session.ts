import { setMaxListeners } from 'node:events';
import {
  type GrantLoss,
  InvalidArgumentError,
  ProviderClosedError,
  isTransient,
  now,
  pause,
} from '@dlock/core';
import { EtcdLeaseInvalidError, type ILeaseKeepAliveResponse, type LeaseClient } from 'etcd3';
import pRetry from 'p-retry';
import { BACKEND, type EtcdConnection, endStream } from './connection.js';
import { entryKey, leaseHex } from './layout.js';

type KeepAliveStream = Awaited<ReturnType<LeaseClient['leaseKeepAlive']>>;

/** Keepalives go out every quarter of the ttl (Go: a third), so three fit in the loss window below. */
const KEEPALIVES_PER_TTL = 4;
/**
 * The session counts as lost a fifth of the ttl before the server could expire its lease: that is the
 * time a holder gets to stop (its lease's signal aborts) before anyone else can be granted the lock.
 */
const LOSS_MARGIN_FRACTION = 1 / 5;
/** Pause before reopening a broken keepalive stream (etcd3 then picks a host at random). */
const REOPEN_DELAY_MS = 100;
/**
 * etcd's lessor looks for expired leases every 500 ms and deletes their keys through raft: a lease is
 * certainly gone this long after its ttl ran out at the server.
 */
const SERVER_EXPIRY_SLACK_MS = 1_000;
/** Back-off of the revoke of a session that was given up (p-retry). */
const REVOKE_RETRY = { minTimeout: 100, maxTimeout: 500, factor: 2, randomize: true } as const;

/** One grant's view of its session's loss (core's GrantLoss). */
class SessionGrantLoss implements GrantLoss {
  aborted = false;
  reason: unknown = undefined;
  onLost: ((reason: unknown) => void) | undefined = undefined;

  end(reason: unknown): void {
    this.aborted = true;
    this.reason = reason;
    this.onLost?.(reason);
  }
}

/**
 * One etcd lease shared by every lock of a provider, kept alive in the background — Go's
 * concurrency.Session. `signal` aborts as soon as the lease can no longer be vouched for: a keepalive
 * answered with TTL 0 (expired or revoked at the server), or no keepalive acknowledged for ttl minus
 * the margin. That is measured from when the acknowledged keepalive was *sent*, and the server's
 * expiry counts from when it *received* it, so the signal always fires before the server can let go.
 * etcd3's own Lease reports loss only after 2 × ttl, when someone else may already hold the lock.
 */
export class Session {
  /** The lease id as etcd returns int64s: a decimal string. */
  readonly id: string;
  /** The lease id as Go's `%x` prints it, used in key names. */
  readonly hex: string;
  readonly ttlMs: number;
  readonly #connection: EtcdConnection;
  readonly #lost = new AbortController();
  readonly #claimed = new Set<string>();
  /** The loss signals of this session's grants that are still held. */
  readonly #grants = new Set<SessionGrantLoss>();
  readonly #intervalMs: number;
  readonly #lossWindowMs: number;
  /** When the latest acknowledged keepalive (or the grant) was sent. */
  #confirmedAt: number;
  /**
   * When the latest keepalive answer (or the grant) arrived. The server received that keepalive
   * before it answered, so it lets the lease go by itself at most a ttl after this.
   */
  #answeredAt: number;
  /** Stops background revokes (the provider closed and gave them closeMs). */
  readonly #stopRevokes: AbortSignal;
  /** The background revoke of a session that was given up, while it runs. */
  #revoking: Promise<void> | undefined;
  /** Send times of keepalives not answered yet, oldest first (answers arrive in order). */
  #unanswered: number[] = [];
  #stream: KeepAliveStream | undefined;
  #opening = false;
  #suspended = false;
  #stopped = false;
  #ticker: NodeJS.Timeout | undefined;
  #lossTimer: NodeJS.Timeout | undefined;
  #reopenTimer: NodeJS.Timeout | undefined;

  private constructor(
    connection: EtcdConnection,
    id: string,
    ttlSec: number,
    grantedAt: number,
    stopRevokes: AbortSignal,
  ) {
    this.#connection = connection;
    this.#stopRevokes = stopRevokes;
    this.#answeredAt = now();
    this.id = id;
    this.hex = leaseHex(id);
    this.ttlMs = ttlSec * 1000;
    this.#intervalMs = this.ttlMs / KEEPALIVES_PER_TTL;
    this.#lossWindowMs = this.ttlMs * (1 - LOSS_MARGIN_FRACTION);
    this.#confirmedAt = grantedAt;
    // Every lease and every waiter of the session listens to its signal: hundreds is normal, not a leak.
    setMaxListeners(0, this.#lost.signal);
    this.#armLossTimer();
    // Background timers must not keep an otherwise finished process alive.
    this.#ticker = setInterval(() => this.#tick(), this.#intervalMs).unref();
    this.#openStream();
  }

  /** Grants a lease of `ttlSec` and starts keeping it alive. */
  static async grant(connection: EtcdConnection, ttlSec: number, stopRevokes: AbortSignal): Promise<Session> {
    const sentAt = now();
    const granted = await connection.call('grant the session lease', (options) =>
      connection.client.leaseClient.leaseGrant({ TTL: ttlSec }, options),
    );
    // etcd silently raises a ttl below its minimum (1.5 election timeouts); a session that lives
    // longer than configured would make crash recovery slower than the caller planned for.
    if (BigInt(granted.TTL) > BigInt(ttlSec)) {
      await revoke(connection, granted.ID).catch(() => {});
      throw new InvalidArgumentError(
        'sessionTtlSec',
        ttlSec,
        `at least ${granted.TTL}: the minimum lease TTL of the etcd cluster at ${connection.address}`,
      );
    }
    return new Session(connection, granted.ID, ttlSec, sentAt, stopRevokes);
  }

  /** Aborted (with the reason) once the session's locks can no longer be vouched for. */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  get lost(): boolean {
    return this.#lost.signal.aborted;
  }

  /** A queue key under `prefix` that no other request of this session is using. */
  claim(prefix: string): string {
    for (let ordinal = 0; ; ordinal++) {
      const key = entryKey(prefix, this.hex, ordinal);
      if (!this.#claimed.has(key)) {
        this.#claimed.add(key);
        return key;
      }
    }
  }

  unclaim(key: string): void {
    this.#claimed.delete(key);
  }

  /**
   * The `lost` of one grant on this session, ended with the session's reason when the session is
   * lost or closed. A plain object in a Set rather than a listener on `signal`: adding and removing
   * an AbortSignal listener per grant cost about 10 µs of a 2 ms acquire + release (issue 13).
   */
  grantLoss(): GrantLoss {
    const loss = new SessionGrantLoss();
    if (this.lost) loss.end(this.#lost.signal.reason);
    else this.#grants.add(loss);
    return loss;
  }

  /** A grant from `grantLoss()` is over (being released): its loss need not be reported any more. */
  forget(loss: GrantLoss | AbortSignal | undefined): void {
    if (loss instanceof SessionGrantLoss) this.#grants.delete(loss);
  }

  /**
   * Ends the session: its locks are reported lost, and the lease is revoked so its keys go now rather
   * than at expiry — nobody here believes they hold them any more. The revoke is retried in the
   * background (p-retry) until it succeeds or the server has certainly let the lease go by itself
   * (ttl after the last keepalive it answered, plus its expiry check): a session given up while the
   * cluster was unreachable loses its keys right after the cluster is reachable again, not a ttl
   * later (dlock issue 11 #5).
   */
  lose(reason: Error): void {
    if (this.lost) return;
    this.#stop();
    this.#end(reason);
    const expiresBy = this.#answeredAt + this.ttlMs + SERVER_EXPIRY_SLACK_MS;
    this.#revoking = this.#revoke(expiresBy - now(), true).finally(() => {
      this.#revoking = undefined;
    });
  }

  /**
   * Closes the session on purpose: revokes the lease, which deletes every key attached to it, retrying
   * for at most `maxRetryMs`. Also waits (as long) for the revoke of a session that was given up.
   */
  async close(maxRetryMs: number): Promise<void> {
    if (this.lost) {
      await this.#revoking;
      return;
    }
    this.#stop();
    this.#end(new Error(`etcd session lease ${this.hex} was closed`));
    await this.#revoke(maxRetryMs, false);
  }

  /** The background revoke of a lost session, while it runs (for close and for tests). */
  get revoking(): Promise<void> | undefined {
    return this.#revoking;
  }

  /** Fault injection: stop sending keepalives, as a stalled process would; the loss timer still runs. */
  suspendKeepAlive(): void {
    this.#suspended = true;
  }

  /** Fault injection: stop everything without telling anyone or revoking, as a crashed process would. */
  crash(): void {
    this.#stop();
  }

  /** The session's signal aborts, then every grant still held is told. */
  #end(reason: Error): void {
    this.#lost.abort(reason);
    const grants = [...this.#grants];
    this.#grants.clear();
    for (const grant of grants) grant.end(reason);
  }

  #stop(): void {
    this.#stopped = true;
    clearInterval(this.#ticker);
    clearTimeout(this.#lossTimer);
    clearTimeout(this.#reopenTimer);
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) endStream(stream, this.#connection.callTimeoutMs);
  }

  /** Revokes the lease, retrying transient failures for at most `maxRetryMs`; never rejects. */
  async #revoke(maxRetryMs: number, background: boolean): Promise<void> {
    await pRetry(() => revoke(this.#connection, this.id), {
      ...REVOKE_RETRY,
      retries: Number.POSITIVE_INFINITY,
      maxRetryTime: Math.max(0, maxRetryMs),
      signal: this.#stopRevokes,
      unref: background,
      shouldRetry: ({ error }) => isTransient(error),
    }).catch(() => {
      // Out of time: the lease then ends at the server by its ttl.
    });
  }

  #tick(): void {
    if (this.#stopped || this.#suspended) return;
    const stream = this.#stream;
    if (!stream) {
      this.#openStream();
      return;
    }
    const oldest = this.#unanswered[0];
    if (oldest !== undefined && now() - oldest > this.#intervalMs) {
      // The member on the other end has stalled without breaking the stream: try another one.
      this.#stream = undefined;
      endStream(stream, this.#connection.callTimeoutMs);
      this.#openStream();
      return;
    }
    this.#send(stream);
  }

  #send(stream: KeepAliveStream): void {
    this.#unanswered.push(now());
    stream.write({ ID: this.id });
  }

  #openStream(): void {
    if (this.#opening || this.#stopped) return;
    this.#opening = true;
    this.#connection.client.leaseClient.leaseKeepAlive().then(
      (stream) => {
        this.#opening = false;
        if (this.#stopped) {
          endStream(stream, this.#connection.callTimeoutMs);
          return;
        }
        this.#stream = stream;
        this.#unanswered = [];
        stream.on('data', (response) => this.#onAnswer(stream, response));
        stream.on('error', () => this.#onBroken(stream));
        stream.on('end', () => this.#onBroken(stream));
        if (!this.#suspended) this.#send(stream);
      },
      () => {
        this.#opening = false;
        this.#scheduleReopen();
      },
    );
  }

  #onBroken(stream: KeepAliveStream): void {
    if (stream !== this.#stream) return;
    this.#stream = undefined;
    this.#scheduleReopen();
  }

  #scheduleReopen(): void {
    if (this.#stopped) return;
    clearTimeout(this.#reopenTimer);
    this.#reopenTimer = setTimeout(() => this.#openStream(), REOPEN_DELAY_MS).unref();
  }

  #onAnswer(stream: KeepAliveStream, response: ILeaseKeepAliveResponse): void {
    if (stream !== this.#stream) return;
    const sentAt = this.#unanswered.shift();
    if (BigInt(response.TTL) <= 0n) {
      this.lose(new Error(`etcd session lease ${this.hex} expired or was revoked at the server`));
      return;
    }
    this.#answeredAt = now();
    if (sentAt === undefined || sentAt <= this.#confirmedAt) return;
    this.#confirmedAt = sentAt;
    this.#armLossTimer();
  }

  #armLossTimer(): void {
    clearTimeout(this.#lossTimer);
    const remaining = this.#confirmedAt + this.#lossWindowMs - now();
    this.#lossTimer = setTimeout(
      () =>
        this.lose(
          new Error(
            `no keepalive of etcd session lease ${this.hex} was acknowledged for ${this.#lossWindowMs} ms ` +
              `(ttl ${this.ttlMs} ms)`,
          ),
        ),
      Math.max(0, remaining),
    ).unref();
  }
}

/** Revokes lease `id`; a lease the server no longer has (expired, revoked) counts as revoked. */
async function revoke(connection: EtcdConnection, id: string): Promise<void> {
  try {
    await connection.call('revoke the session lease', (options) =>
      connection.client.leaseClient.leaseRevoke({ ID: id }, options),
    );
  } catch (error) {
    if (!(error instanceof EtcdLeaseInvalidError)) throw error;
  }
}

/**
 * The provider's current session: one at a time, granted on first use and again after a loss (a
 * later acquire starts a new session, as Go's callers create a new concurrency.Session).
 */
export class SessionKeeper {
  readonly #connection: EtcdConnection;
  readonly #ttlSec: number;
  readonly #closeMs: number;
  /** Aborted once close() has given the revokes its time, or by a simulated crash. */
  readonly #stopRevokes = new AbortController();
  /** Every session granted so far that may still have a revoke running (lost ones are kept until it ends). */
  readonly #sessions = new Set<Session>();
  #current: Promise<Session> | undefined;
  #live: Session | undefined;
  #closed = false;

  /** `closeMs`: how long close() keeps retrying revokes (the provider's retry policy's closeMs). */
  constructor(connection: EtcdConnection, ttlSec: number, closeMs: number) {
    this.#connection = connection;
    this.#ttlSec = ttlSec;
    this.#closeMs = closeMs;
  }

  /** The live session, granting a new one when there is none yet or the last one was lost. */
  obtain(): Promise<Session> {
    if (this.#closed) return Promise.reject(new ProviderClosedError(BACKEND));
    const current = this.#current;
    if (!current) return this.#grant(undefined);
    return current.then(
      (session) => (session.lost ? this.#grant(current) : session),
      () => this.#grant(current),
    );
  }

  /**
   * The live session when there is one and the keeper is open: what `obtain()` would resolve to,
   * without the promise hops (the enqueue's hot path).
   */
  get usable(): Session | undefined {
    return this.#closed ? undefined : this.live;
  }

  /** The live session, if there is one right now. */
  get live(): Session | undefined {
    return this.#live && !this.#live.lost ? this.#live : undefined;
  }

  /** Revokes the live session and waits for the revokes of lost ones, all within closeMs. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#current?.catch(() => undefined);
    const outOfTime = new AbortController();
    await Promise.race([
      Promise.all([...this.#sessions].map((session) => session.close(this.#closeMs))),
      pause(this.#closeMs, outOfTime.signal),
    ]);
    outOfTime.abort();
    this.#stopRevokes.abort();
  }

  crash(): void {
    this.#closed = true;
    this.#stopRevokes.abort();
    this.#live?.crash();
  }

  #grant(replacing: Promise<Session> | undefined): Promise<Session> {
    // Concurrent callers that found the same lost session share one new grant.
    if (this.#current !== replacing) return this.obtain();
    const granted = Session.grant(this.#connection, this.#ttlSec, this.#stopRevokes.signal).then(
      async (session) => {
        if (this.#closed) {
          await session.close(this.#closeMs);
          throw new ProviderClosedError(BACKEND);
        }
        for (const old of this.#sessions) if (old.lost && !old.revoking) this.#sessions.delete(old);
        this.#sessions.add(session);
        this.#live = session;
        return session;
      },
    );
    granted.catch(() => {});
    this.#current = granted;
    return granted;
  }
}
