import { randomUUID } from 'node:crypto';
import {
  type Attempt,
  BackendUnavailableError,
  type Capabilities,
  type Grant,
  type HolderInfo,
  InvalidArgumentError,
  type KeyInspection,
  type LockDriver,
  LockLostError,
  type LockRequest,
  isTransient,
  raceAbort,
} from '@dlock/core';
import { CreateMode, Event, type Stat } from 'node-zookeeper-client';
import { BACKEND, type ZooKeeperCalls, isReply, unlessMissing } from './client.js';
import { decodeKey, isProtectedNode, lockPath, protectedNodePrefix, queueOrder } from './layout.js';
import type { SessionOptions, ZooKeeperSession } from './session.js';
import { SessionSource } from './sessions.js';
import type { WatchKind, WatchSubscription } from './watches.js';

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
/**
 * Rounds of "create the parent, create our node" lost to a concurrent clean-up of the empty parent, or
 * of "our node vanished, queue again" (an operator deleting it), within one attempt. This is the
 * recipe's own race, not a retry of a failure: failures go back to core's retry policy.
 */
const MAX_CREATE_ROUNDS = 8;
const EMPTY = Buffer.alloc(0);

export interface ZooKeeperWatchEvent {
  /** The watched node. */
  readonly path: string;
  readonly type: 'created' | 'deleted' | 'dataChanged' | 'childrenChanged';
  /** Why it was watched: a waiter's predecessor, a contender's own node, or a watchHolder stream. */
  readonly purpose: 'predecessor' | 'own-node' | 'holder';
}

export interface DriverOptions {
  readonly root: string;
  readonly session: SessionOptions;
  readonly onWatchEvent?: (event: ZooKeeperWatchEvent) => void;
}

const EVENT_TYPES: Record<number, ZooKeeperWatchEvent['type']> = {
  [Event.NODE_CREATED]: 'created',
  [Event.NODE_DELETED]: 'deleted',
  [Event.NODE_DATA_CHANGED]: 'dataChanged',
  [Event.NODE_CHILDREN_CHANGED]: 'childrenChanged',
};

type Report = (event: Event, purpose: ZooKeeperWatchEvent['purpose']) => void;

function zxid(stat: Stat): bigint {
  return stat.czxid.readBigInt64BE();
}

/** Who a lock node belongs to. Curator stores the client's IP address; an empty node is named by its path. */
function describeNode(path: string, found: { data: Buffer; stat: Stat }): HolderInfo {
  return { identity: found.data.length > 0 ? found.data.toString('utf8') : path, token: zxid(found.stat) };
}

/** The session an ephemeral node lives in, as ZooKeeper's tools print it (0x…). */
function sessionHex(stat: Stat): string {
  return `0x${stat.ephemeralOwner.readBigUInt64BE().toString(16)}`;
}

/** `work`'s result, or undefined as soon as `signal` aborts (a late failure of `work` is swallowed). */
async function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  try {
    return await raceAbort(work, signal);
  } catch (error) {
    if (signal.aborted) return undefined;
    throw error;
  }
}

/**
 * One request's EPHEMERAL_SEQUENTIAL node, created under a protected name (`_c_<protectedId>-lock-`,
 * Curator's protected mode). It is core's ticket while queued or while the outcome of its create is
 * unknown, and the grant's handle while held. The protected id stays the same for every attempt of one
 * request, so a node whose create reply was lost is found again, adopted, or deleted by what was sent.
 */
class LockNode {
  state: 'queued' | 'held' | 'released' = 'queued';
  /** The node's path, once a create reply or a protected-name lookup named it. */
  path: string | undefined;
  /** A create was sent and neither answered nor found since: the node may exist under our protected name. */
  unconfirmed = false;
  /**
   * A create was sent again after an unknown outcome. Within one server the lookup before it is
   * conclusive, but across an ensemble a first create still in flight to the leader may be applied
   * later (ZOOKEEPER-1262): clean-up then looks for a second node with our protected id.
   */
  resent = false;
  /** The node we wait behind, set by every attempt that finds us queued. */
  predecessor: string | undefined;
  /** A watch fired since the last wait: keeps a wake-up that arrives before anyone waits. */
  changed = false;
  wake: (() => void) | undefined;
  czxid = 0n;
  readonly lost = new AbortController();
  #ownWatch: WatchSubscription | undefined;
  #predecessorWatch: WatchSubscription | undefined;

