import {
  type Attempt,
  type Capabilities,
  KeyConflictError,
  MAX_SEMAPHORE_LIMIT,
  type PermitHolder,
  type PermitRequest,
  type SemaphoreDriver,
  SemaphoreLimitMismatchError,
} from '@dlock/core';
import { type IKeyValue, Range } from 'etcd3';
import {
  type Enqueued,
  type QueueEntry,
  type QueueTicket,
  SessionKeyDriver,
  createRevision,
  startsWith,
} from './session-keys.js';
import type { Session } from './session.js';
import type { WatchSpec } from './watch.js';

/*
 * The semaphore's key layout (README "Semaphores"):
 *
 *   <semaphoreNamespace><escaped name>/<limit>/<session lease id in hex>[-n]    value: <permits>:<identity>
 *
 * - Every request puts one key, on its provider's session lease, under the name's *limit prefix*
 *   `<ns><escaped name>/<limit>/`. Its place in line is the key's create revision; a key is granted
 *   while the permits of every key up to and including it (by create revision) fit in the limit.
 * - The limit is part of the key: the enqueue Txn creates a key only while no key of another limit
 *   exists under the name (range compares), so the limit is stored while anyone holds or waits, and
 *   a request with another limit gets SemaphoreLimitMismatchError without leaving anything behind.
 * - Names are escaped (`%` → `%25`, `/` → `%2F`) so that no semaphore's keys fall under another's
 *   prefix: `a` and `a/b` are separate semaphores (unlike Go's mutex, where they share a queue).
 */

/** The separator that ends the permit count in a key's value. */
const VALUE_SEPARATOR = ':';

/** `<ns><escaped name>/`: every key of the semaphore `name`, whatever its limit. */
export function semaphorePrefix(namespace: string, name: string): string {
  return `${namespace}${name.replaceAll('%', '%25').replaceAll('/', '%2F')}/`;
}

/** `<ns><escaped name>/<limit>/`: the queue of the semaphore `name` while it is in use with `limit`. */
export function permitQueuePrefix(namespace: string, name: string, limit: number): string {
  return `${semaphorePrefix(namespace, name)}${limit}/`;
}

/** The value of a permit key: how many permits it takes, and who holds it. */
export function permitValue(permits: number, identity: string): string {
  return `${permits}${VALUE_SEPARATOR}${identity}`;
}

/**
 * A queue key's permits and holder. A value dlock did not write (an operator's `etcdctl put`, say)
 * counts as one permit held by the key itself, as a foreign key counts as one contender in a mutex.
 */
function decodePermits(kv: IKeyValue, limit: number): { permits: number; identity: string } {
  const value = kv.value.toString('utf8');
  const separator = value.indexOf(VALUE_SEPARATOR);
  const count = separator > 0 ? value.slice(0, separator) : '';
  const permits = /^\d{1,6}$/.test(count) ? Number(count) : 0;
  if (permits >= 1 && permits <= limit) return { permits, identity: value.slice(separator + 1) };
  return { permits: 1, identity: value === '' ? kv.key.toString('utf8') : value };
}

/**
 * The limit a key under the semaphore's prefix was written with. Throws KeyConflictError for a key
 * that does not follow the layout: it never goes away by itself the way a permit does, and would
 * otherwise make every request of the name fail as a limit mismatch.
 */
function limitOf(name: string, prefix: string, kv: IKeyValue): number {
  const key = kv.key.toString('utf8');
  const match = /^(\d{1,6})\//.exec(key.slice(prefix.length));
  const limit = match ? Number(match[1]) : 0;
  if (limit < 1 || limit > MAX_SEMAPHORE_LIMIT) {
    throw new KeyConflictError(
      name,
      key,
      kv.value.toString('utf8'),
      'it is not a dlock permit key (<name>/<limit>/<lease hex>); delete it to use this semaphore',
    );
  }
  return limit;
}

