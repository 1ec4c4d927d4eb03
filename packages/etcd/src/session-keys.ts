import {
  type Attempt,
  type Capabilities,
  type Grant,
  type LeaseDriver,
  LockLostError,
  type LockRequest,
  ProviderClosedError,
  isTransient,
} from '@dlock/core';
import {
  EtcdLeaseInvalidError,
  type ICompare,
  type IKeyValue,
  type IRequestOp,
  type ITxnResponse,
} from 'etcd3';
import { BACKEND, type EtcdConnection } from './connection.js';
import type { Session, SessionKeeper } from './session.js';
import type { WatchHub, WatchSpec } from './watch.js';

/*
 * What every etcd primitive does with its keys. A contender (a lock request, a permit request, a read
 * or write request) is one key attached to its provider's session lease, created if absent; its place
 * in line is the key's create revision; it waits by watching a key (or range) whose change could let
 * it in; it leaves by deleting that key at that create revision. The mutex and election
 * (queue.ts), the semaphore (semaphore.ts) and the read-write lock (read-write.ts) differ only in
 * their key names and in which keys ahead of a contender block it.
 */

/**
 * What an enqueue sent: the key (claimed for this request within its session) and the session lease
 * it was attached to. It is the ticket of a place in line, and of an enqueue whose reply was lost
 * (`revision` then unknown): re-sending the same create-if-absent Txn adopts the key if the lost one
 * created it, and a withdraw deletes it by name.
 */
export interface QueueTicket {
  /** The full etcd key. */
  readonly key: string;
  /** Its create revision, or undefined when the enqueue's reply was lost. */
  readonly revision: bigint | undefined;
  readonly session: Session;
}

/** One contender's key: its place in line while waiting, its proof of ownership once granted. */
export interface QueueEntry extends QueueTicket {
  /** Its create revision: the place in line, and the fencing token once granted. */
  readonly revision: bigint;
}

/** A key range [start, end), as etcd3's `Range.prefix()` gives it. */
export interface KeyRange {
  readonly start: Buffer;
  readonly end: Buffer;
}

/** What an enqueue Txn found: the entry, whether it is granted, and the ticket to keep if it is not. */
export interface Enqueued<Ticket extends QueueTicket = QueueTicket> {
  readonly entry: QueueEntry;
  readonly granted: boolean;
  /** The place in line when not granted; default: the entry itself. */
  readonly ticket?: Ticket;
}

/**
 * How many names an enqueue tries when the one it picked is someone else's key. Only the read-write
 * lock's names (Go's `<pfx>/read/<number>`) can be taken by another client, and only by a Go client
 * that picked the same 19-digit number.
 */
const MAX_NAMES = 5;

export const sessionEnded = (session: Session) =>
  `its etcd session lease ${session.hex} was lost (${errorMessage(session.signal.reason)})`;

/** The oldest key of a range (lowest create revision), read alongside an enqueue. */
export function oldestIn(range: KeyRange, keysOnly = false) {
  return {
    key: range.start,
    range_end: range.end,
    sort_target: 'Create',
    sort_order: 'Ascend',
    limit: 1,
    ...(keysOnly ? { keys_only: true } : {}),
  } as const;
}

/** A grant on the session: its key's create revision as the token, valid until the session is lost. */
export function sessionGrant(entry: QueueEntry): Grant<QueueEntry> {
  return {
    token: entry.revision,
    validUntil: Number.POSITIVE_INFINITY,
    lost: entry.session.grantLoss(),
    handle: entry,
  };
}

/** Whether `key` starts with `prefix`. */
export function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.subarray(0, prefix.length).equals(prefix);
}

/** The create revision (the place in line) of a key: a decimal int64 from etcd, kept as a BigInt. */
export function createRevision(kv: IKeyValue): bigint {
  return BigInt(kv.create_revision);
}

