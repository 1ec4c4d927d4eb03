import { randomUUID } from 'node:crypto';
import {
  type Attempt,
  BackendUnavailableError,
  type Capabilities,
  type Grant,
  type HolderInfo,
  InvalidArgumentError,
  type LockDriver,
  LockLostError,
  type LockRequest,
  pause,
} from '@dlock/core';
import { CreateMode, Event, type Stat } from 'node-zookeeper-client';
import { BACKEND, type Watcher, isReply, unlessMissing } from './client.js';
import { isProtectedNode, lockPath, protectedNodePrefix, queueOrder } from './layout.js';
import type { SessionOptions, ZooKeeperSession } from './session.js';
import { SessionSource } from './sessions.js';

export const zooKeeperCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    'A lease lives as long as its ZooKeeper session; ttlMs plays no part. Its signal aborts when the client ' +
    "notices the session is in doubt: at once on a disconnect (onDisconnect 'abort', the default) or once " +
    "sessionTimeout minus a margin has passed since the last reply ('session-timeout'). A process paused " +
    '(GC, SIGSTOP) past the session timeout cannot notice in time: the server expires its session and ' +
    'grants the next contender while the paused process still believes it holds the lock until it runs ' +
    "again. Pass the fencing token (the lock node's czxid, larger for every new holder) to the protected " +
    "resource so it rejects a stale holder's writes.",
};

/** Longest key in UTF-8 bytes; encoded, a node name stays under 3 KiB. */
const MAX_KEY_BYTES = 1024;
/** Rounds of "create the parent, create our node" lost to concurrent parent cleanup before giving up. */
const MAX_CREATE_ROUNDS = 8;
/** Times an attempt starts over in a fresh session when its session was lost under it. */
const MAX_SESSION_ROUNDS = 2;
const EMPTY = Buffer.alloc(0);

export interface ZooKeeperWatchEvent {
  /** The watched node. */
  readonly path: string;
  readonly type: 'created' | 'deleted' | 'dataChanged' | 'childrenChanged';
  /**
   * Why it was watched: a waiter's predecessor, a contender's own node, a watchHolder stream, or the
   * leases of a semaphore whose internal mutex the watcher holds.
   */
  readonly purpose: 'predecessor' | 'own-node' | 'holder' | 'leases';
}

export interface DriverOptions {
  readonly root: string;
  readonly session: SessionOptions;
  readonly onWatchEvent?: (event: ZooKeeperWatchEvent) => void;
}

export const EVENT_TYPES: Record<number, ZooKeeperWatchEvent['type']> = {
  [Event.NODE_CREATED]: 'created',
  [Event.NODE_DELETED]: 'deleted',
  [Event.NODE_DATA_CHANGED]: 'dataChanged',
  [Event.NODE_CHILDREN_CHANGED]: 'childrenChanged',
};

export function zxid(stat: Stat): bigint {
  return stat.czxid.readBigInt64BE();
}

/**
 * Our EPHEMERAL_SEQUENTIAL node: a place in line while queued (the ticket), the lock while held (the
 * grant's handle). It keeps one watcher function for its whole life, so node-zookeeper-client, which
 * de-duplicates watchers by function, registers it at most once per path however often we wait.
 */
class LockNode {
  state: 'queued' | 'held' | 'released' = 'queued';
  /** The node we wait behind, set by every attempt that finds us queued. */
  predecessor: string | undefined;
  /** A watch fired since the last wait: keeps a wake-up that arrives before anyone waits. */
  changed = false;
  wake: (() => void) | undefined;
  czxid = 0n;
  readonly lost = new AbortController();
  readonly name: string;
  readonly onWatch: Watcher;

  constructor(
    readonly session: ZooKeeperSession,
    readonly key: string,
    readonly parent: string,
    readonly path: string,
    report: (event: Event, purpose: ZooKeeperWatchEvent['purpose']) => void,
  ) {
    this.name = path.slice(parent.length + 1);
    this.onWatch = (event) => {
      const own = event.getPath() === this.path;
      report(event, own ? 'own-node' : 'predecessor');
      if (own && event.getType() === Event.NODE_DELETED && this.state === 'held') {
        this.markLost(`its node ${this.path} was deleted (by an operator, or with its session)`);
      }
      this.changed = true;
      this.wake?.();
    };
  }

  markLost(why: string): void {
    if (!this.lost.signal.aborted) this.lost.abort(new LockLostError(this.key, why));
  }
}

/**
 * The ZooKeeper lock recipe as a dlock driver: ephemeral sequential nodes, the lowest holds, each
 * waiter watches only its immediate predecessor (one notification per release, however many wait),
 * the holder's token is its node's czxid.
 */
