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
} from '@dlock/core';
import {
  EtcdLeaseInvalidError,
  type IKeyValue,
  type IRequestOp,
  type ITxnResponse,
  type IWatchResponse,
  Range,
  type WatchBuilder,
} from 'etcd3';
import { BACKEND, type EtcdConnection } from './connection.js';
import { entryIdentity, leaseHex, queuePrefix } from './layout.js';
import type { Session, SessionKeeper } from './session.js';

/** One contender's key in a queue: its place in line while waiting, its proof of ownership once granted. */
export interface QueueEntry {
  /** The full etcd key, `<namespace><name>/<lease hex>`. */
  readonly key: string;
  /** Its create revision: the place in line, and the fencing token once it is the owner. */
  readonly revision: bigint;
  readonly session: Session;
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
 * connection may retry any of them on another member.
 */
export class RevisionQueueDriver implements LockDriver<QueueEntry, QueueEntry> {
  readonly backend = BACKEND;

  get address(): string {
    return this.#connection.address;
  }

  readonly capabilities = etcdCapabilities;
  /** Per-lock ttlMs is not used: the session lease governs. Keys: etcd accepts any bytes. */
  readonly limits = { minTtlMs: 1, maxKeyBytes: 4096 };
  readonly #connection: EtcdConnection;
  readonly #sessions: SessionKeeper;
  readonly #namespace: string;
  readonly #ownsConnection: boolean;
  #closed = false;

  constructor(options: QueueOptions) {
    this.#connection = options.connection;
    this.#sessions = options.sessions;
    this.#namespace = options.namespace;
    this.#ownsConnection = options.ownsConnection;
  }

  async attempt(
    request: LockRequest,
    ticket: QueueEntry | undefined,
  ): Promise<Attempt<QueueEntry, QueueEntry>> {
    if (this.#closed) throw new ProviderClosedError(BACKEND);
    const prefix = queuePrefix(this.#namespace, request.key);
    // A ticket of a lost session has no key any more (or will not have one once its lease ends).
    let place = ticket && !ticket.session.lost ? ticket : undefined;
    if (ticket && !place) ticket.session.unclaim(ticket.key);
    for (let renewedSession = false; ; renewedSession = true) {
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
        if (error instanceof EtcdLeaseInvalidError && !renewedSession) {
          // The server let the lease go before our loss timer said so (revoked by an operator, say).
          session.lose(new Error(`etcd session lease ${session.hex} was not found at the server`));
          session.unclaim(key);
          place = undefined;
          continue;
        }
        // A fresh key may have been created before the answer was lost: leave no phantom in the queue.
        if (!place) {
          await this.#remove({ key, revision: 0n, session }, 'remove the key of a failed attempt').catch(
            () => {},
          );
        }
        throw this.#connection.unavailable('enqueue', error);
      }
    }
  }

  async waitForChange(
    request: LockRequest,
    ticket: QueueEntry | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    if (!ticket || ticket.session.lost || request.signal.aborted) return;
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, request.key));
    // Go's waitDeletes: only the key just ahead matters, so a release wakes one waiter, not the herd.
    const ahead = await this.#connection.call('find the contender ahead', (options) =>
      this.#connection.client.kv.range(
        {
          key: start,
          range_end: end,
          max_create_revision: String(ticket.revision - 1n),
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

  async withdraw(_request: LockRequest, ticket: QueueEntry): Promise<void> {
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

  /** Go's Election.Observe: the current holder, then every change, from a watch on the prefix. */
  async *watchHolder(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null> {
    const { start, end } = Range.prefix(queuePrefix(this.#namespace, key));
    let changed = false;
    let wake: (() => void) | undefined;
    const onChange = () => {
      changed = true;
      wake?.();
    };
    let watch: RangeWatch | undefined;
    signal.addEventListener('abort', onChange, { once: true });
    try {
      let last: HolderInfo | null | undefined;
      while (!signal.aborted) {
        changed = false;
        const response = await this.#connection.call('read the holder', (options) =>
          this.#connection.client.kv.range(ownerRange(start, end), options),
        );
        watch ??= this.#watch(
          this.#connection.client
            .watch()
            .inRange({ start, end })
            .startRevision(String(BigInt(response.header.revision) + 1n)),
          onChange,
        );
        const owner = response.kvs[0];
        const current = owner ? toHolder(owner) : null;
        if (last === undefined || !sameHolder(last, current)) {
          last = current;
          yield current;
        }
        if (!changed && !signal.aborted) {
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
        if (watch.failure) throw this.#connection.unavailable('watch the holder', watch.failure);
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
   * Deletes a queue key if it is still the one with `entry.revision` (any revision when 0). When the
   * cluster does not confirm the delete, the key might stay and block the queue for as long as the
   * session lives, so the session is given up: its lease then expires (or is revoked) and takes the
   * key with it within one session ttl. Its other locks are reported lost — they could not be
   * vouched for through an unreachable cluster anyway.
   */
  async #remove(entry: QueueEntry, what: string): Promise<void> {
    const { session } = entry;
    try {
      if (session.lost) return;
      const key = Buffer.from(entry.key);
      await this.#connection.call(what, (options) =>
        this.#connection.client.kv.txn(
          {
            compare:
              entry.revision === 0n
                ? []
                : [{ key, target: 'Create', result: 'Equal', create_revision: String(entry.revision) }],
            success: [{ request_delete_range: { key } }],
          },
          options,
        ),
      );
    } catch (error) {
      session.lose(new Error(`could not confirm that ${entry.key} was deleted: ${errorMessage(error)}`));
      throw this.#connection.unavailable(what, error);
    } finally {
      session.unclaim(entry.key);
    }
  }

  /** Resolves once `key` is deleted (at `revision` or later), after `maxWaitMs`, or when a signal aborts. */
  #untilDeleted(key: Buffer, revision: string, maxWaitMs: number, signals: AbortSignal[]): Promise<void> {
    return new Promise((resolve) => {
      const watch = this.#watch(
        this.#connection.client.watch().key(key).startRevision(revision).only('delete'),
        () => done(),
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

  /**
   * Starts a watch that calls `onEvent` on every event and on failure. A watch the server cancels
   * (e.g. its start revision was compacted) reports `failure`; etcd3 re-establishes broken streams
   * itself and replays from the last revision seen.
   */
  #watch(builder: WatchBuilder, onEvent: () => void): RangeWatch {
    const watcher = builder.watcher();
    const watch: RangeWatch = { failure: undefined, cancel: () => {} };
    const onError = (error: unknown) => {
      watch.failure = error;
      onEvent();
    };
    // Progress notifications (etcd3 asks for them) arrive as responses without events.
    const onData = (response: IWatchResponse) => {
      if (response.events.length > 0) onEvent();
    };
    // etcd3 emits 'error' on the watcher; an EventEmitter without an 'error' listener would throw.
    watcher.on('error', () => {});
    watcher.on('data', onData).on('error', onError);
    watch.cancel = () => {
      watcher.off('data', onData).off('error', onError);
      watcher.cancel().catch(() => {});
    };
    return watch;
  }
}

interface RangeWatch {
  failure: unknown;
  cancel(): void;
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