/**
 * The key operations of one connection, on its sessions and its watch stream. Every request it sends
 * is idempotent (create-if-absent, compare-revision-then-delete, reads), so the connection may retry
 * any of them on another member, and core may retry attempts, withdraws and releases after a
 * transient failure.
 */
export class SessionKeys {
  readonly #connection: EtcdConnection;
  readonly #sessions: SessionKeeper;
  readonly #watches: WatchHub;

  constructor(connection: EtcdConnection, sessions: SessionKeeper, watches: WatchHub) {
    this.#connection = connection;
    this.#sessions = sessions;
    this.#watches = watches;
  }

  /**
   * One attempt on the provider's session: re-sends the ticket's key (adopting it if a lost enqueue
   * created it) or claims a new one, and runs `send` with it. `send` answers undefined when the key's
   * name belongs to another session's key: a new name is claimed. A lease the server no longer has
   * (revoked by an operator, say) costs the session, and the enqueue is tried once more on a new one.
   * A transient failure is an unknown outcome whose ticket names the key: it never costs the session.
   * A granted entry holds until its session is lost (`validUntil` Infinity, `lost` the session's
   * signal). Throws what `send` throws (mapped to typed errors) otherwise.
   */
  async enqueue<Ticket extends QueueTicket = QueueTicket>(
    ticket: QueueTicket | undefined,
    claim: (session: Session) => string,
    send: (key: string, session: Session) => Promise<Enqueued<Ticket> | undefined>,
  ): Promise<Attempt<QueueEntry, Ticket>> {
    // A ticket of a lost session has no key any more (or will not have one once its lease is revoked
    // in the background, or expires).
    let place = ticket && !ticket.session.lost ? ticket : undefined;
    if (ticket && !place) ticket.session.unclaim(ticket.key);
    let renewedSession = false;
    for (let names = 1; ; names++) {
      // A failed grant applied nothing that matters: a lease without keys expires by itself.
      const session = place?.session ?? this.#sessions.usable ?? (await this.#sessions.obtain());
      const key = place?.key ?? claim(session);
      let sent: Enqueued<Ticket> | undefined;
      try {
        sent = await send(key, session);
      } catch (error) {
        if (error instanceof EtcdLeaseInvalidError) {
          // The server no longer has the lease and rejected the whole Txn.
          session.lose(new Error(`etcd session lease ${session.hex} was not found at the server`));
          session.unclaim(key);
          place = undefined;
          if (!renewedSession) {
            renewedSession = true;
            continue;
          }
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
        // (A ticket type's own fields are optional: what is known after a lost reply is the key.)
        const unknown = { key, session, revision: place?.revision } as Ticket;
        return { outcome: 'unknown', ticket: unknown, cause: failure };
      }
      if (sent?.granted) return { outcome: 'granted', grant: sessionGrant(sent.entry) };
      if (sent) return { outcome: 'busy', ticket: sent.ticket ?? (sent.entry as Ticket) };
      session.unclaim(key);
      place = undefined;
      if (names >= MAX_NAMES) {
        throw this.#connection.unavailable(
          'enqueue',
          new Error(`${MAX_NAMES} key names in a row were taken by other clients' keys (last: ${key})`),
        );
      }
    }
  }

  /**
   * Go's create-if-absent enqueue in one Txn: creates `key` with `value` on the session lease unless it
   * exists, and reads it and the oldest key of `blockers` at the same revision. The entry is granted
   * when no key of `blockers` is older than it (for a mutex or a writer, `blockers` is the whole
   * queue, which includes the key itself). Answers undefined when `key` exists on another lease: it is
   * not this request's key, whatever its name.
   */
  async enqueueAhead(
    key: string,
    value: string,
    session: Session,
    blockers: KeyRange,
  ): Promise<Enqueued | undefined> {
    const keyBytes = Buffer.from(key);
    const oldest: IRequestOp = { request_range: oldestIn(blockers, true) };
    const response = await this.createIfAbsent(keyBytes, value, session, {
      success: [oldest],
      failure: [{ request_range: { key: keyBytes, keys_only: true } }, oldest],
    });
    let revision = BigInt(response.header.revision);
    if (!response.succeeded) {
      const existing = response.responses[0]?.response_range.kvs[0];
      if (!existing) throw new Error(`etcd answered the enqueue Txn for ${key} without the key`);
      if (existing.lease !== session.id) return undefined;
      revision = createRevision(existing);
    }
    // Both branches answer with the oldest blocker second (after the put, or after the key's read).
    const first = response.responses[1]?.response_range.kvs[0];
    return {
      entry: { key, revision, session },
      granted: first === undefined || createRevision(first) >= revision,
    };
  }

