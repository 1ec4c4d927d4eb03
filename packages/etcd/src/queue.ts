import {
  type Attempt,
  type Capabilities,
  type Grant,
  type HolderInfo,
  type KeyInspection,
  type Lease,
  type LockDriver,
  LockLostError,
  type LockRequest,
  ProviderClosedError,
  isTransient,
  raceAbort,
} from '@dlock/core';
import { EtcdLeaseInvalidError, type IKeyValue, Range } from 'etcd3';
import { BACKEND, type EtcdConnection } from './connection.js';
import { entryIdentity, leaseHex, queuePrefix } from './layout.js';
import { type QueueEntry, type QueueTicket, SessionKeys, oldestIn } from './session-keys.js';
import type { SessionKeeper } from './session.js';
import type { Watch, WatchHub } from './watch.js';

export type { QueueEntry, QueueTicket } from './session-keys.js';

export const etcdCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    'Exclusion holds while the etcd cluster keeps a quorum (every request is linearizable) and the holder ' +
    'notices in time that its session was lost. A lock lives as long as its provider keeps the session ' +
    'lease alive; the per-lock ttlMs is not used. The lease signal aborts a fifth of the session ttl before ' +
    'the server can expire the lease (measured from when the last acknowledged keepalive was sent), so a ' +
    'holder that is paused longer than that (GC, SIGSTOP, swap) can act after the lock has passed on — ' +
    "check the fencing token (the key's create revision, strictly increasing per name) at the resource. " +
    'A lock key deleted by an operator is noticed at the next extend. Names "a" and "a/b" share one queue, ' +
    "as in Go's concurrency.Mutex.",
};

interface QueueOptions {
  readonly connection: EtcdConnection;
  readonly sessions: SessionKeeper;
  /** The connection's watch stream, shared by the mutex and election drivers. */
  readonly watches: WatchHub;
  readonly namespace: string;
  /** Whether closing this driver closes the connection (the mutex driver owns it; the election shares it). */
  readonly ownsConnection: boolean;
}

/**
 * The queue behind Go's concurrency.Mutex and concurrency.Election, as a dlock driver: one key per
 * contender under `<namespace><name>/`, attached to the provider's session lease; the lowest create
 * revision owns the name; each waiter watches only the key just ahead of it.
 *
 * Every request it sends is idempotent (create-if-absent, compare-revision-then-delete, reads), so the
 * connection may retry any of them on another member, and core may retry attempts, withdraws and
 * releases after a transient failure. An enqueue whose reply is lost is an 'unknown' outcome whose
 * ticket names the key: it never costs the session.
 */
export class RevisionQueueDriver implements LockDriver<QueueEntry, QueueTicket> {
  readonly backend = BACKEND;

  get address(): string {
    return this.#connection.address;
  }

  readonly capabilities = etcdCapabilities;
  /** Per-lock ttlMs is not used: the session lease governs. Keys: etcd accepts any bytes. */
  readonly limits = { minTtlMs: 1, maxKeyBytes: 4096 };
  readonly #connection: EtcdConnection;
  readonly #sessions: SessionKeeper;
  readonly #watches: WatchHub;
  readonly #keys: SessionKeys;
  readonly #namespace: string;
  readonly #ownsConnection: boolean;
  #closed = false;

  constructor(options: QueueOptions) {
    this.#connection = options.connection;
    this.#sessions = options.sessions;
    this.#watches = options.watches;
    this.#keys = new SessionKeys(options.connection, options.sessions, options.watches);
    this.#namespace = options.namespace;
    this.#ownsConnection = options.ownsConnection;
  }

  attempt(request: LockRequest, ticket: QueueTicket | undefined): Promise<Attempt<QueueEntry, QueueTicket>> {
    if (this.#closed) return Promise.reject(new ProviderClosedError(BACKEND));
    const prefix = queuePrefix(this.#namespace, request.key);
    return this.#keys.enqueue(
      ticket,
      (session) => session.claim(prefix),
      (key, session) => this.#keys.enqueueAhead(key, request.identity, session, Range.prefix(prefix)),
    );
  }

  async waitForChange(
    request: LockRequest,
    ticket: QueueTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    // Go's waitDeletes: only the key just ahead matters, so a release wakes one waiter, not the herd.
    const queue = Range.prefix(queuePrefix(this.#namespace, request.key));
    await this.#keys.untilAheadDeleted(queue, request, ticket, maxWaitMs);
  }

  async withdraw(_request: LockRequest, ticket: QueueTicket): Promise<void> {
    await this.#keys.remove(ticket, 'withdraw from the queue');
  }

  extend(key: string, grant: Grant<QueueEntry>): Promise<number> {
    return this.#keys.confirmHeld(key, grant.handle);
  }

  release(_key: string, grant: Grant<QueueEntry>): Promise<void> {
    return this.#keys.release(grant, 'release the lock');
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, key));
    const response = await this.#connection.call('read the holder', (options) =>
      this.#connection.client.kv.range(oldestIn({ start, end }), options),
    );
    const owner = response.kvs[0];
    return owner ? toHolder(owner) : null;
  }