export const etcdSemaphoreCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    'At most `limit` permits are held while the etcd cluster keeps a quorum (every request is ' +
    'linearizable) and each holder notices in time that its session was lost. A permit lives as long as ' +
    'its provider keeps the session lease alive; the per-permit ttlMs is not used. The lease signal aborts ' +
    'a fifth of the session ttl before the server can expire the lease, so a holder paused longer than ' +
    'that (GC, SIGSTOP, swap) can act after its permit has passed on. Tokens are create revisions: etcd ' +
    'admits permits in create-revision order, so every permit admitted later has a larger token; a ' +
    'holder woken by the same release as a later-created one may learn of its permit a moment after it. ' +
    'A permit key deleted by an operator is noticed at the next extend.',
};

/** A place in a semaphore's queue, with the watch that can wake it. */
export interface PermitTicket extends QueueTicket {
  /** What to watch for the change that could admit this request (set on a busy answer). */
  readonly wake?: WatchSpec;
}

/**
 * A counting semaphore on the provider's session lease (issue 14), with no herd: the first waiter
 * whose keys ahead all hold permits watches the queue for deletes (any release may admit it); every
 * other waiter watches only the key just ahead of it, which is touched when it is admitted or deleted
 * when it leaves. Waiting, retries, timeouts, renewal and the lost-signal are core's.
 */