  /**
   * Sends `if create_revision(key) == 0 and every extra compare holds then put(key, value, session
   * lease) + then-reads else else-reads`. The put is always the first response of the success branch.
   */
  createIfAbsent(
    key: Buffer,
    value: string,
    session: Session,
    ops: { compare?: ICompare[]; success: IRequestOp[]; failure: IRequestOp[] },
  ): Promise<ITxnResponse> {
    return this.#connection.call('enqueue', (options) =>
      this.#connection.client.kv.txn(
        {
          compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }, ...(ops.compare ?? [])],
          success: [{ request_put: { key, value: Buffer.from(value), lease: session.id } }, ...ops.success],
          failure: ops.failure,
        },
        options,
      ),
    );
  }

  /**
   * Go's waitDeletes step for `ticket`'s place in line: finds the newest key of `range` created before
   * it (for a mutex, the contender just ahead; for a reader, the last writer before it) and waits
   * until it is deleted, for at most `maxWaitMs`, or until the request or its session ends. Resolves
   * at once when there is no such key (the next attempt is granted), or no place to wait from (an
   * unknown outcome: the next attempt resolves it).
   */
  async untilAheadDeleted(
    range: KeyRange,
    request: LockRequest,
    ticket: QueueTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    const revision = ticket?.revision;
    if (!ticket || revision === undefined || ticket.session.lost || request.signal.aborted) return;
    const signals = [request.signal, ticket.session.signal];
    const ahead = await this.#connection.call('find the contender ahead', (options) =>
      this.#connection.client.kv.range(
        {
          key: range.start,
          range_end: range.end,
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
    const after = BigInt(ahead.header.revision) + 1n;
    await this.untilChanged(
      { key: predecessor.key, startRevision: after, onlyDeletes: true },
      maxWaitMs,
      signals,
    );
  }

  /**
   * Resolves once the watch `spec` reports an event, after `maxWaitMs`, when a signal aborts, or when
   * the watch is cancelled by the server or resumed after a broken stream (the caller then re-checks).
   * The watch is cancelled in every case, so a waiter that leaves leaves no watch behind.
   */
  untilChanged(spec: WatchSpec, maxWaitMs: number, signals: AbortSignal[]): Promise<void> {
    return new Promise((resolve) => {
      const watch = this.#watches.open(spec, () => done());
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
   * A grant's extend: the entry's key must still exist at its create revision (an operator may have
   * deleted it) on a live session. Keys created later have higher revisions, so an entry that still
   * exists is still granted. Rejects LockLostError naming `name` otherwise.
   */
  async confirmHeld(name: string, entry: QueueEntry): Promise<number> {
    if (entry.session.lost) throw new LockLostError(name, sessionEnded(entry.session));
    const current = await this.#connection.call('check the key', (options) =>
      this.#connection.client.kv.range({ key: Buffer.from(entry.key), keys_only: true }, options),
    );
    const kv = current.kvs[0];
    if (!kv || createRevision(kv) !== entry.revision) {
      throw new LockLostError(name, `its etcd key ${entry.key} was deleted (by an operator or lease expiry)`);
    }
    return Number.POSITIVE_INFINITY;
  }

  /** Releases a grant: deletes its key (see `remove`); its session stops tracking its loss. */
  release(grant: Grant<QueueEntry>, what: string): Promise<void> {
    grant.handle.session.forget(grant.lost);
    return this.remove(grant.handle, what);
  }

  /**
   * Deletes a key by what was sent: its name (claimed by this request within its session) and, when
   * known, its create revision, so that a late or repeated delete can never remove a later key of the
   * same name. Idempotent: core retries it after a transient failure, and the key stays claimed until
   * the delete is confirmed. A key of a lost session goes with the session's lease (revoked in the
   * background, or expired), so there is nothing left to send. When the enqueue's reply was lost, only
   * a key on this session's lease is this request's.
   */
  async remove(ticket: QueueTicket, what: string): Promise<void> {
    const { session } = ticket;
    if (session.lost) {
      session.unclaim(ticket.key);
      return;
    }
    const key = Buffer.from(ticket.key);
    let revision = ticket.revision;
    if (revision === undefined) {
      // The enqueue's reply was lost: find out whether it created the key, and at which revision.
      const found = await this.#connection.call(what, (options) =>
        this.#connection.client.kv.range({ key, keys_only: true }, options),
      );
      const kv = found.kvs[0];
      if (kv && kv.lease === session.id) revision = createRevision(kv);
    }
    if (revision !== undefined) {
      const created = String(revision);
      await this.#connection.call(what, (options) =>
        this.#connection.client.kv.txn(
          {
            compare: [{ key, target: 'Create', result: 'Equal', create_revision: created }],
            success: [{ request_delete_range: { key } }],
          },
          options,
        ),
      );
    }
    session.unclaim(ticket.key);
  }
}