  constructor(
    readonly session: ZooKeeperSession,
    readonly key: string,
    readonly parent: string,
    readonly protectedId: string,
    readonly report: Report,
  ) {}

  /** The child name under the parent, once known. */
  get name(): string | undefined {
    return this.path?.slice(this.parent.length + 1);
  }

  /** Our node is `path`: a create answered, or the protected-name lookup found it. */
  confirm(path: string): void {
    this.path = path;
    this.unconfirmed = false;
  }

  /** Our node is gone (an operator deleted it): the next round queues again under the same protected id. */
  vanished(): void {
    this.#ownWatch?.cancel();
    this.#ownWatch = undefined;
    this.path = undefined;
    this.czxid = 0n;
  }

  /**
   * A subscription to our own node's deletion (an operator, or the session's end, took the lock away).
   * One per node: node-zookeeper-client then holds a single watcher on the path (see WatchFans).
   */
  ownWatch(path: string): WatchSubscription {
    this.#ownWatch ??= this.session.calls.watch('data', path, (event) => {
      this.#ownWatch = undefined;
      this.report(event, 'own-node');
      if (event.getType() === Event.NODE_DELETED && this.state === 'held') {
        this.markLost(`its node ${path} was deleted (by an operator, or with its session)`);
      }
      this.notify();
    });
    return this.#ownWatch;
  }

  /** A subscription to the predecessor's next event, kept across waits until it fires or changes. */
  predecessorWatch(predecessor: string): WatchSubscription {
    if (this.#predecessorWatch?.path !== predecessor) {
      this.#predecessorWatch?.cancel();
      this.#predecessorWatch = this.session.calls.watch('data', predecessor, (event) => {
        this.#predecessorWatch = undefined;
        this.report(event, 'predecessor');
        this.notify();
      });
    }
    return this.#predecessorWatch;
  }

  /** The node is done with (released, withdrawn, or its session is gone): stop listening. */
  finish(): void {
    this.state = 'released';
    this.#ownWatch?.cancel();
    this.#predecessorWatch?.cancel();
    this.#ownWatch = undefined;
    this.#predecessorWatch = undefined;
    this.wake?.();
  }

  markLost(why: string): void {
    if (!this.lost.signal.aborted) this.lost.abort(new LockLostError(this.key, why));
  }

  notify(): void {
    this.changed = true;
    this.wake?.();
  }
}

/**
 * The ZooKeeper lock recipe as a dlock driver: ephemeral sequential nodes, the lowest holds, each
 * waiter watches only its immediate predecessor (one notification per release, however many wait),
 * the holder's token is its node's czxid. Waiting, retries, timeouts and the clean-up of unknown
 * outcomes are core's; this driver only knows how to take a place in line by a protected name, find
 * it again, and give it up.
 */
export class ZooKeeperLockDriver implements LockDriver<LockNode, LockNode> {
  readonly backend = BACKEND;
  readonly capabilities = zooKeeperCapabilities;
  readonly limits = { minTtlMs: 1, maxKeyBytes: MAX_KEY_BYTES };
  readonly address: string;
  readonly #root: string;
  readonly #sessions: SessionSource;
  /** Nodes held in each live session, marked lost together when it is. */
  readonly #held = new Map<ZooKeeperSession, Set<LockNode>>();
  /** Nodes each session may still have at the server (a create was sent), until they are deleted. */
  readonly #created = new Map<ZooKeeperSession, Set<LockNode>>();
  readonly #onWatchEvent: ((event: ZooKeeperWatchEvent) => void) | undefined;
  readonly #report: Report = (event, purpose) => {
    const type = EVENT_TYPES[event.getType()];
    if (this.#onWatchEvent && type) this.#onWatchEvent({ path: event.getPath(), type, purpose });
  };