export class EtcdSemaphoreDriver
  extends SessionKeyDriver<PermitRequest, PermitTicket>
  implements SemaphoreDriver<QueueEntry, PermitTicket>
{
  readonly capabilities = etcdSemaphoreCapabilities;
  protected readonly leaseName = 'permit';

  async attempt(
    request: PermitRequest,
    ticket: PermitTicket | undefined,
  ): Promise<Attempt<QueueEntry, PermitTicket>> {
    this.checkOpen();
    const queue = permitQueuePrefix(this.namespace, request.key, request.limit);
    const attempt = await this.keys.enqueue<PermitTicket>(
      ticket,
      (session) => session.claim(queue),
      (key, session) => this.#enqueue(request, key, session),
    );
    // A request that waited may have a successor watching its key: tell it (see #touch).
    if (attempt.outcome === 'granted' && ticket) this.#touch(attempt.grant.handle);
    return attempt;
  }

  async waitForChange(
    request: PermitRequest,
    ticket: PermitTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    // Without a watch (an unknown outcome), the next attempt comes at once, paced by core's back-off.
    if (!ticket?.wake || ticket.session.lost || request.signal.aborted) return;
    await this.keys.untilChanged(ticket.wake, maxWaitMs, [request.signal, ticket.session.signal]);
  }

  /** The keys that hold permits now, oldest first (the limit is read from the keys themselves). */
  async holders(key: string): Promise<PermitHolder[]> {
    const prefix = semaphorePrefix(this.namespace, key);
    const { start, end } = Range.prefix(prefix);
    const response = await this.connection.call('read the permit holders', (options) =>
      this.connection.client.kv.range(
        { key: start, range_end: end, sort_target: 'Create', sort_order: 'Ascend' },
        options,
      ),
    );
    const oldest = response.kvs[0];
    if (!oldest) return [];
    const limit = limitOf(key, prefix, oldest);
    const queue = Buffer.from(`${prefix}${limit}/`);
    const holders: PermitHolder[] = [];
    let held = 0;
    for (const kv of response.kvs) {
      if (!startsWith(kv.key, queue)) continue;
      const { permits, identity } = decodePermits(kv, limit);
      held += permits;
      if (held > limit) break;
      holders.push({ identity, token: createRevision(kv), permits });
    }
    return holders;
  }

  /**
   * One Txn: `if key absent and no key of another limit exists under the name then put(key) ; read
   * the name's keys by create revision`, else the same read. Granted when the permits of every key up
   * to this one fit in the limit; FIFO without barging, since a key counts every key ahead of it,
   * granted or not. Answers undefined when the key exists on another lease (an operator's).
   */
  async #enqueue(
    request: PermitRequest,
    key: string,
    session: Session,
  ): Promise<Enqueued<PermitTicket> | undefined> {
    const { limit } = request;
    const prefix = semaphorePrefix(this.namespace, request.key);
    const name = Range.prefix(prefix);
    const queue = Range.prefix(`${prefix}${limit}/`);
    const keyBytes = Buffer.from(key);
    const read = {
      request_range: { key: name.start, range_end: name.end, sort_target: 'Create', sort_order: 'Ascend' },
    } as const;
    const response = await this.keys.createIfAbsent(
      keyBytes,
      permitValue(request.permits, request.identity),
      session,
      {
        // No key of another limit: [name, queue) and [end of queue, end of name) are empty.
        compare: [
          { key: name.start, range_end: queue.start, target: 'Create', result: 'Equal', create_revision: 0 },
          { key: queue.end, range_end: name.end, target: 'Create', result: 'Equal', create_revision: 0 },
        ],
        success: [read],
        failure: [read],
      },
    );
    const kvs = response.responses[response.succeeded ? 1 : 0]?.response_range.kvs ?? [];
    let revision = BigInt(response.header.revision);
    if (!response.succeeded) {
      const existing = kvs.find((kv) => kv.key.equals(keyBytes));
      if (!existing) throw this.#mismatch(request, prefix, queue, kvs);
      if (existing.lease !== session.id) return undefined;
      revision = createRevision(existing);
    }
    // The permits of every key ahead (by create revision), and the key just ahead.
    let ahead = 0;
    let predecessor: IKeyValue | undefined;
    for (const kv of kvs) {
      if (createRevision(kv) >= revision) break;
      if (!startsWith(kv.key, queue.start)) continue;
      ahead += decodePermits(kv, limit).permits;
      predecessor = kv;
    }
    const entry: QueueEntry = { key, revision, session };
    const startRevision = BigInt(response.header.revision) + 1n;
    // Everyone ahead holds permits: any release may admit this request, so it watches the queue for
    // deletes. Otherwise only the key just ahead matters: it is deleted when it leaves, and touched
    // when it is admitted, which is when this request may be admitted too or becomes the first waiter.
    const wake: WatchSpec =
      ahead <= limit || !predecessor
        ? { key: queue.start, rangeEnd: queue.end, startRevision, onlyDeletes: true }
        : { key: predecessor.key, startRevision };
    return { entry, granted: ahead + request.permits <= limit, ticket: { ...entry, wake } };
  }

  /** The error for an enqueue refused because keys of another limit exist under the name. */
  #mismatch(request: PermitRequest, prefix: string, queue: Range, kvs: IKeyValue[]): Error {
    const other = kvs.find((kv) => !startsWith(kv.key, queue.start));
    if (!other) {
      return new Error(`etcd refused the enqueue Txn for semaphore "${request.key}" without a reason`);
    }
    return new SemaphoreLimitMismatchError(request.key, request.limit, limitOf(request.key, prefix, other));
  }

  /**
   * Marks a key that was admitted after waiting: a put that keeps its value and lease (etcd's
   * ignore_value / ignore_lease) changes only its mod revision, which wakes the waiter behind it, if
   * any. Compared on the create revision, so a late touch never recreates a released key. Not awaited:
   * the grant does not depend on it, and a lost touch costs that waiter one fallback re-check.
   */
  #touch(entry: QueueEntry): void {
    const key = Buffer.from(entry.key);
    this.connection
      .call('mark the permit admitted', (options) =>
        this.connection.client.kv.txn(
          {
            compare: [{ key, target: 'Create', result: 'Equal', create_revision: String(entry.revision) }],
            success: [{ request_put: { key, ignore_value: true, ignore_lease: true } }],
          },
          options,
        ),
      )
      .catch(() => {});
  }
}