export class ZooKeeperLockDriver implements LockDriver<LockNode, LockNode> {
  readonly backend = BACKEND;
  readonly capabilities = zooKeeperCapabilities;
  readonly limits = { minTtlMs: 1, maxKeyBytes: MAX_KEY_BYTES };
  readonly #root: string;
  readonly address: string;
  readonly #retryDelayMs: number;
  readonly #sessions: SessionSource;
  /** Nodes held in each live session, marked lost together when it is. */
  readonly #held = new Map<ZooKeeperSession, Set<LockNode>>();
  readonly #onWatchEvent: ((event: ZooKeeperWatchEvent) => void) | undefined;

  constructor(options: DriverOptions) {
    this.#root = options.root;
    this.address = options.session.connectString;
    this.#retryDelayMs = Math.min(1_000, options.session.callTimeoutMs);
    this.#onWatchEvent = options.onWatchEvent;
    this.#sessions = new SessionSource(options.session, (session) => this.#adopt(session));
  }

  validateKey(key: string): void {
    // A lone surrogate has no UTF-8 form, so two such keys could share a node name.
    if (/\p{Cs}/u.test(key)) {
      throw new InvalidArgumentError('key', key, 'well-formed Unicode (no lone surrogate code units)');
    }
  }

  async attempt(request: LockRequest, ticket: LockNode | undefined): Promise<Attempt<LockNode, LockNode>> {
    for (let round = 0; ; round++) {
      const session = await this.#sessions.current();
      // A place in line belongs to its session: when that session is gone, so is the node.
      const queued = ticket?.session === session && ticket.state === 'queued' ? ticket : undefined;
      try {
        return await this.#attemptIn(session, request, queued);
      } catch (error) {
        if (session.lost.aborted && round < MAX_SESSION_ROUNDS && !request.signal.aborted) continue;
        throw error;
      }
    }
  }

