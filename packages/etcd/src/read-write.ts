import { randomInt } from 'node:crypto';
import type {
  Attempt,
  Capabilities,
  ReadWriteDriver,
  ReadWriteHolder,
  ReadWriteMode,
  ReadWriteRequest,
} from '@dlock/core';
import { Range } from 'etcd3';
import { entryIdentity } from './layout.js';
import {
  type QueueEntry,
  type QueueTicket,
  SessionKeyDriver,
  createRevision,
  startsWith,
} from './session-keys.js';

/*
 * The key layout of etcd's client/v3/experimental/recipes RWMutex (`NewRWMutex(session, name)`):
 *
 *   <readWriteNamespace><name>/read/<number>     a reader      value: the holder's identity
 *   <readWriteNamespace><name>/write/<number>    a writer
 *
 * Every key is created if absent on its provider's session lease; `<number>` is a 19-digit decimal like
 * Go's time.Now().UnixNano(). Order is by create revision: a reader holds once no key under
 * `<name>/write` is older than it (it waits on the last such writer), a writer once no key under
 * `<name>/` is older than it (it waits on the key just before it).
 */

/** `<ns><name>/`: Go's `pfx` (NewRWMutex appends the slash). */
export function readWritePrefix(namespace: string, name: string): string {
  return `${namespace}${name}/`;
}

/** Go's `pfx + "read"` or `pfx + "write"`: what a key of `mode` is created under. */
export function readWriteSidePrefix(namespace: string, name: string, mode: ReadWriteMode): string {
  return `${readWritePrefix(namespace, name)}${mode}`;
}

let lastKeyNumber = 0n;

/**
 * A key number in Go's format (`%v` of UnixNano): this process's clock in ns, with a random sub-ms
 * part so that two clients do not pick the same number in the same millisecond, and strictly
 * increasing within the process, so that no two requests of one session share a key. Ordering never
 * depends on it (create revisions decide); a number taken by another client's key is detected by the
 * key's lease and replaced (see SessionKeys.enqueue).
 */
export function nextKeyNumber(): string {
  const candidate = BigInt(Date.now()) * 1_000_000n + BigInt(randomInt(1_000_000));
  lastKeyNumber = candidate > lastKeyNumber ? candidate : lastKeyNumber + 1n + BigInt(randomInt(1_000));
  return lastKeyNumber.toString();
}

export const etcdReadWriteCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    'Readers share and a writer excludes everyone while the etcd cluster keeps a quorum (every request is ' +
    'linearizable) and each holder notices in time that its session was lost; a lease lives as long as ' +
    'its provider keeps the session lease alive (the per-lease ttlMs is not used), and its signal aborts a ' +
    'fifth of the session ttl before the server can expire it, so a holder paused longer than that (GC, ' +
    'SIGSTOP, swap) can act after others were let in. Tokens are create revisions: a write token is ' +
    'larger than every token of a lease granted before it, read or write; a read token is larger than ' +
    'every earlier write token, so a resource that has seen a read with token r may reject writes with ' +
    'tokens below r (their writer let go before that read was granted). Read tokens say nothing about ' +
    'the order of readers among themselves. Names nest as in Go: a writer of "a" also waits for the ' +
    'keys of "a/b".',
};

/**
 * Go's recipes.RWMutex as a dlock driver (issue 15): a reader waits on the last writer before it, a
 * writer on the key just before it, so readers that arrive after a waiting writer queue behind it
 * (no writer starvation). One Txn per attempt, one range read and one watch per wait.
 */
export class EtcdReadWriteDriver
  extends SessionKeyDriver<ReadWriteRequest, QueueTicket>
  implements ReadWriteDriver<QueueEntry, QueueTicket>
{
  readonly capabilities = etcdReadWriteCapabilities;
  protected readonly leaseName = 'read-write lease';

  async attempt(
    request: ReadWriteRequest,
    ticket: QueueTicket | undefined,
  ): Promise<Attempt<QueueEntry, QueueTicket>> {
    this.checkOpen();
    const side = readWriteSidePrefix(this.namespace, request.key, request.mode);
    const blockers = this.#blockers(request);
    return this.keys.enqueue(
      ticket,
      () => `${side}/${nextKeyNumber()}`,
      (key, session) => this.keys.enqueueAhead(key, request.identity, session, blockers),
    );
  }

  async waitForChange(
    request: ReadWriteRequest,
    ticket: QueueTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    await this.keys.untilAheadDeleted(this.#blockers(request), request, ticket, maxWaitMs);
  }

  /**
   * Who holds `key` now, by the recipe's rules over all its keys in create-revision order: the first
   * writer, if nothing is older; readers older than every writer. Keys of Go's RWMutex have an empty
   * value; for them the key itself stands in for the identity.
   */
  async holders(key: string): Promise<ReadWriteHolder[]> {
    const { start, end } = Range.prefix(readWritePrefix(this.namespace, key));
    const response = await this.connection.call('read the read-write holders', (options) =>
      this.connection.client.kv.range(
        { key: start, range_end: end, sort_target: 'Create', sort_order: 'Ascend' },
        options,
      ),
    );
    const read = Buffer.from(readWriteSidePrefix(this.namespace, key, 'read'));
    const write = Buffer.from(readWriteSidePrefix(this.namespace, key, 'write'));
    const holders: ReadWriteHolder[] = [];
    let anyBefore = false;
    for (const kv of response.kvs) {
      const holder = { identity: entryIdentity(kv), token: createRevision(kv) };
      if (startsWith(kv.key, write)) {
        if (!anyBefore) holders.push({ ...holder, mode: 'write' });
        break;
      }
      if (startsWith(kv.key, read)) holders.push({ ...holder, mode: 'read' });
      anyBefore = true;
    }
    return holders;
  }

  /** What blocks a request: for a reader every key under `<name>/write`, for a writer every key of the name. */
  #blockers(request: ReadWriteRequest) {
    return Range.prefix(
      request.mode === 'write'
        ? readWritePrefix(this.namespace, request.key)
        : readWriteSidePrefix(this.namespace, request.key, 'write'),
    );
  }
}