  constructor(options: DriverOptions) {
    this.#root = options.root;
    this.address = options.session.connectString;
    this.#onWatchEvent = options.onWatchEvent;
    this.#sessions = new SessionSource(options.session, (session) => this.#adopt(session));
  }

  validateKey(key: string): void {
    // A lone surrogate has no UTF-8 form, so two such keys could share a node name.
    if (/\p{Cs}/u.test(key)) {
      throw new InvalidArgumentError('key', key, 'well-formed Unicode (no lone surrogate code units)');
    }
  }

  /**
   * One attempt. With a ticket from this session, re-checks that place in line, or — when its create's
   * reply was lost — finds the node by its protected name and adopts it (or creates it when the lookup
   * proves the create was never applied). A ticket of a lost session is replaced by a new node in the
   * current one under the same protected id; the old node goes with its session. Returns 'unknown'
   * whenever a transient failure leaves a node of ours possibly in place.
   */
  async attempt(request: LockRequest, ticket: LockNode | undefined): Promise<Attempt<LockNode, LockNode>> {
    const session = await this.#sessions.current();
    let node = ticket;
    if (node?.session !== session || node.state === 'released') {
      node = new LockNode(
        session,
        request.key,
        lockPath(this.#root, request.key),
        ticket?.protectedId ?? randomUUID(),
        this.#report,
      );
    }
    try {
      return await this.#attemptWith(node, request);
    } catch (error) {
      if (isTransient(error) && node.state !== 'released' && (node.unconfirmed || node.path !== undefined)) {
        return { outcome: 'unknown', ticket: node, cause: error };
      }
      throw error;
    }
  }

  waitForChange(request: LockRequest, node: LockNode | undefined, maxWaitMs: number): Promise<void> {
    if (
      !node ||
      request.signal.aborted ||
      node.session.lost.aborted ||
      node.state !== 'queued' ||
      node.predecessor === undefined
    ) {
      return Promise.resolve();
    }
    if (node.changed) {
      node.changed = false;
      return Promise.resolve();
    }
    const { session, predecessor } = node;
    return new Promise((resolve) => {
      let settled = false;
      // Watches fire once and a reconnect can hide one: a reconnect or a lost session means "look again".
      const unsubscribe = session.onChange(() => done());
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
      session.calls.getData(predecessor, node.predecessorWatch(predecessor)).then(
        () => {},
        () => done(),
      );
    });
  }

  /** Deletes what the request may have left: its node, found by path or by its protected name. */
  async withdraw(_request: LockRequest, node: LockNode): Promise<void> {
    await this.#discard(node);
  }

  async extend(key: string, grant: Grant<LockNode>): Promise<number> {
    const node = grant.handle;
    if (node.lost.signal.aborted) throw node.lost.signal.reason;
    const stat = await node.session.calls.exists(node.path as string);
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
      const head = queueOrder(await this.#children(session.calls, parent))[0];
      if (head === undefined) return null;
      const found = await this.#describe(session, `${parent}/${head}`);
      // Undefined: that holder released between the two reads; read the queue again.
      if (found !== undefined) return found;
    }
  }

  /**
   * The queue under the key's parent in Curator's order: the first node holds the lock, the rest
   * wait in line. Each node's data names its owner and its ephemeralOwner the session keeping it.
   */
  async inspect(key: string): Promise<KeyInspection> {
    const session = await this.#sessions.current();
    const parent = lockPath(this.#root, key);
    for (;;) {
      const line = queueOrder(await this.#children(session.calls, parent));
      const nodes = await Promise.all(
        line.map(async (name) => {
          const path = `${parent}/${name}`;
          const found = await unlessMissing(session.calls.getData(path));
          return found && { ...describeNode(path, found), session: sessionHex(found.stat) };
        }),
      );
      // The holder released between the two reads: read the queue again, as holder() does.
      if (nodes.length > 0 && nodes[0] === undefined) continue;
      const [head, ...rest] = nodes.filter((node) => node !== undefined);
      if (head === undefined) return { holder: null, waiters: [] };
      return {
        holder: { identity: head.identity, token: head.token },
        session: head.session,
        waiters: rest.map(({ identity, session }) => ({ identity, session })),
      };
    }
  }

  /** The root's children whose names decode to a key under `prefix`, each with a lock node in line. */
  async heldKeys(prefix: string): Promise<string[]> {
    const session = await this.#sessions.current();
    const held: string[] = [];
    for (const name of await this.#children(session.calls, this.#root)) {
      const key = decodeKey(name);
      if (key === undefined || !key.startsWith(prefix)) continue;
      const line = queueOrder(await this.#children(session.calls, `${this.#root}/${name}`));
      if (line.length > 0) held.push(key);
    }
    return held.sort();
  }

  /**
   * The holder now, then every change, until `signal` aborts. Every await (opening a session, which
   * can take connectTimeoutMs; a read while reconnecting) ends as soon as the signal aborts, and no
   * listener is added to a signal that has already aborted (dlock issue 12).
   */
  async *watchHolder(key: string, signal: AbortSignal): AsyncGenerator<HolderInfo | null> {
    const parent = lockPath(this.#root, key);
    let last: string | undefined;
    while (!signal.aborted) {
      const session = await unlessAborted(this.#sessions.current(), signal);
      if (session === undefined || signal.aborted) return;
      let wake = () => {};
      const changed = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const unsubscribe = session.onChange(wake);
      signal.addEventListener('abort', wake, { once: true });
      const subscriptions: WatchSubscription[] = [];
      const watch = (kind: WatchKind, path: string) => {
        const subscription = session.calls.watch(kind, path, (event) => {
          this.#report(event, 'holder');
          wake();
        });
        subscriptions.push(subscription);
        return subscription;
      };
      try {
        let holder: HolderInfo | null | undefined;
        try {
          holder = await unlessAborted(this.#readHolderAndWatch(session, parent, watch, signal), signal);
        } catch (error) {
          // A session lost mid-read: read again in the next one.
          if (session.lost.aborted) continue;
          throw error;
        }
        if (holder === undefined || signal.aborted) return;
        const seen = holder ? `${holder.identity}\u0000${holder.token}` : '';
        if (seen !== last) {
          last = seen;
          yield holder;
        }
        await changed;
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', wake);
        for (const subscription of subscriptions) subscription.cancel();
      }
    }
  }

  async close(): Promise<void> {
    await this.#sessions.close();
  }

  /** For tests: the sessions currently serving this driver. */
  liveSessions(): ZooKeeperSession[] {
    return this.#sessions.live();
  }

  #adopt(session: ZooKeeperSession): void {
    const held = new Set<LockNode>();
    this.#held.set(session, held);
    this.#created.set(session, new Set());
    session.onFarewell((calls) => this.#farewell(session, calls));
    session.lost.addEventListener(
      'abort',
      () => {
        this.#held.delete(session);
        for (const node of held) node.markLost(`its ZooKeeper session ${session.name} ${session.whyLost}`);
        // Whatever the farewell did not delete went with the session (or goes at its expiry).
        const forget = () => this.#created.delete(session);
        session.closed.then(forget, forget);
      },
      { once: true },
    );
  }

  async #attemptWith(node: LockNode, request: LockRequest): Promise<Attempt<LockNode, LockNode>> {
    const { session, parent } = node;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      if (node.path === undefined && node.unconfirmed) {
        // The reply to our create was lost: creating again blindly could leave a node nobody owns at
        // the head of the queue. Look for our protected name first; replies come in order, so a
        // listing answered after the create proves it was never applied (Curator's protected mode).
        const mine = queueOrder(await this.#children(session.calls, parent)).find((child) =>
          isProtectedNode(child, node.protectedId),
        );
        if (mine !== undefined) node.confirm(`${parent}/${mine}`);
        else {
          node.unconfirmed = false;
          node.resent = true;
        }
      }
      if (node.path === undefined) {
        // A request given up on (core withdraws its ticket) must not create anything any more.
        request.signal.throwIfAborted();
        await this.#createNode(node, request);
      }
      const path = node.path as string;
      const [own, children] = await Promise.all([
        // Reading our own node sets the watch that tells a holder its node was deleted under it.
        node.czxid === 0n ? unlessMissing(session.calls.getData(path, node.ownWatch(path))) : undefined,
        this.#children(session.calls, parent),
      ]);
      if (own) node.czxid = zxid(own.stat);
      if (node.state === 'released') request.signal.throwIfAborted();
      const queue = queueOrder(children);
      // Another node under our protected id is ours: a late duplicate of a create sent twice, or the
      // node of a session we lost. Either would block the queue with nobody behind it: delete it.
      const duplicates = queue.filter(
        (child) => child !== node.name && isProtectedNode(child, node.protectedId),
      );
      await Promise.all(
        duplicates.map((child) => this.#removeIfPresent(session.calls, `${parent}/${child}`)),
      );
      const line = queue.filter((child) => !duplicates.includes(child));
      const index = own === undefined && node.czxid === 0n ? -1 : line.indexOf(node.name as string);
      if (index === 0) return { outcome: 'granted', grant: this.#grant(node) };
      if (index > 0) {
        node.predecessor = `${parent}/${line[index - 1]}`;
        return { outcome: 'busy', ticket: node };
      }
      // Our node is gone — an operator deleted it: take a new place in line.
      node.vanished();
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the lock node for "${request.key}" kept disappearing under ${parent}`,
    );
  }

  /**
   * Creates the node under `node.parent` with its protected name. The parent's create is sent in the
   * same breath (it fails NODE_EXISTS when the parent is there), so a free key costs one round trip.
   * A transient failure leaves `node.unconfirmed` set: the create may have been applied.
   */
  async #createNode(node: LockNode, request: LockRequest): Promise<void> {
    const { session, parent } = node;
    const prefix = protectedNodePrefix(parent, node.protectedId);
    const data = Buffer.from(request.identity, 'utf8');
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      const parentCreated = session.calls.create(parent, EMPTY, CreateMode.PERSISTENT).then(
        () => undefined,
        (error: unknown) => error,
      );
      node.unconfirmed = true;
      this.#created.get(session)?.add(node);
      try {
        node.confirm(await session.calls.create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL));
        return;
      } catch (error) {
        const parentError = await parentCreated;
        if (!isReply(error, 'NO_NODE')) throw error;
        // Refused, so certainly not applied: the root is missing, or a release deleted the empty
        // parent between our two creates.
        node.unconfirmed = false;
        if (isReply(parentError, 'NO_NODE')) await this.#createRoot(session);
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
            { transient: false },
          );
        }
        throw error;
      }
    }
  }

  async #children(calls: ZooKeeperCalls, parent: string): Promise<string[]> {
    return (await unlessMissing(calls.getChildren(parent)))?.children ?? [];
  }

  /** The holder stored at `path`, or undefined when the node is gone. */
  async #describe(
    session: ZooKeeperSession,
    path: string,
    watch?: WatchSubscription,
  ): Promise<HolderInfo | undefined> {
    const found = await unlessMissing(session.calls.getData(path, watch));
    return found && describeNode(path, found);
  }

  /**
   * Reads the holder and leaves one watch that fires when it may change: on the holder's node while
   * the key is held (new contenders queue behind it and cannot change the holder), on the parent's
   * children while it has no lock node, on the parent's existence while it is missing.
   */
  async #readHolderAndWatch(
    session: ZooKeeperSession,
    parent: string,
    watch: (kind: WatchKind, path: string) => WatchSubscription,
    signal: AbortSignal,
  ): Promise<HolderInfo | null> {
    while (!signal.aborted) {
      const listed = await unlessMissing(session.calls.getChildren(parent));
      if (!listed) {
        if ((await session.calls.exists(parent, watch('exists', parent))) === null) return null;
        continue;
      }
      const head = queueOrder(listed.children)[0];
      if (head === undefined) {
        const watched = await unlessMissing(session.calls.getChildren(parent, watch('children', parent)));
        if (watched && queueOrder(watched.children).length === 0) return null;
        continue;
      }
      const path = `${parent}/${head}`;
      const holder = await this.#describe(session, path, watch('data', path));
      if (holder) return holder;
    }
    return null;
  }

  #grant(node: LockNode): Grant<LockNode> {
    node.state = 'held';
    const held = this.#held.get(node.session);
    if (held) held.add(node);
    else node.markLost(`its ZooKeeper session ${node.session.name} ${node.session.whyLost ?? 'was lost'}`);
    return { token: node.czxid, validUntil: Number.POSITIVE_INFINITY, lost: node.lost.signal, handle: node };
  }

  /**
   * Release and withdraw, by what was sent: deletes our node — by its path, or found by its protected
   * name when the create's reply was lost — and, in the same breath, the key's parent if that leaves
   * it empty, so idle keys leave nothing behind. Idempotent; a failure leaves the node marked as ours,
   * so core's retry really sends again. A node of a lost session goes with that session: its farewell
   * deletes it (and the parent) as soon as it reconnects, or the server expires it; nothing to send now.
   */
  async #discard(node: LockNode): Promise<void> {
    if (node.state === 'released') return;
    const { session } = node;
    if (!session.lost.aborted) {
      if (!session.connected) {
        // The library would queue the delete until the reconnect, holding up a caller that core
        // answers only after this first try (an abort, a timeout). Nothing is sent: core retries.
        throw new BackendUnavailableError(
          BACKEND,
          this.address,
          `session ${session.name} is reconnecting: the node of "${node.key}" is deleted once it is back`,
        );
      }
      await this.#deleteNode(session.calls, node);
      this.#created.get(session)?.delete(node);
    }
    this.#held.get(session)?.delete(node);
    node.finish();
  }

  /** Deletes whatever `node` may have left at the server, then its parent if that left it empty. */
  async #deleteNode(calls: ZooKeeperCalls, node: LockNode): Promise<void> {
    const paths = node.path === undefined ? [] : [node.path];
    if (node.unconfirmed || node.resent) {
      for (const child of await this.#children(calls, node.parent)) {
        const path = `${node.parent}/${child}`;
        if (isProtectedNode(child, node.protectedId) && path !== node.path) paths.push(path);
      }
    }
    if (paths.length === 0 && !node.unconfirmed && !node.resent) return;
    await this.#removeWithParent(calls, paths, node.parent);
  }

  /**
   * What a session sends before it closes on purpose, including a retired one that reconnected only to
   * say goodbye: the nodes it still has (released or withdrawn while it was lost, or never confirmed)
   * and their empty parents. Closing the session alone would delete the nodes but leave the parents.
   */
  async #farewell(session: ZooKeeperSession, calls: ZooKeeperCalls): Promise<void> {
    const nodes = [...(this.#created.get(session) ?? [])];
    this.#created.delete(session);
    await Promise.allSettled(nodes.map((node) => this.#deleteNode(calls, node)));
  }

  /** Deletes `paths`, then `parent` if that left it empty; all requests go out together. */
  async #removeWithParent(calls: ZooKeeperCalls, paths: readonly string[], parent: string): Promise<void> {
    const removed = Promise.all(paths.map((path) => this.#removeIfPresent(calls, path)));
    // NOT_EMPTY (others queue) and NO_NODE (already cleaned up) are the expected outcomes.
    const parentRemoved = calls.remove(parent).catch(() => {});
    try {
      await removed;
    } finally {
      await parentRemoved;
    }
  }

  async #removeIfPresent(calls: ZooKeeperCalls, path: string): Promise<void> {
    await unlessMissing(calls.remove(path));
  }
}