  waitForChange(request: LockRequest, node: LockNode | undefined, maxWaitMs: number): Promise<void> {
    if (!node || request.signal.aborted || node.session.lost.aborted || node.predecessor === undefined) {
      return Promise.resolve();
    }
    if (node.changed) {
      node.changed = false;
      return Promise.resolve();
    }
    const predecessor = node.predecessor;
    return new Promise((resolve) => {
      let settled = false;
      // Watches fire once and a reconnect can hide one: a reconnect or a lost session means "look again".
      const unsubscribe = node.session.onChange(() => done());
      const timer = setTimeout(() => done(), maxWaitMs);
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal.removeEventListener('abort', done);
        unsubscribe();
        node.wake = undefined;
        node.changed = false;
        resolve();
      };
      request.signal.addEventListener('abort', done, { once: true });
      node.wake = done;
      // The predecessor may have gone between the attempt and now: then there is nothing to wait for.
      node.session.calls.getData(predecessor, node.onWatch).then(
        () => {},
        () => done(),
      );
    });
  }

  async withdraw(_request: LockRequest, node: LockNode): Promise<void> {
    await this.#discard(node);
  }

  async extend(key: string, grant: Grant<LockNode>): Promise<number> {
    const node = grant.handle;
    if (node.lost.signal.aborted) throw node.lost.signal.reason;
    const stat = await node.session.calls.exists(node.path);
    if (!stat || stat.ephemeralOwner.readBigUInt64BE() !== node.session.id) {
      const why = `its node ${node.path} no longer exists (deleted by an operator, or expired with session ${node.session.name})`;
      node.markLost(why);
      throw new LockLostError(key, why);
    }
    return Number.POSITIVE_INFINITY;
  }

  async release(_key: string, grant: Grant<LockNode>): Promise<void> {
    await this.#discard(grant.handle);
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const session = await this.#sessions.current();
    const parent = lockPath(this.#root, key);
    for (;;) {
      const head = queueOrder(await this.#children(session, parent))[0];
      if (head === undefined) return null;
      const found = await this.#describe(session, `${parent}/${head}`);
      // Undefined: that holder released between the two reads; read the queue again.
      if (found !== undefined) return found;
    }
  }

  async *watchHolder(key: string, signal: AbortSignal): AsyncGenerator<HolderInfo | null> {
    const parent = lockPath(this.#root, key);
    let last: string | undefined;
    while (!signal.aborted) {
      const session = await this.#sessions.current();
      let wake = () => {};
      const changed = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const unsubscribe = session.onChange(wake);
      signal.addEventListener('abort', wake, { once: true });
      try {
        let holder: HolderInfo | null;
        try {
          holder = await this.#readHolderAndWatch(session, parent, (event) => {
            this.#report(event, 'holder');
            wake();
          });
        } catch (error) {
          // A session lost mid-read: read again in the next one.
          if (session.lost.aborted) continue;
          throw error;
        }
        const seen = holder ? `${holder.identity}\u0000${holder.token}` : '';
        if (seen !== last && !signal.aborted) {
          last = seen;
          yield holder;
        }
        await changed;
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', wake);
      }
    }
  }

  async close(): Promise<void> {
    await this.#sessions.close();
  }

  /** The provider's current session, opened on first use: the semaphore and read-write drivers share it. */
  session(): Promise<ZooKeeperSession> {
    return this.#sessions.current();
  }

  /** For tests: the sessions currently serving this driver. */
  liveSessions(): ZooKeeperSession[] {
    return this.#sessions.live();
  }

  #adopt(session: ZooKeeperSession): void {
    const held = new Set<LockNode>();
    this.#held.set(session, held);
    session.lost.addEventListener(
      'abort',
      () => {
        this.#held.delete(session);
        for (const node of held) node.markLost(`its ZooKeeper session ${session.name} ${session.whyLost}`);
      },
      { once: true },
    );
  }

  #report(event: Event, purpose: ZooKeeperWatchEvent['purpose']): void {
    const type = EVENT_TYPES[event.getType()];
    if (this.#onWatchEvent && type) this.#onWatchEvent({ path: event.getPath(), type, purpose });
  }

  async #attemptIn(
    session: ZooKeeperSession,
    request: LockRequest,
    queued: LockNode | undefined,
  ): Promise<Attempt<LockNode, LockNode>> {
    const parent = lockPath(this.#root, request.key);
    let node = queued;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      let fresh: LockNode | undefined;
      try {
        let children: string[];
        if (node) {
          children = await this.#children(session, parent);
        } else {
          const path = await this.#createNode(session, request, parent);
          fresh = new LockNode(session, request.key, parent, path, (event, purpose) =>
            this.#report(event, purpose),
          );
          // Reading our own node sets the watch that tells a holder its node was deleted under it.
          const [own, current] = await Promise.all([
            unlessMissing(session.calls.getData(path, fresh.onWatch)),
            this.#children(session, parent),
          ]);
          if (own) fresh.czxid = zxid(own.stat);
          node = fresh;
          children = current;
        }
        const queue = queueOrder(children);
        const index = queue.indexOf(node.name);
        if (index === 0) return { outcome: 'granted', grant: this.#grant(node) };
        if (index > 0) {
          node.predecessor = `${parent}/${queue[index - 1]}`;
          return { outcome: 'busy', ticket: node };
        }
      } catch (error) {
        // A node we created but cannot hand to core as a ticket would block the queue: delete it.
        if (fresh) this.#discard(fresh).catch(() => {});
        throw error;
      }
      // Our node is gone — an operator deleted it: take a new place in line.
      node.state = 'released';
      node = undefined;
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the lock node for "${request.key}" kept disappearing under ${parent}`,
    );
  }

  /**
   * Creates our EPHEMERAL_SEQUENTIAL node under `parent` with a protected name and returns its path.
   * The parent's create is sent in the same breath (it fails NODE_EXISTS when the parent is there),
   * so a free key costs one round trip, not two.
   */
  async #createNode(session: ZooKeeperSession, request: LockRequest, parent: string): Promise<string> {
    const protectedId = randomUUID();
    const prefix = protectedNodePrefix(parent, protectedId);
    const data = Buffer.from(request.identity, 'utf8');
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      const parentCreated = session.calls.create(parent, EMPTY, CreateMode.PERSISTENT).then(
        () => undefined,
        (error: unknown) => error,
      );
      try {
        return await session.calls.create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL);
      } catch (error) {
        const parentError = await parentCreated;
        if (isReply(error, 'NO_NODE')) {
          // The root is missing, or a release deleted the empty parent between our two creates.
          if (isReply(parentError, 'NO_NODE')) await this.#createRoot(session);
          continue;
        }
        if (!(error instanceof BackendUnavailableError) || session.lost.aborted) throw error;
        // The reply is lost but the create may have been applied. Creating again blindly could leave a
        // node nobody owns at the head of the queue (ZOOKEEPER-1262); look for our protected name.
        const found = await this.#findProtected(session, parent, protectedId).catch(
          (lookupError: unknown) => {
            this.#eventually(session, () => this.#sweepProtected(session, parent, protectedId));
            throw lookupError;
          },
        );
        if (found !== undefined) return found;
        // Replies arrive in order, so a lookup answered after the create proves it was never applied.
      }
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `could not create a lock node under ${parent}: its parent kept being deleted`,
    );
  }

  async #createRoot(session: ZooKeeperSession): Promise<void> {
    let path = '';
    for (const segment of this.#root.slice(1).split('/')) {
      path += `/${segment}`;
      try {
        await session.calls.create(path, EMPTY, CreateMode.PERSISTENT);
      } catch (error) {
        if (isReply(error, 'NODE_EXISTS')) continue;
        if (isReply(error, 'NO_NODE')) {
          throw new BackendUnavailableError(
            BACKEND,
            this.address,
            `cannot create ${this.#root}: the connect string's chroot does not exist`,
          );
        }
        throw error;
      }
    }
  }

  async #findProtected(
    session: ZooKeeperSession,
    parent: string,
    protectedId: string,
  ): Promise<string | undefined> {
    const name = (await this.#children(session, parent)).find((child) => isProtectedNode(child, protectedId));
    return name === undefined ? undefined : `${parent}/${name}`;
  }

  async #sweepProtected(session: ZooKeeperSession, parent: string, protectedId: string): Promise<void> {
    const path = await this.#findProtected(session, parent, protectedId);
    if (path !== undefined) await this.#removeWithParent(session, path, parent);
  }

  async #children(session: ZooKeeperSession, parent: string): Promise<string[]> {
    return (await unlessMissing(session.calls.getChildren(parent)))?.children ?? [];
  }

  /** The holder stored at `path`, or undefined when the node is gone. */
  async #describe(
    session: ZooKeeperSession,
    path: string,
    watcher?: Watcher,
  ): Promise<HolderInfo | undefined> {
    const found = await unlessMissing(session.calls.getData(path, watcher));
    if (!found) return undefined;
    // Curator stores the client's IP address; an empty node is named by its path.
    return { identity: found.data.length > 0 ? found.data.toString('utf8') : path, token: zxid(found.stat) };
  }

  /**
   * Reads the holder and leaves one watch that fires when it may change: on the holder's node while
   * the key is held (new contenders queue behind it and cannot change the holder), on the parent's
   * children while it is empty, on the parent's existence while it is missing.
   */
  async #readHolderAndWatch(
    session: ZooKeeperSession,
    parent: string,
    watcher: Watcher,
  ): Promise<HolderInfo | null> {
    for (;;) {
      const listed = await unlessMissing(session.calls.getChildren(parent));
      if (!listed) {
        if ((await session.calls.exists(parent, watcher)) === null) return null;
        continue;
      }
      const head = queueOrder(listed.children)[0];
      if (head === undefined) {
        const watched = await unlessMissing(session.calls.getChildren(parent, watcher));
        if (watched?.children.length === 0) return null;
        continue;
      }
      const holder = await this.#describe(session, `${parent}/${head}`, watcher);
      if (holder) return holder;
    }
  }

  #grant(node: LockNode): Grant<LockNode> {
    node.state = 'held';
    const held = this.#held.get(node.session);
    if (held) held.add(node);
    else node.markLost(`its ZooKeeper session ${node.session.name} ${node.session.whyLost ?? 'was lost'}`);
    return { token: node.czxid, validUntil: Number.POSITIVE_INFINITY, lost: node.lost.signal, handle: node };
  }

  /**
   * Deletes our node (release or withdraw) and, in the same breath, the key's parent if that leaves it
   * empty, so idle keys leave nothing behind. A node whose session is lost goes with the session. A
   * delete that fails for want of a reply is retried in the background while the session lives: the
   * node must not stay at the head of the queue with nobody behind it.
   */
  async #discard(node: LockNode): Promise<void> {
    if (node.state === 'released') return;
    node.state = 'released';
    this.#held.get(node.session)?.delete(node);
    const session = node.session;
    if (session.lost.aborted) return;
    try {
      await this.#removeWithParent(session, node.path, node.parent);
    } catch (error) {
      this.#eventually(session, () => this.#removeWithParent(session, node.path, node.parent));
      throw error;
    }
  }

  /** Deletes `path`, then `parent` if that left it empty; both requests go out together. */
  async #removeWithParent(session: ZooKeeperSession, path: string, parent: string): Promise<void> {
    const removed = this.#removeIfPresent(session, path);
    // NOT_EMPTY (others queue) and NO_NODE (already cleaned up) are the expected outcomes.
    const parentRemoved = session.calls.remove(parent).catch(() => {});
    try {
      await removed;
    } finally {
      await parentRemoved;
    }
  }

  async #removeIfPresent(session: ZooKeeperSession, path: string): Promise<void> {
    await unlessMissing(session.calls.remove(path));
  }

  /** Runs `task` until it succeeds or the session is lost (its ephemeral nodes then go with it). */
  #eventually(session: ZooKeeperSession, task: () => Promise<void>): void {
    const run = async () => {
      while (!session.lost.aborted) {
        try {
          await task();
          return;
        } catch {
          await pause(this.#retryDelayMs, session.lost);
        }
      }
    };
    run().catch(() => {});
  }
}
