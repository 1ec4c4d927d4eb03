import { setMaxListeners } from 'node:events';
import { InvalidArgumentError, ProviderClosedError, now } from '@dlock/core';
import type { ILeaseKeepAliveResponse, LeaseClient } from 'etcd3';
import { BACKEND, type EtcdConnection } from './connection.js';
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
  readonly #intervalMs: number;
  readonly #lossWindowMs: number;
  /** When the latest acknowledged keepalive (or the grant) was sent. */
  #confirmedAt: number;
  /** Send times of keepalives not answered yet, oldest first (answers arrive in order). */
  #unanswered: number[] = [];
  #stream: KeepAliveStream | undefined;
  #opening = false;
  #suspended = false;
  #stopped = false;
  #ticker: NodeJS.Timeout | undefined;
  #lossTimer: NodeJS.Timeout | undefined;
  #reopenTimer: NodeJS.Timeout | undefined;

  private constructor(connection: EtcdConnection, id: string, ttlSec: number, grantedAt: number) {
    this.#connection = connection;
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
  static async grant(connection: EtcdConnection, ttlSec: number): Promise<Session> {
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
    return new Session(connection, granted.ID, ttlSec, sentAt);
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
   * Ends the session: its locks are reported lost, and the lease is revoked (best effort) so its keys
   * go now rather than at expiry — nobody here believes they hold them any more.
   */
  lose(reason: Error): void {
    if (this.lost) return;
    this.#stop();
    this.#lost.abort(reason);
    revoke(this.#connection, this.id).catch(() => {});
  }

  /** Closes the session on purpose: revokes the lease, which deletes every key attached to it. */
  async close(): Promise<void> {
    if (this.lost) return;
    this.#stop();
    this.#lost.abort(new Error(`etcd session lease ${this.hex} was closed`));
    await revoke(this.#connection, this.id).catch(() => {});
  }

  /** Fault injection: stop sending keepalives, as a stalled process would; the loss timer still runs. */
  suspendKeepAlive(): void {
    this.#suspended = true;
  }

  /** Fault injection: stop everything without telling anyone or revoking, as a crashed process would. */
  crash(): void {
    this.#stop();
  }

  #stop(): void {
    this.#stopped = true;
    clearInterval(this.#ticker);
    clearTimeout(this.#lossTimer);
    clearTimeout(this.#reopenTimer);
    const stream = this.#stream;
    this.#stream = undefined;
    stream?.cancel();
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
      stream.cancel();
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
          stream.cancel();
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

function revoke(connection: EtcdConnection, id: string): Promise<unknown> {
  return connection.call('revoke the session lease', (options) =>
    connection.client.leaseClient.leaseRevoke({ ID: id }, options),
  );
}

/**
 * The provider's current session: one at a time, granted on first use and again after a loss (a
 * later acquire starts a new session, as Go's callers create a new concurrency.Session).
 */
export class SessionKeeper {
  readonly #connection: EtcdConnection;
  readonly #ttlSec: number;
  #current: Promise<Session> | undefined;
  #live: Session | undefined;
  #closed = false;

  constructor(connection: EtcdConnection, ttlSec: number) {
    this.#connection = connection;
    this.#ttlSec = ttlSec;
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

  /** The live session, if there is one right now. */
  get live(): Session | undefined {
    return this.#live && !this.#live.lost ? this.#live : undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const session = await this.#current?.catch(() => undefined);
    await session?.close();
  }

  crash(): void {
    this.#closed = true;
    this.#live?.crash();
  }

  #grant(replacing: Promise<Session> | undefined): Promise<Session> {
    // Concurrent callers that found the same lost session share one new grant.
    if (this.#current !== replacing) return this.obtain();
    const granted = Session.grant(this.#connection, this.#ttlSec).then(async (session) => {
      if (this.#closed) {
        await session.close();
        throw new ProviderClosedError(BACKEND);
      }
      this.#live = session;
      return session;
    });
    granted.catch(() => {});
    this.#current = granted;
    return granted;
  }
}
