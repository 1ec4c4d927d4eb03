import {
  type Attempt,
  type Capabilities,
  type Grant,
  type HolderInfo,
  type Lease,
  type LockDriver,
  LockLostError,
  type LockRequest,
  ProviderClosedError,
  isTransient,
} from '@dlock/core';
import { EtcdLeaseInvalidError, type IKeyValue, type IRequestOp, type ITxnResponse, Range } from 'etcd3';
import { BACKEND, type EtcdConnection } from './connection.js';
import { entryIdentity, queuePrefix } from './layout.js';
import type { Session, SessionKeeper } from './session.js';
import type { Watch, WatchHub } from './watch.js';

/**
 * What an enqueue sent: the key (claimed for this request within its session) and the session lease
 * it was attached to. It is the ticket of a place in line, and of an enqueue whose reply was lost
 * (`revision` then unknown): re-sending the same create-if-absent Txn adopts the key if the lost one
 * created it, and a withdraw deletes it by name.
 */
export interface QueueTicket {
  /** The full etcd key, `<namespace><name>/<lease hex>[-n]`. */
  readonly key: string;
  /** Its create revision, or undefined when the enqueue's reply was lost. */
  readonly revision: bigint | undefined;
  readonly session: Session;
}

/** One contender's key in a queue: its place in line while waiting, its proof of ownership once granted. */
export interface QueueEntry extends QueueTicket {
  /** Its create revision: the place in line, and the fencing token once it is the owner. */
  readonly revision: bigint;
}

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

