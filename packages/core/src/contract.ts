import type { RetryPolicyOptions } from './retry.js';

/** What a backend guarantees. The conformance kit reads this and checks exactly what is promised. */
export interface Capabilities {
  /**
   * 'monotonic': every new holder of a key gets a strictly larger fencing token than the previous one
   * (for a semaphore: every new permit of a name; for a read-write lock: see ReadWriteLock).
   */
  readonly fencing: 'monotonic' | 'none';
  /**
   * 'fifo': waiters on one key are granted in arrival order. For a read-write lock this also means no
   * writer starvation: readers that arrive after a waiting writer queue behind it.
   */
  readonly fairness: 'fifo' | 'none';
  /** 'push': a waiter is notified when the lock frees up; 'poll': it re-checks on a timer. */
  readonly wakeup: 'push' | 'poll';
  /** 'ttl': a lease expires unless extended; 'session': it lives as long as the client's session. */
  readonly expiry: 'ttl' | 'session';
  /** Plain-language note on what can break the guarantee. */
  readonly safety: string;
}

export interface AcquireOptions {
  /** Lease lifetime in ms for TTL-based backends (session-based backends document their use of it). */
  ttlMs?: number;
  /**
   * How long `acquire` may wait in ms. Default: until acquired or aborted. Transient backend failures
   * (a lost reply, a reconnect, a short outage) count as part of waiting: they are retried within this
   * budget under the provider's retry policy. An attempt already in flight when the budget runs out
   * may still complete for at most the provider's `settleGraceMs`.
   */
  waitMs?: number;
  /** Aborting rejects a pending acquire with the signal's reason and leaves nothing behind. */
  signal?: AbortSignal;
  /** Who holds the lock, as shown by `holder()`. Default: the provider's identity (host:pid:random). */
  identity?: string;
}

export type TryAcquireOptions = Omit<AcquireOptions, 'waitMs'>;

export interface HolderInfo {
  readonly identity: string;
  readonly token: bigint;
}

/** One request waiting in a backend's queue for a key, as `inspect()` reports it. */
export interface QueuedWaiter {
  /** The identity the waiter asked with (what `holder()` will show once it is granted). */
  readonly identity: string;
  /** The session its place in line lives in (ZooKeeper session id, etcd lease id, in hex), if any. */
  readonly session?: string;
}

/**
 * What a backend can tell about one lock key in one read: its holder, and where the backend reports
 * them, the time left on the holder's lease, the session keeping it, and the queue behind it.
 * Fields the backend cannot report are absent, never guessed.
 */
export interface KeyInspection {
  /** The current holder, or null when the key is free (as `holder()` reports it). */
  readonly holder: HolderInfo | null;
  /** ttl backends: ms left on the holder's lease by the server's clock when it was read. */
  readonly ttlLeftMs?: number;
  /** Session backends: the session keeping the holder's lease (ZooKeeper session id, etcd lease id, hex). */
  readonly session?: string;
  /**
   * The requests waiting behind the holder, first in line first. Absent where the backend keeps no
   * queue a reader can see (waiters poll or subscribe, and whoever retries first wins).
   */
  readonly waiters?: readonly QueuedWaiter[];
}

