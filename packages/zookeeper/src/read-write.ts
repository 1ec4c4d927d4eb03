import type { Attempt, Capabilities, ReadWriteDriver, ReadWriteHolder, ReadWriteRequest } from '@dlock/core';
import { READ_NAME, WRITE_NAME, lockPath, queueOrder } from './layout.js';
import { QueueDriver, type QueueNode, childrenOf, describeNode } from './nodes.js';

export const zooKeeperReadWriteCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    "Curator's InterProcessReadWriteLock layout: a read or write lease is an ephemeral node and lives as long " +
    'as its ZooKeeper session (ttlMs plays no part); its signal aborts when the client notices the session is ' +
    "in doubt (at once on a disconnect under onDisconnect 'abort', the default). A process paused past the " +
    'session timeout cannot notice in time: the server deletes its node and lets the next lease in while the ' +
    "paused process still believes it holds. Tokens are the nodes' czxids: a write token is larger than the " +
    'token of every lease of the name granted before it, and a read token is larger than the token of every ' +
    'write granted before it, so a resource that remembers the largest write token it has seen can refuse a ' +
    'write, or a read, carrying a smaller token (readers holding together are not ordered among themselves).',
};

const NODE_NAMES = [READ_NAME, WRITE_NAME] as const;

function isWriteNode(name: string): boolean {
  // Curator's readLockPredicate tests `contains(WRITE_LOCK_NAME)`.
  return name.includes(WRITE_NAME);
}

/**
 * Read-write locks in Apache Curator's `InterProcessReadWriteLock` layout, so dlock and Curator
 * exclude each other on one path:
 *
 *   <root>/<encoded name>/_c_<uuid>-__READ__<seq>   a reader
 *   <root>/<encoded name>/_c_<uuid>-__WRIT__<seq>   a writer
 *
 * One queue of EPHEMERAL_SEQUENTIAL nodes ordered by sequence. A writer holds when its node is first; a
 * reader holds when no writer's node is ahead of it. So readers that arrive after a waiting writer
 * queue behind it (no writer starvation). A waiter watches only the node whose deletion can admit it:
 * a writer the node just ahead, a reader the last writer ahead (Curator's reader watches the first
 * writer ahead, which wakes it once per writer; both are correct together). Everything else — protected
 * names, unknown outcomes, waiting, release and withdraw — is the lock's (nodes.ts).
 */
export class ZooKeeperReadWriteDriver extends QueueDriver implements ReadWriteDriver<QueueNode, QueueNode> {
  readonly capabilities = zooKeeperReadWriteCapabilities;

  /**
   * One attempt: creates our node under its protected name (or finds it again by that name after a
   * lost reply), then reads our node (czxid, and the watch that tells a holder its node was deleted)
   * and the queue. Returns 'unknown' whenever a transient failure may leave our node in place.
   */
  attempt(request: ReadWriteRequest, ticket: QueueNode | undefined): Promise<Attempt<QueueNode, QueueNode>> {
    const name = request.mode === 'write' ? WRITE_NAME : READ_NAME;
    const blocker =
      request.mode === 'write'
        ? (ahead: readonly string[]) => ahead.at(-1)
        : (ahead: readonly string[]) => ahead.filter(isWriteNode).at(-1);
    return this.attemptInQueue(request, ticket, { name, names: NODE_NAMES, label: request.mode }, blocker);
  }

  /** The holders: the writer at the head of the queue, or the readers ahead of the first writer. */
  async holders(key: string): Promise<ReadWriteHolder[]> {
    const { calls } = await this.session();
    const parent = lockPath(this.root, key);
    const queue = queueOrder(await childrenOf(calls, parent), NODE_NAMES);
    const firstWriter = queue.findIndex(isWriteNode);
    const holding =
      firstWriter === 0 ? queue.slice(0, 1) : queue.slice(0, firstWriter < 0 ? undefined : firstWriter);
    const described = await Promise.all(holding.map((name) => describeNode(calls, `${parent}/${name}`)));
    return described.flatMap((holder, index) =>
      holder
        ? [
            {
              identity: holder.identity,
              token: holder.token,
              mode: isWriteNode(holding[index] ?? '') ? ('write' as const) : ('read' as const),
            },
          ]
        : [],
    );
  }
}