const sessionEnded = (session: Session) =>
  `its etcd session lease ${session.hex} was lost (${errorMessage(session.signal.reason)})`;

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
  readonly #namespace: string;
  readonly #ownsConnection: boolean;
  #closed = false;

  constructor(options: QueueOptions) {
    this.#connection = options.connection;
    this.#sessions = options.sessions;
    this.#watches = options.watches;
    this.#namespace = options.namespace;
    this.#ownsConnection = options.ownsConnection;
  }

  async attempt(
    request: LockRequest,
    ticket: QueueTicket | undefined,
  ): Promise<Attempt<QueueEntry, QueueTicket>> {
    if (this.#closed) throw new ProviderClosedError(BACKEND);
    const prefix = queuePrefix(this.#namespace, request.key);
    // A ticket of a lost session has no key any more (or will not have one once its lease is revoked
    // in the background, or expires).
    let place = ticket && !ticket.session.lost ? ticket : undefined;
    if (ticket && !place) ticket.session.unclaim(ticket.key);
    for (let renewedSession = false; ; renewedSession = true) {
      // A failed grant applied nothing that matters: a lease without keys expires by itself.
      const session = place?.session ?? (await this.#sessions.obtain());
      const key = place?.key ?? session.claim(prefix);
      try {
        const { entry, owner } = await this.#enqueue(prefix, key, session, request.identity);
        if (owner) {
          const grant: Grant<QueueEntry> = {
            token: entry.revision,
            validUntil: Number.POSITIVE_INFINITY,
            lost: session.signal,
            handle: entry,
          };
          return { outcome: 'granted', grant };
        }
        return { outcome: 'busy', ticket: entry };
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) {
          // The server no longer has the lease (revoked by an operator, say) and rejected the whole Txn.
          session.lose(new Error(`etcd session lease ${session.hex} was not found at the server`));
          session.unclaim(key);
          place = undefined;
          if (!renewedSession) continue;
          throw this.#connection.unavailable('enqueue', error);
        }
        const failure = this.#connection.unavailable('enqueue', error);
        if (!isTransient(failure)) {
          if (!place) session.unclaim(key);
          throw failure;
        }
        // The Txn may have been applied and its reply lost. The key stays claimed for this request:
        // the next attempt re-sends the same create-if-absent Txn and adopts the key (and its place in
        // line) if it exists; a withdraw deletes it.
        return { outcome: 'unknown', ticket: { key, session, revision: place?.revision }, cause: failure };
      }
    }
  }

  async waitForChange(
    request: LockRequest,
    ticket: QueueTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    const revision = ticket?.revision;
    if (!ticket || revision === undefined || ticket.session.lost || request.signal.aborted) return;
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, request.key));
    // Go's waitDeletes: only the key just ahead matters, so a release wakes one waiter, not the herd.
    const ahead = await this.#connection.call('find the contender ahead', (options) =>
      this.#connection.client.kv.range(
        {
          key: start,
          range_end: end,
          max_create_revision: String(revision - 1n),
          sort_target: 'Create',
          sort_order: 'Descend',
          limit: 1,
          keys_only: true,
        },
        options,
      ),
    );
    const predecessor = ahead.kvs[0];
    if (!predecessor) return;
    // The predecessor existed at that revision, so its delete comes later. Watching from the next
    // revision (Go watches from the same one) also lets etcd put the watch straight into its synced
    // group: a watch starting at or before the current revision waits for etcd's 100 ms catch-up loop,
    // which would add up to 100 ms to every hand-off.
    const after = String(BigInt(ahead.header.revision) + 1n);
    await this.#untilDeleted(predecessor.key, after, maxWaitMs, [request.signal, ticket.session.signal]);
  }

  async withdraw(_request: LockRequest, ticket: QueueTicket): Promise<void> {
    await this.#remove(ticket, 'withdraw from the queue');
  }

  async extend(key: string, grant: Grant<QueueEntry>): Promise<number> {
    const entry = grant.handle;
    if (entry.session.lost) throw new LockLostError(key, sessionEnded(entry.session));
    const current = await this.#connection.call('check the lock key', (options) =>
      this.#connection.client.kv.range({ key: Buffer.from(entry.key) }, options),
    );
    const kv = current.kvs[0];
    if (!kv || BigInt(kv.create_revision) !== entry.revision) {
      throw new LockLostError(key, `its etcd key ${entry.key} was deleted (by an operator or lease expiry)`);
    }
    // Keys created later have higher revisions, so an entry that still exists is still the owner.
    return Number.POSITIVE_INFINITY;
  }

  async release(_key: string, grant: Grant<QueueEntry>): Promise<void> {
    await this.#remove(grant.handle, 'release the lock');
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, key));
    const response = await this.#connection.call('read the holder', (options) =>
      this.#connection.client.kv.range(ownerRange(start, end), options),
    );
    const owner = response.kvs[0];
    return owner ? toHolder(owner) : null;
  }

  /**
   * Go's Election.Observe: the current holder, then every change, from a watch on the prefix. The
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
          const response = await this.#connection.call('read the holder', (options) =>
            this.#connection.client.kv.range(ownerRange(start, end), options),
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

  /**
   * Go's Mutex.tryAcquire in one Txn: create the key on the session lease unless it exists, and read
   * it and the owner (lowest create revision under the prefix) at the same revision.
   */
  async #enqueue(
    prefix: string,
    key: string,
    session: Session,
    identity: string,
  ): Promise<{ entry: QueueEntry; owner: boolean }> {
    const keyBytes = Buffer.from(key);
    const { start, end } = Range.prefix(prefix);
    const owner: IRequestOp = { request_range: ownerRange(start, end) };
    const response: ITxnResponse = await this.#connection.call('enqueue', (options) =>
      this.#connection.client.kv.txn(
        {
          compare: [{ key: keyBytes, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [
            { request_put: { key: keyBytes, value: Buffer.from(identity), lease: session.id } },
            owner,
          ],
          failure: [{ request_range: { key: keyBytes } }, owner],
        },
        options,
      ),
    );
    const mine = response.succeeded
      ? response.header.revision
      : response.responses[0]?.response_range.kvs[0]?.create_revision;
    const first = response.responses[1]?.response_range.kvs[0];
    if (mine === undefined || first === undefined) {
      throw new Error(`etcd answered the enqueue Txn for ${key} without the expected keys`);
    }
    const revision = BigInt(mine);
    return { entry: { key, revision, session }, owner: BigInt(first.create_revision) === revision };
  }

  /**
   * Deletes a queue key by what was sent: its name (claimed by this request within its session) and,
   * when known, its create revision, so that a late or repeated delete can never remove a later key
   * of the same name. Idempotent: core retries it after a transient failure, and the key stays claimed
   * until the delete is confirmed. A key of a lost session goes with the session's lease (revoked in
   * the background, or expired), so there is nothing left to send.
   */
  async #remove(entry: QueueTicket, what: string): Promise<void> {
    const { session } = entry;
    if (session.lost) {
      session.unclaim(entry.key);
      return;
    }
    const key = Buffer.from(entry.key);
    let revision = entry.revision;
    if (revision === undefined) {
      // The enqueue's reply was lost: find out whether it created the key, and at which revision.
      const found = await this.#connection.call(what, (options) =>
        this.#connection.client.kv.range({ key, keys_only: true }, options),
      );
      const kv = found.kvs[0];
      if (kv) revision = BigInt(kv.create_revision);
    }
    if (revision !== undefined) {
      const createRevision = String(revision);
      await this.#connection.call(what, (options) =>
        this.#connection.client.kv.txn(
          {
            compare: [{ key, target: 'Create', result: 'Equal', create_revision: createRevision }],
            success: [{ request_delete_range: { key } }],
          },
          options,
        ),
      );
    }
    session.unclaim(entry.key);
  }

  /**
   * Resolves once `key` is deleted (at `revision` or later), after `maxWaitMs`, when a signal aborts,
   * or when the watch is cancelled by the server or resumed after a broken stream (the caller then
   * re-checks the queue).
   */
  #untilDeleted(key: Buffer, revision: string, maxWaitMs: number, signals: AbortSignal[]): Promise<void> {
    return new Promise((resolve) => {
      const watch = this.#watches.open({ key, startRevision: BigInt(revision), onlyDeletes: true }, () =>
        done(),
      );
      const done = () => {
        clearTimeout(timer);
        for (const signal of signals) signal.removeEventListener('abort', done);
        watch.cancel();
        resolve();
      };
      const timer = setTimeout(done, maxWaitMs);
      for (const signal of signals) signal.addEventListener('abort', done, { once: true });
      if (signals.some((signal) => signal.aborted)) done();
    });
  }
}

function ownerRange(start: Buffer, end: Buffer) {
  return { key: start, range_end: end, sort_target: 'Create', sort_order: 'Ascend', limit: 1 } as const;
}

function toHolder(kv: IKeyValue): HolderInfo {
  return { identity: entryIdentity(kv), token: BigInt(kv.create_revision) };
}

function sameHolder(a: HolderInfo | null, b: HolderInfo | null): boolean {
  return a === b || (a !== null && b !== null && a.identity === b.identity && a.token === b.token);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