export interface LockProvider extends AsyncDisposable {
  readonly backend: string;
  readonly capabilities: Capabilities;
  /** Waits for the lock (up to `waitMs`, or until `signal` aborts). */
  acquire(key: string, options?: AcquireOptions): Promise<Lease>;
  /** One attempt: the lease, or null if someone else holds the key. */
  tryAcquire(key: string, options?: TryAcquireOptions): Promise<Lease | null>;
  /** The current holder of a key, or null when it is free. */
  holder(key: string): Promise<HolderInfo | null>;
  /**
   * A counting semaphore: at most `limit` permits of `name` are held at once. Each permit is a Lease.
   * Throws UnsupportedError on a provider without semaphores (etcd's `provider.election`).
   */
  semaphore(name: string, options: SemaphoreOptions): Semaphore;
  /**
   * A read-write lock: any number of read leases, or one write lease, never both. Each is a Lease.
   * Throws UnsupportedError on a provider without read-write locks (etcd's `provider.election`).
   */
  readWriteLock(name: string): ReadWriteLock;
  /**
   * Releases every lease this provider holds (retrying transient failures for at most the retry
   * policy's `closeMs`), rejects pending acquires with ProviderClosedError, finishes the clean-up of
   * unknown outcomes, then closes connections it owns.
   */
  close(): Promise<void>;
  /**
   * Push stream of holder changes for `key`: yields the current holder first, then each change the
   * backend reports, until `signal` aborts. Each value is read after a watch fires, so changes closer
   * together than one read coalesce: a holder that came and went in between can be skipped, and the
   * same holder is never yielded twice in a row. The last value yielded always catches up with the
   * current holder. Hand-offs coalesce as in Go's concurrency.Election.Observe (which reads the next
   * leader after the old key's delete) and as ZooKeeper's one-shot watches force; unlike Observe, a
   * free key is reported (null) and a repeated proclaim of the same value is not. Present only where
   * the backend can push (watches, keyspace events).
   */
  watchHolder?(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null>;
  /**
   * Read-only: the holder of `key` with what the backend reports beside it (time left, session,
   * waiters in line). Present only where the backend can say more than `holder()` (issue 17).
   * Throws BackendUnavailableError when the backend cannot answer.
   */
  inspect?(key: string): Promise<KeyInspection>;
  /**
   * Read-only: the lock keys starting with `prefix` that have a holder now, sorted. Present only where
   * the backend can list its keys (Redis SCAN, ZooKeeper children, an etcd range). A listing is a
   * snapshot: a key can be taken or freed while it is read. Throws BackendUnavailableError when the
   * backend cannot answer.
   */
  heldKeys?(prefix: string): Promise<string[]>;
  /**
   * A provider over the backend's native election layout (etcd's concurrency.Election, ZooKeeper's
   * election nodes) for recipes that elect a leader. Absent where election is just the lock.
   */
  readonly election?: LockProvider;
}

export interface Lease extends AsyncDisposable {
  readonly key: string;
  readonly identity: string;
  /** Fencing token: pass it to the protected resource so it can reject writes from a stale holder. */
  readonly token: bigint;
  /** The lifetime requested for this lease (ms); renewals default to it. */
  readonly ttlMs: number;
  /**
   * Aborted (reason: LockLostError) as soon as ownership can no longer be guaranteed. Never after
   * release(). It aborts from a timer (or a backend's event), so a process resumed after a pause (a
   * GC pause, SIGSTOP, a VM migration) can run its own code before that timer has fired and read
   * `aborted === false` for a moment after the lease ended: hand `token` to the resource, which can
   * reject a stale holder whatever its clock says (Kleppmann, "How to do distributed locking", 2016).
   */
  readonly signal: AbortSignal;
  /**
   * Extends the lease to `ttlMs` from now. Rejects LockLostError if ownership is gone, NotHeldError
   * after release(), BackendUnavailableError on a transport failure (the lease then stays valid until
   * its window closes, and a later extend may still confirm it).
   */
  extend(ttlMs?: number): Promise<void>;
  /**
   * Gives the lock up, retrying transient backend failures while the lease's validity window is open.
   * Idempotent once it succeeded. If it rejects (BackendUnavailableError), calling it again really
   * sends the release again; the lock otherwise ends by its ttl or session.
   */
  release(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------------
 * Semaphores and read-write locks: every permit and every read or write lease is an ordinary Lease,
 * with the same waiting, timeouts, abort, renewal, lost-signal and release as a lock.
 * ---------------------------------------------------------------------------------------------- */

export interface SemaphoreOptions {
  /**
   * The most permits held at once, a whole number >= 1. dlock stores the limit with the semaphore
   * while anyone holds or waits for a permit; a client that asks with another limit then gets
   * SemaphoreLimitMismatchError. Once the semaphore is idle the next client's limit counts.
   */
  limit: number;
}

export interface PermitAcquireOptions extends AcquireOptions {
  /** How many permits this lease takes at once (redis-semaphore's MultiSemaphore). 1..limit, default 1. */
  permits?: number;
}

export type PermitTryAcquireOptions = Omit<PermitAcquireOptions, 'waitMs'>;

export interface PermitHolder extends HolderInfo {
  /** How many permits this holder's lease takes. */
  readonly permits: number;
}

/** A permit lease: a Lease that also says how many permits it takes. */
export interface PermitLease extends Lease {
  readonly permits: number;
}

export interface Semaphore {
  readonly name: string;
  readonly limit: number;
  /** What the backend guarantees for semaphores (fencing per name across grants, FIFO, wake-ups). */
  readonly capabilities: Capabilities;
  /** Waits for `permits` (default 1) permits, up to `waitMs` or until `signal` aborts. */
  acquire(options?: PermitAcquireOptions): Promise<PermitLease>;
  /** One attempt: the permit lease, or null when not enough permits are free. */
  tryAcquire(options?: PermitTryAcquireOptions): Promise<PermitLease | null>;
  /** Who holds permits now, oldest grant first. */
  holders(): Promise<PermitHolder[]>;
}

export type ReadWriteMode = 'read' | 'write';

export interface ReadWriteHolder extends HolderInfo {
  readonly mode: ReadWriteMode;
}

export interface ReadWriteLease extends Lease {
  readonly mode: ReadWriteMode;
}

/** One side of a read-write lock. */
export interface ReadWriteSide {
  acquire(options?: AcquireOptions): Promise<ReadWriteLease>;
  tryAcquire(options?: TryAcquireOptions): Promise<ReadWriteLease | null>;
}

export interface ReadWriteLock {
  readonly name: string;
  /**
   * What the backend guarantees. fairness 'fifo' means no writer starvation: readers that arrive after
   * a waiting writer queue behind it. fencing 'monotonic' means a write lease's token is larger than
   * the token of every lease of this name granted before it, read or write.
   */
  readonly capabilities: Capabilities;
  readonly read: ReadWriteSide;
  readonly write: ReadWriteSide;
  /** Who holds the lock now: readers, or one writer. */
  holders(): Promise<ReadWriteHolder[]>;
}

/* ------------------------------------------------------------------------------------------------
 * The driver: what a backend supplies. Core turns these few operations into acquire / tryAcquire,
 * timeouts, abort, retries, renewal, the lost-signal, release-on-dispose and the clean-up of
 * requests whose outcome is unknown.
 * ---------------------------------------------------------------------------------------------- */

/** One caller's request for one key, as a driver sees it. */
export interface LockRequest {
  readonly key: string;
  readonly identity: string;
  readonly ttlMs: number;
  /** Aborted when the caller gives up (abort, timeout, provider closing). */
  readonly signal: AbortSignal;
  /**
   * False for a single try (`tryAcquire`): core makes one attempt and waits for nothing, so a backend
   * with a waiting line must not put the request in it. True (or absent) when core waits and tries
   * again after a busy attempt (issue 13: the Redis lock's line).
   */
  readonly willWait?: boolean;
}

/** A semaphore request: `permits` of at most `limit` concurrent permits of `key`. */
export interface PermitRequest extends LockRequest {
  readonly limit: number;
  readonly permits: number;
}

/** A read-write lock request for one side. */
export interface ReadWriteRequest extends LockRequest {
  readonly mode: ReadWriteMode;
}

/** A lease a driver granted. `handle` is the driver's own bookkeeping (owner token, node path, ...). */
export interface Grant<Handle = unknown> {
  readonly token: bigint;
  /**
   * Local monotonic time (`performance.now()`) up to which the backend guarantees ownership without
   * another extension — measured from *before* the request was sent, minus clock drift.
   * `Infinity` for session-held locks, whose loss is reported through `lost` instead.
   */
  readonly validUntil: number;
  /**
   * Aborted by the driver when it can no longer vouch for this grant (session or connection lost): an
   * AbortSignal (which may be shared by many grants), or a GrantLoss of this grant's own.
   */
  readonly lost?: AbortSignal | GrantLoss;
  readonly handle: Handle;
}

/**
 * What core needs of a grant's `lost` signal, for a driver that hands out one per grant: an
 * AbortController per grant (an EventTarget, its listener list and its abort event) costs more than
 * the rest of an uncontended acquire + release in core together. The lease sets `onLost` while it
 * holds the grant and clears it when it is done; the driver sets `aborted` and `reason` and then calls
 * `onLost`, once.
 */
export interface GrantLoss {
  readonly aborted: boolean;
  readonly reason: unknown;
  onLost: ((reason: unknown) => void) | undefined;
}

/**
 * The result of one attempt. An unknown outcome is a first-class result, not an exception: the request
 * may or may not have been applied (the reply was lost, the connection dropped with it in flight).
 * Its `ticket` names what was sent (owner value, protected node name, key and session), so that
 * - a later `attempt` with that ticket adopts whatever the lost request obtained (or retries it), and
 * - `withdraw` with that ticket undoes it.
 * Core decides once whether to retry, clean up or give up (Curator's RetryLoop and protected mode).
 */
export type Attempt<Handle, Ticket> =
  | { readonly outcome: 'granted'; readonly grant: Grant<Handle> }
  /** Someone else holds it. `ticket` is a place in the backend's queue, kept for the next attempt. */
  | { readonly outcome: 'busy'; readonly ticket?: Ticket }
  | {
      readonly outcome: 'unknown';
      readonly ticket: Ticket;
      /** Why the outcome is unknown; transient by definition. */
      readonly cause: Error;
    };

export interface DriverLimits {
  /** Smallest ttlMs this backend can honour. */
  readonly minTtlMs: number;
  /** Longest key in UTF-8 bytes. */
  readonly maxKeyBytes: number;
}

/**
 * The operations shared by every kind of lease driver: locks, semaphores and read-write locks.
 *
 * Errors: a driver throws BackendUnavailableError when the backend cannot answer — `transient: true`
 * (the default) when retrying may help (timeouts, resets, refused connects, a reconnect in progress)
 * and `transient: false` when it will not (authentication, a missing chroot). It throws
 * LockLostError from `extend` when another owner (or no owner) holds the lease, and
 * InvalidArgumentError (or a subclass) for input the backend rejects.
 */
export interface LeaseDriver<Request extends LockRequest, Handle, Ticket> {
  readonly backend: string;
  /** Where the backend is, for messages: host:port list, never credentials. */
  readonly address: string;
  readonly capabilities: Capabilities;
  readonly limits: DriverLimits;
  /** Backend-specific key rules beyond length (throw InvalidArgumentError naming `key`). */
  validateKey?(key: string): void;
  /**
   * Try to take the lease once. With a ticket from a previous attempt, re-check that place in line or
   * resolve that unknown outcome. Throws BackendUnavailableError when the backend cannot answer and
   * the request was certainly not applied; returns `{ outcome: 'unknown' }` when it may have been.
   */
  attempt(request: Request, ticket: Ticket | undefined): Promise<Attempt<Handle, Ticket>>;
  /**
   * Resolve when another attempt is worth making (the holder released, the predecessor went away,
   * an expiry passed), or after `maxWaitMs` at the latest. A wake-up that happens between the last
   * attempt and this call must not be lost. Should settle promptly when `request.signal` aborts.
   * A rejection counts as a transient failure of the next attempt.
   */
  waitForChange(request: Request, ticket: Ticket | undefined, maxWaitMs: number): Promise<void>;
  /**
   * Give up a place in line, or undo an attempt whose outcome was unknown, by what it sent. Must be
   * idempotent: core retries it (in the background when the caller has already been answered) until
   * it succeeds, the driver reports nothing is left to undo by resolving, or the retry policy's
   * `cleanupMs` has passed.
   */
  withdraw(request: Request, ticket: Ticket): Promise<void>;
  /** Extend to `ttlMs` from now; returns the new validUntil. Throws LockLostError if not the owner. */
  extend(key: string, grant: Grant<Handle>, ttlMs: number): Promise<number>;
  /**
   * Release if still the owner; releasing a lease someone else now holds is a no-op. Must be
   * idempotent: core retries it after a transient failure.
   */
  release(key: string, grant: Grant<Handle>): Promise<void>;
  close(): Promise<void>;
}

export interface LockDriver<Handle = unknown, Ticket = unknown>
  extends LeaseDriver<LockRequest, Handle, Ticket> {
  holder(key: string): Promise<HolderInfo | null>;
  /** Optional: see LockProvider.watchHolder. */
  watchHolder?(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null>;
  /** Optional: see LockProvider.inspect. */
  inspect?(key: string): Promise<KeyInspection>;
  /** Optional: see LockProvider.heldKeys. */
  heldKeys?(prefix: string): Promise<string[]>;
}

export interface SemaphoreDriver<Handle = unknown, Ticket = unknown>
  extends LeaseDriver<PermitRequest, Handle, Ticket> {
  /** Current permit holders of `key`, oldest grant first. */
  holders(key: string): Promise<PermitHolder[]>;
}

export interface ReadWriteDriver<Handle = unknown, Ticket = unknown>
  extends LeaseDriver<ReadWriteRequest, Handle, Ticket> {
  /** Current holders of `key`: readers, or one writer. */
  holders(key: string): Promise<ReadWriteHolder[]>;
}

/* ------------------------------------------------------------------------------------------------
 * How tooling (the lab, benchmarks) finds and connects a backend without knowing it in advance.
 * Each backend package exports one as `dlockBackend`.
 * ---------------------------------------------------------------------------------------------- */

export interface BackendDescriptor {
  /** The provider's `backend` name. */
  readonly name: string;
  /** What servers it needs: the lab starts these through the testkit (or takes addresses). */
  readonly servers: { readonly kind: 'redis' | 'zookeeper' | 'etcd'; readonly count: number };
  /**
   * A provider on the given servers: redis URLs, ZooKeeper host:port pairs, or etcd client URLs,
   * one per server.
   */
  createProvider(endpoints: readonly string[], options?: BackendConnectOptions): Promise<LockProvider>;
}

export interface BackendConnectOptions {
  identity?: string;
  /** Bound on connecting and on each call: a dead server gives BackendUnavailableError within it. */
  connectTimeoutMs?: number;
  /** Session-based backends: how long a silent client keeps its locks (ttl backends ignore it). */
  sessionTimeoutMs?: number;
  /** Overrides of the backend's default retry policy. */
  retry?: RetryPolicyOptions;
}
