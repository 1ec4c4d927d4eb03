import {
  type Attempt,
  BackendUnavailableError,
  type Capabilities,
  type Grant,
  type ReadWriteDriver,
  type ReadWriteHolder,
  type ReadWriteMode,
  type ReadWriteRequest,
} from '@dlock/core';
import type { Event } from 'node-zookeeper-client';
import { BACKEND, unlessMissing } from './client.js';
import { READ_NAME, WRITE_NAME, lockPath, queueOrder } from './layout.js';
import { MAX_CREATE_ROUNDS, ProtectedNodes, RecipeDriver, RecipeTicket, type WatchPurpose } from './nodes.js';
import type { ZooKeeperSession } from './session.js';

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

/** A read or write request's node between attempts (core's ticket), then the grant's handle. */
class ReadWriteNode extends RecipeTicket {
  readonly node: ProtectedNodes;
  czxid = 0n;

  constructor(
    session: ZooKeeperSession,
    request: ReadWriteRequest,
    readonly parent: string,
    report: (event: Event, purpose: WatchPurpose) => void,
  ) {
    super(session, request.key, report);
    this.node = new ProtectedNodes(parent, request.mode === 'write' ? WRITE_NAME : READ_NAME);
  }

  get mode(): ReadWriteMode {
    return this.node.name === WRITE_NAME ? 'write' : 'read';
  }

  protected ownPaths(): string[] {
    return this.node.paths;
  }

  nodes(): ProtectedNodes[] {
    return [this.node];
  }

  parents(): string[] {
    return [this.parent];
  }
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
 * writer ahead, which wakes it once per writer; both are correct together).
 */
export class ZooKeeperReadWriteDriver
  extends RecipeDriver<ReadWriteNode>
  implements ReadWriteDriver<ReadWriteNode, ReadWriteNode>
{
  readonly capabilities = zooKeeperReadWriteCapabilities;

  /**
   * One attempt: creates our node under its protected name (or finds it again by that name after a
   * lost reply), then reads our node (czxid, and the watch that tells a holder its node was deleted)
   * and the queue. Returns 'unknown' whenever a transient failure may leave our node in place.
   */
  async attempt(
    request: ReadWriteRequest,
    ticket: ReadWriteNode | undefined,
  ): Promise<Attempt<ReadWriteNode, ReadWriteNode>> {
    const make = (session: ZooKeeperSession) =>
      new ReadWriteNode(session, request, lockPath(this.root, request.key), this.report);
    return this.attemptWith(ticket, make, (current) => this.#attemptWith(current, request));
  }

  waitForChange(
    request: ReadWriteRequest,
    ticket: ReadWriteNode | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    const predecessor = ticket?.predecessor;
    if (!ticket || ticket.held || predecessor === undefined) return Promise.resolve();
    // getData rather than exists: a node already gone leaves no watch behind.
    return this.waitForWatch(
      request,
      ticket,
      maxWaitMs,
      async () =>
        (await unlessMissing(
          ticket.session.calls.getData(predecessor, ticket.watch('data', predecessor)),
        )) === undefined,
    );
  }

  /** The holders: the writer at the head of the queue, or the readers ahead of the first writer. */
  async holders(key: string): Promise<ReadWriteHolder[]> {
    const session = await this.locks.session();
    const parent = lockPath(this.root, key);
    const queue = queueOrder(await this.children(session, parent), NODE_NAMES);
    const firstWriter = queue.findIndex(isWriteNode);
    const holding =
      firstWriter === 0 ? queue.slice(0, 1) : queue.slice(0, firstWriter < 0 ? undefined : firstWriter);
    const described = await Promise.all(holding.map((name) => this.describe(session, `${parent}/${name}`)));
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

  async #attemptWith(
    ticket: ReadWriteNode,
    request: ReadWriteRequest,
  ): Promise<Attempt<ReadWriteNode, ReadWriteNode>> {
    const { session, parent, node } = ticket;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      await this.confirmNodes(session, node);
      if (node.missing > 0) {
        // A request given up on must not queue any more: core withdraws what the ticket holds.
        if (request.signal.aborted) return { outcome: 'busy', ticket };
        await this.createNodes(
          session,
          [{ path: parent }],
          node,
          Buffer.from(request.identity, 'utf8'),
          () => {},
        );
        ticket.czxid = 0n;
      }
      const path = node.paths[0] as string;
      const [own, children] = await Promise.all([
        ticket.czxid === 0n ? this.describe(session, path, ticket) : undefined,
        this.children(session, parent),
      ]);
      if (own) ticket.czxid = own.token;
      const queue = queueOrder(children, NODE_NAMES);
      const index = ticket.czxid === 0n ? -1 : queue.indexOf(path.slice(parent.length + 1));
      if (index >= 0) {
        const ahead = queue.slice(0, index);
        const blocker = ticket.mode === 'write' ? ahead.at(-1) : ahead.filter(isWriteNode).at(-1);
        if (blocker === undefined) return { outcome: 'granted', grant: ticket.grant(ticket.czxid) };
        ticket.predecessor = `${parent}/${blocker}`;
        return { outcome: 'busy', ticket };
      }
      // Our node is gone (an operator deleted it): take a new place in line.
      node.paths = [];
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the ${request.mode} node for "${request.key}" kept disappearing under ${parent}`,
    );
  }
}
