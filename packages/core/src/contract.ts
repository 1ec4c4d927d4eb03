/** What a backend guarantees. The conformance kit reads this and checks exactly what is promised. */
export interface Capabilities {
  /** 'monotonic': every new holder of a key gets a strictly larger fencing token than the previous one. */
  readonly fencing: 'monotonic' | 'none';
  /** 'fifo': waiters on one key are granted the lock in arrival order. */
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
  /** How long `acquire` may wait in ms. Default: until acquired or aborted. */
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

export interface LockProvider extends AsyncDisposable {
  readonly backend: string;
  readonly capabilities: Capabilities;
  /** Waits for the lock (up to `waitMs`, or until `signal` aborts). */
  acquire(key: string, options?: AcquireOptions): Promise<Lease>;
  /** One attempt: the lease, or null if someone else holds the key. */
  tryAcquire(key: string, options?: TryAcquireOptions): Promise<Lease | null>;
  /** The current holder of a key, or null when it is free. */
  holder(key: string): Promise<HolderInfo | null>;
  /** Releases every lease this provider holds, rejects pending acquires, closes connections it owns. */
  close(): Promise<void>;
  /**
   * Push stream of holder changes for `key`: yields the current holder first, then every change,
   * until `signal` aborts. Present only where the backend can push (watches, keyspace events).
   */
  watchHolder?(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null>;
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
  /** Aborted (reason: LockLostError) as soon as ownership can no longer be guaranteed. */
  readonly signal: AbortSignal;
  /** Extends the lease to `ttlMs` from now. Rejects LockLostError if ownership is gone. */
  extend(ttlMs?: number): Promise<void>;
  /** Gives the lock up. Idempotent. */
  release(): Promise<void>;
}

/* ------------------------------------------------------------------------------------------------
 * The driver: what a backend supplies. Core turns these few operations into acquire / tryAcquire,
 * timeouts, abort, renewal, the lost-signal and release-on-dispose.
 * ---------------------------------------------------------------------------------------------- */

/** One caller's request for one key, as a driver sees it. */
export interface LockRequest {
  readonly key: string;
  readonly identity: string;
  readonly ttlMs: number;
  /** Aborted when the caller gives up (abort, timeout, provider closing). */
  readonly signal: AbortSignal;
}

/** A lock a driver granted. `handle` is the driver's own bookkeeping (owner token, node path, ...). */
export interface Grant<Handle = unknown> {
  readonly token: bigint;
  /**
   * Local monotonic time (`performance.now()`) up to which the backend guarantees ownership without
   * another extension — measured from *before* the request was sent, minus clock drift.
   * `Infinity` for session-held locks, whose loss is reported through `lost` instead.
   */
  readonly validUntil: number;
  /** Aborted by the driver when it can no longer vouch for this grant (session or connection lost). */
  readonly lost?: AbortSignal;
  readonly handle: Handle;
}

export type Attempt<Handle, Ticket> =
  | { readonly acquired: true; readonly grant: Grant<Handle> }
  /** Someone else holds it. `ticket` is a place in the backend's queue, kept for the next attempt. */
  | { readonly acquired: false; readonly ticket?: Ticket };

export interface DriverLimits {
  /** Smallest ttlMs this backend can honour. */
  readonly minTtlMs: number;
  /** Longest key in UTF-8 bytes. */
  readonly maxKeyBytes: number;
}

export interface LockDriver<Handle = unknown, Ticket = unknown> {
  readonly backend: string;
  readonly capabilities: Capabilities;
  readonly limits: DriverLimits;
  /** Backend-specific key rules beyond length (throw InvalidArgumentError naming `key`). */
  validateKey?(key: string): void;
  /**
   * Try to take the lock once. With a ticket from a previous attempt, re-check that place in line.
   * Throws BackendUnavailableError when the backend cannot answer.
   */
  attempt(request: LockRequest, ticket: Ticket | undefined): Promise<Attempt<Handle, Ticket>>;
  /**
   * Resolve when another attempt is worth making (the holder released, the predecessor went away,
   * an expiry passed), or after `maxWaitMs` at the latest. A wake-up that happens between the last
   * attempt and this call must not be lost. Should settle promptly when `request.signal` aborts.
   */
  waitForChange(request: LockRequest, ticket: Ticket | undefined, maxWaitMs: number): Promise<void>;
  /** Give up a place in line (abort, timeout, tryAcquire that found the key busy). */
  withdraw(request: LockRequest, ticket: Ticket): Promise<void>;
  /** Extend to `ttlMs` from now; returns the new validUntil. Throws LockLostError if not the owner. */
  extend(key: string, grant: Grant<Handle>, ttlMs: number): Promise<number>;
  /** Release if still the owner; releasing a lock someone else now holds is a no-op. */
  release(key: string, grant: Grant<Handle>): Promise<void>;
  holder(key: string): Promise<HolderInfo | null>;
  close(): Promise<void>;
  /** Optional: see LockProvider.watchHolder. */
  watchHolder?(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null>;
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
}