/** What the drivers over SessionKeys get from the provider. */
export interface SessionKeyDriverOptions {
  readonly connection: EtcdConnection;
  readonly keys: SessionKeys;
  /** Prepended to every name, as the provider's option for the primitive says. */
  readonly namespace: string;
}

/**
 * What the semaphore and read-write drivers share: leaving (withdraw, release: delete the key at its
 * create revision), extend (the key still exists), and the connection, sessions and watch stream of
 * the mutex driver, which closes them.
 */
export abstract class SessionKeyDriver<Request extends LockRequest, Ticket extends QueueTicket>
  implements LeaseDriver<Request, QueueEntry, Ticket>
{
  readonly backend = BACKEND;
  abstract readonly capabilities: Capabilities;
  /** Per-lease ttlMs is not used: the session lease governs. Keys: etcd accepts any bytes. */
  readonly limits = { minTtlMs: 1, maxKeyBytes: 4096 };
  protected readonly connection: EtcdConnection;
  protected readonly keys: SessionKeys;
  protected readonly namespace: string;
  /** How this primitive's lease is called in error messages ("permit", "read-write lease"). */
  protected abstract readonly leaseName: string;
  #closed = false;

  constructor(options: SessionKeyDriverOptions) {
    this.connection = options.connection;
    this.keys = options.keys;
    this.namespace = options.namespace;
  }

  get address(): string {
    return this.connection.address;
  }

  abstract attempt(request: Request, ticket: Ticket | undefined): Promise<Attempt<QueueEntry, Ticket>>;

  abstract waitForChange(request: Request, ticket: Ticket | undefined, maxWaitMs: number): Promise<void>;

  async withdraw(_request: Request, ticket: Ticket): Promise<void> {
    await this.keys.remove(ticket, `withdraw the request for a ${this.leaseName}`);
  }

  extend(key: string, grant: Grant<QueueEntry>): Promise<number> {
    return this.keys.confirmHeld(key, grant.handle);
  }

  release(_key: string, grant: Grant<QueueEntry>): Promise<void> {
    return this.keys.release(grant, `release the ${this.leaseName}`);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Throws ProviderClosedError once the provider has closed this driver. */
  protected checkOpen(): void {
    if (this.#closed) throw new ProviderClosedError(BACKEND);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