  /**
   * The whole queue in one range read, in create-revision order: the first entry holds the lock, the
   * rest wait in line. Each entry is attached to its session's lease (hex, as etcdctl prints it).
   */
  async inspect(key: string): Promise<KeyInspection> {
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, key));
    const response = await this.#connection.call('read the queue', (options) =>
      this.#connection.client.kv.range(
        { key: start, range_end: end, sort_target: 'Create', sort_order: 'Ascend' },
        options,
      ),
    );
    const [owner, ...waiting] = response.kvs;
    if (owner === undefined) return { holder: null, waiters: [] };
    return {
      holder: toHolder(owner),
      session: leaseHex(owner.lease),
      waiters: waiting.map((kv) => ({ identity: entryIdentity(kv), session: leaseHex(kv.lease) })),
    };
  }

  /**
   * One keys-only range over `<namespace><prefix>`: every entry is `<namespace><name>/<lease hex>`,
   * so the names with at least one entry are the names someone holds.
   */
  async heldKeys(prefix: string): Promise<string[]> {
    const { start, end } = Range.prefix(`${this.#namespace}${prefix}`);
    const response = await this.#connection.call('list the queues', (options) =>
      this.#connection.client.kv.range({ key: start, range_end: end, keys_only: true }, options),
    );
    const names = new Set<string>();
    for (const kv of response.kvs) {
      const entry = kv.key.toString('utf8');
      const slash = entry.lastIndexOf('/');
      if (slash >= this.#namespace.length + prefix.length)
        names.add(entry.slice(this.#namespace.length, slash));
    }
    return [...names].sort();
  }

  /**
   * Go's Election.Observe: the current holder, then each change (coalesced, see
   * LockProvider.watchHolder), from a watch on the prefix. The
   * first read fails fast (BackendUnavailableError) when etcd cannot be read. After that, an outage is
   * ridden out: the watch stays registered, the watch stream is reopened as soon as etcd is reachable
   * again, and the holder is read again right then, so a change during the outage (a holder that
   * stopped, a key that expired) is reported at once rather than the last holder seen before it.
   */
  async *watchHolder(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null> {
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, key));
    let changed = false;
    let wake: (() => void) | undefined;
    const onChange = () => {
      changed = true;
      wake?.();
    };
    let watch: Watch | undefined;
    /** The revision of the last successful read: everything after it is (or will be) watched. */
    let revision: bigint | undefined;
    const watchFrom = (from: bigint) => {
      if (!watch || watch.ended) {
        watch = this.#watches.open({ key: start, rangeEnd: end, startRevision: from + 1n }, onChange);
      }
    };
    signal.addEventListener('abort', onChange, { once: true });
    try {
      let last: HolderInfo | null | undefined;
      while (!signal.aborted) {
        changed = false;
        try {
          // An abort ends the stream at once, not when a read in flight answers or times out.
          const response = await raceAbort(
            this.#connection.call('read the holder', (options) =>
              this.#connection.client.kv.range(oldestIn({ start, end }), options),
            ),
            signal,
          );
          revision = BigInt(response.header.revision);
          watchFrom(revision);
          const owner = response.kvs[0];
          const current = owner ? toHolder(owner) : null;
          if (last === undefined || !sameHolder(last, current)) {
            last = current;
            yield current;
          }
        } catch (error) {
          if (signal.aborted) return;
          if (revision === undefined || !isTransient(error)) throw error;
          // Keep a watch registered, so the stream is reopened and wakes this loop once etcd is back.
          watchFrom(revision);
        }
        if (!changed && !signal.aborted) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      }
    } finally {
      signal.removeEventListener('abort', onChange);
      watch?.cancel();
    }
  }

  /**
   * Go's Election.Proclaim: replaces the value (the identity holder() shows) of `lease`'s key, only
   * while that key still exists — and so is still the owner.
   */
  async proclaim(lease: Lease, value: string): Promise<void> {
    if (lease.signal.aborted) throw lease.signal.reason;
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, lease.key));
    const token = String(lease.token);
    const found = await this.#connection.call('find the leader key', (options) =>
      this.#connection.client.kv.range(
        { key: start, range_end: end, min_create_revision: token, max_create_revision: token, limit: 1 },
        options,
      ),
    );
    const kv = found.kvs[0];
    const gone = new LockLostError(lease.key, 'its etcd key no longer exists');
    if (!kv) throw gone;
    const updated = await this.#connection
      .call('proclaim', (options) =>
        this.#connection.client.kv.txn(
          {
            compare: [{ key: kv.key, target: 'Create', result: 'Equal', create_revision: token }],
            success: [{ request_put: { key: kv.key, value: Buffer.from(value), lease: kv.lease } }],
          },
          options,
        ),
      )
      .catch((error: unknown) => {
        // The key's lease ended between the read and the Txn.
        if (error instanceof EtcdLeaseInvalidError) throw gone;
        throw error;
      });
    if (!updated.succeeded) throw gone;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#ownsConnection) return;
    this.#watches.close();
    await this.#sessions.close();
    this.#connection.close();
  }
}

function toHolder(kv: IKeyValue): HolderInfo {
  return { identity: entryIdentity(kv), token: BigInt(kv.create_revision) };
}

function sameHolder(a: HolderInfo | null, b: HolderInfo | null): boolean {
  return a === b || (a !== null && b !== null && a.identity === b.identity && a.token === b.token);
}
