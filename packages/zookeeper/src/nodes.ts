import { randomUUID } from 'node:crypto';
import {
  type Attempt,
  BackendUnavailableError,
  type Grant,
  type HolderInfo,
  InvalidArgumentError,
  LockLostError,
  type LockRequest,
  isTransient,
} from '@dlock/core';
import { CreateMode, Event, type Stat } from 'node-zookeeper-client';
import { BACKEND, type ZooKeeperCalls, isReply, unlessMissing } from './client.js';
import { isProtectedNode, lockPath, protectedNodePrefix, queueOrder } from './layout.js';
import type { ZooKeeperSession } from './session.js';
import type { WatchKind, WatchSubscription } from './watches.js';

/**
 * What the lock, semaphore and read-write drivers share, written once: requests that take places at
 * the server under protected names (found again, adopted or deleted after a lost reply), parents
 * created on demand and deleted when empty, a waiter's watches through the session's shared watches,
 * the wait for a change, grants that are lost with their session or their node, release and withdraw
 * by what was sent, and the session's goodbye that deletes whatever a request left behind.
 */

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

type WatchPurpose = ZooKeeperWatchEvent['purpose'];
export type Report = (event: Event, purpose: WatchPurpose) => void;

const EVENT_TYPES: Record<number, ZooKeeperWatchEvent['type']> = {
  [Event.NODE_CREATED]: 'created',
  [Event.NODE_DELETED]: 'deleted',
  [Event.NODE_DATA_CHANGED]: 'dataChanged',
  [Event.NODE_CHILDREN_CHANGED]: 'childrenChanged',
};

/** Tells `onWatchEvent` (diagnostics, benchmarks) about every watch notification. */
function reporter(onWatchEvent: ((event: ZooKeeperWatchEvent) => void) | undefined): Report {
  return (event, purpose) => {
    const type = EVENT_TYPES[event.getType()];
    if (onWatchEvent && type) onWatchEvent({ path: event.getPath(), type, purpose });
  };
}

const EMPTY = Buffer.alloc(0);
/** Longest key in UTF-8 bytes; encoded, a node name stays under 3 KiB. */
const MAX_KEY_BYTES = 1024;
/**
 * Rounds of "create the parents, create our node" lost to a concurrent clean-up of an empty parent,
 * or of "our node vanished, queue again" (an operator deleting it), within one attempt: the recipe's
 * own race, not a retry of a failure (failures go back to core's retry policy).
 */
export const MAX_CREATE_ROUNDS = 8;
/** ZooKeeper's `%010d` sequence of the first child of a new parent (its cversion, 0). */
const FIRST_SEQUENCE = '0000000000';

function zxid(stat: Stat): bigint {
  return stat.czxid.readBigInt64BE();
}

/**
 * `promise`, marked as handled: for reads sent alongside a create, which the caller abandons when the
 * create fails (their failure is then of no interest, and must not surface as an unhandled rejection).
 */
export function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** The children of `parent` (names, unordered); [] when it does not exist. */
export async function childrenOf(calls: ZooKeeperCalls, parent: string): Promise<string[]> {
  return (await unlessMissing(calls.getChildren(parent)))?.children ?? [];
}

/** Who a node belongs to. Curator stores the client's IP address; an empty node is named by its path. */
function holderOf(path: string, found: { data: Buffer; stat: Stat }): HolderInfo {
  return { identity: found.data.length > 0 ? found.data.toString('utf8') : path, token: zxid(found.stat) };
}

/** The holder stored at `path` (identity and czxid), or undefined once it is gone; `watch` is set on it. */
export async function describeNode(
  calls: ZooKeeperCalls,
  path: string,
  watch?: WatchSubscription,
): Promise<HolderInfo | undefined> {
  const found = await unlessMissing(calls.getData(path, watch));
  return found && holderOf(path, found);
}

/**
 * As describeNode, plus the session the node lives in (its ephemeralOwner, `0x…` as zkCli prints it):
 * what `inspect()` shows for the holder and each waiter.
 */
export async function describeQueued(
  calls: ZooKeeperCalls,
  path: string,
): Promise<(HolderInfo & { readonly session: string }) | undefined> {
  const found = await unlessMissing(calls.getData(path));
  return (
    found && {
      ...holderOf(path, found),
      session: `0x${found.stat.ephemeralOwner.readBigUInt64BE().toString(16)}`,
    }
  );
}

/**
 * The node(s) a request creates under one protected id (`_c_<protectedId>-<name><seq>`, Curator's
 * protected mode): one for a lock or read-write node, `wanted` for a multi-permit lease (Curator counts
 * each lease node as one permit). The protected id stays the same for every attempt of one request, in
 * every session, so a node whose create reply was lost is found again, adopted, or deleted by what
 * was sent.
 */
export class ProtectedNodes {
  /** Confirmed paths, oldest first. */
  paths: string[] = [];
  /** A create was sent and neither answered nor found since: a node of ours may exist that `paths` lacks. */
  unconfirmed = false;
  /**
   * A create was sent again after an unknown outcome. Within one server the lookup before it is
   * conclusive, but across an ensemble a first create still in flight to the leader may be applied
   * later (ZOOKEEPER-1262): clean-up then looks for more nodes with our protected id.
   */
  resent = false;
  /**
   * No create has been sent under this protected id, in any session: no node of ours can exist, so a
   * read of the name our node would get is conclusive (see QueueDriver's first-node read).
   */
  pristine = true;

  constructor(
    readonly parent: string,
    readonly name: string,
    readonly wanted = 1,
    readonly protectedId: string = randomUUID(),
  ) {}

  /** The same request's nodes for a new session: nothing confirmed yet, the same protected id. */
  again(): ProtectedNodes {
    const nodes = new ProtectedNodes(this.parent, this.name, this.wanted, this.protectedId);
    nodes.pristine = false;
    return nodes;
  }

  get missing(): number {
    return this.wanted - this.paths.length;
  }

  /** Whether anything of ours may exist at the server. */
  get present(): boolean {
    return this.unconfirmed || this.resent || this.paths.length > 0;
  }

  /** Whether the child `child` of our parent carries our protected id. */
  isOurs(child: string): boolean {
    return isProtectedNode(child, this.protectedId, this.name);
  }

  /** Every path of ours at the server: the confirmed ones, and whatever carries our id when in doubt. */
  async atServer(calls: ZooKeeperCalls): Promise<string[]> {
    const paths = [...this.paths];
    if (this.unconfirmed || this.resent) {
      for (const child of await childrenOf(calls, this.parent)) {
        const path = `${this.parent}/${child}`;
        if (this.isOurs(child) && !paths.includes(path)) paths.push(path);
      }
    }
    return paths;
  }
}

/**
 * Settles what a create whose reply was lost left behind: our nodes are those carrying our protected
 * id (replies come in order, so a listing answered after the create is conclusive). Extras — a create
 * sent twice — are deleted, newest first. When fewer than wanted are found, the creates go out again
 * (`resent`).
 */
export async function confirmNodes(calls: ZooKeeperCalls, nodes: ProtectedNodes): Promise<void> {
  if (!nodes.unconfirmed) return;
  const names = await childrenOf(calls, nodes.parent);
  const mine = queueOrder(
    names.filter((child) => nodes.isOurs(child)),
    [nodes.name],
  ).map((child) => `${nodes.parent}/${child}`);
  const extras = mine.splice(nodes.wanted);
  await Promise.all(extras.map((path) => unlessMissing(calls.remove(path))));
  nodes.paths = mine;
  nodes.unconfirmed = false;
  if (nodes.missing > 0) nodes.resent = true;
}

/**
 * Deletes the children of `nodes.parent` that carry our protected id but are not our confirmed nodes:
 * a late duplicate of a create sent twice, or the node of a session we lost. Either would hold a
 * place (or a permit) with nobody behind it. Returns `children` without them.
 */
export async function dropDuplicates(
  calls: ZooKeeperCalls,
  nodes: ProtectedNodes,
  children: readonly string[],
): Promise<string[]> {
  if (nodes.unconfirmed) return [...children];
  const duplicates = children.filter(
    (child) => nodes.isOurs(child) && !nodes.paths.includes(`${nodes.parent}/${child}`),
  );
  await Promise.all(duplicates.map((child) => unlessMissing(calls.remove(`${nodes.parent}/${child}`))));
  return children.filter((child) => !duplicates.includes(child));
}

/**
 * Deletes `nodes` (by path, or by protected id when in doubt), then each of `parents` (innermost
 * first) that this leaves empty; all requests go out together. NOT_EMPTY (others queue) and NO_NODE
 * (already cleaned up) on a parent are the expected outcomes. Nothing is sent when nothing of ours can
 * be there.
 */
export async function removeNodes(
  calls: ZooKeeperCalls,
  nodes: readonly ProtectedNodes[],
  parents: readonly string[],
): Promise<void> {
  if (!nodes.some((node) => node.present)) return;
  const paths = (await Promise.all(nodes.map((node) => node.atServer(calls)))).flat();
  const removed = Promise.all(paths.map((path) => unlessMissing(calls.remove(path))));
  const parentsRemoved = Promise.all(parents.map((parent) => calls.remove(parent).catch(() => {})));
  try {
    await removed;
    for (const node of nodes) {
      node.paths = [];
      node.unconfirmed = false;
      node.resent = false;
    }
  } finally {
    await parentsRemoved;
  }
}

/**
 * What one session's contenders — of every driver: locks, semaphores, read-write locks — hold and may
 * have left at the server. Held grants are marked lost together when the session is (one listener per
 * session, not one per grant). What may be left (a lease released or a place withdrawn while the
 * session was away, a create whose reply was lost) is deleted, with empty parents, by the session's
 * goodbye when it closes on purpose — a retired session reconnects only to say it — instead of staying
 * until the session timeout; closing alone would delete the nodes but leave the parents.
 */
class SessionContenders {
  static readonly #bySession = new WeakMap<ZooKeeperSession, SessionContenders>();
  /** Grants of this session, marked lost together when it is. */
  readonly held = new Set<Contender>();
  /** Contenders that sent a create in this session, until their nodes are deleted. */
  readonly sent = new Set<Contender>();

  static of(session: ZooKeeperSession): SessionContenders {
    let contenders = SessionContenders.#bySession.get(session);
    if (!contenders) {
      contenders = new SessionContenders(session);
      SessionContenders.#bySession.set(session, contenders);
    }
    return contenders;
  }

  private constructor(session: ZooKeeperSession) {
    session.onFarewell((calls) => this.#farewell(calls));
    session.lost.addEventListener(
      'abort',
      () => {
        const why = `its ZooKeeper session ${session.name} ${session.whyLost}`;
        for (const contender of this.held) contender.markLost(why);
        this.held.clear();
        // Whatever the farewell did not delete went with the session (or goes at its expiry).
        const forget = () => this.sent.clear();
        session.closed.then(forget, forget);
      },
      { once: true },
    );
  }

  async #farewell(calls: ZooKeeperCalls): Promise<void> {
    const contenders = [...this.sent];
    this.sent.clear();
    await Promise.allSettled(contenders.map((contender) => contender.removeFrom(calls)));
  }
}

/** What a request watches for: its own nodes (one watch each), its predecessor, a semaphore's leases. */
type WatchedFor = 'own-node' | 'predecessor' | 'leases';

function slotOf(purpose: WatchedFor, path: string): string {
  return purpose === 'own-node' ? `own-node:${path}` : purpose;
}

/**
 * One request between attempts (core's ticket) and, once granted, the grant's handle: its nodes, what
 * it waits for, and its watches. Every watch goes through the session's shared watches, one
 * subscription per purpose (one per own node), kept until it fires or changes path and cancelled when
 * the request is done with: however many waiters come and go, node-zookeeper-client holds one watcher
 * per watched path (dlock issue 12).
 */
export abstract class Contender {
  /** A watch fired since the last wait: keeps a wake-up that arrives before anyone waits. */
  changed = false;
  wake: (() => void) | undefined;
  /**
   * The node we wait behind: a lock's, a writer's or a mutex waiter's the node just ahead, a reader's
   * the last writer ahead.
   */
  predecessor: string | undefined;
  held = false;
  /** Released or withdrawn: nothing of it is sent any more. */
  released = false;
  /**
   * A release is deleting the grant's nodes: the deletion its own-node watch then reports (before the
   * delete's reply: the server notifies first) is that release's, not a loss.
   */
  releasing = false;
  /**
   * The grant's loss as core reads it: a GrantLoss of its own rather than an AbortController per
   * request (an EventTarget with its listener list: issue 13).
   */
  readonly lost: { aborted: boolean; reason: unknown; onLost: ((reason: unknown) => void) | undefined } = {
    aborted: false,
    reason: undefined,
    onLost: undefined,
  };
  readonly #watches = new Map<string, WatchSubscription>();

  constructor(
    readonly session: ZooKeeperSession,
    readonly key: string,
    readonly report: Report,
  ) {}

  /** What the request creates (deleted in this order by release and withdraw). */
  abstract nodes(): ProtectedNodes[];

  /** The nodes above them, innermost first, deleted with them when that leaves them empty. */
  abstract parents(): string[];

  /** The nodes whose deletion ends a grant. */
  protected abstract ownPaths(): readonly string[];

  /**
   * The subscription to hand the call that sets a (kind, path) watch for `purpose`: the one this
   * request already has, or a new one (cancelling the one it replaces: a predecessor that changed).
   */
  watch(purpose: WatchedFor, kind: WatchKind, path: string): WatchSubscription {
    const slot = slotOf(purpose, path);
    const current = this.#watches.get(slot);
    if (current?.kind === kind && current.path === path) return current;
    current?.cancel();
    const subscription = this.session.calls.watch(kind, path, (event) => {
      if (this.#watches.get(slot) === subscription) this.#watches.delete(slot);
      this.report(event, purpose);
      if (
        purpose === 'own-node' &&
        event.getType() === Event.NODE_DELETED &&
        this.held &&
        !this.released &&
        !this.releasing
      ) {
        this.markLost(`its node ${path} was deleted (by an operator, or with its session)`);
      }
      this.changed = true;
      this.wake?.();
    });
    this.#watches.set(slot, subscription);
    return subscription;
  }

  /** Stops watching for `purpose` (for 'own-node': our node at `path`, gone or given back). */
  unwatch(purpose: WatchedFor, path = ''): void {
    const slot = slotOf(purpose, path);
    this.#watches.get(slot)?.cancel();
    this.#watches.delete(slot);
  }

  /** Whether a node of this request may exist at the server (what `withdraw` would have to delete). */
  leftAnything(): boolean {
    return this.nodes().some((nodes) => nodes.present);
  }

  /** A create goes out in this session: until its nodes are deleted, the session's goodbye covers them. */
  sending(): void {
    SessionContenders.of(this.session).sent.add(this);
  }

  /** Marks the request granted: its `lost` signal now aborts when its session is lost. */
  grant(token: bigint): Grant<this> {
    this.held = true;
    // A holder waits for nothing: only the watches on its own nodes stay.
    this.unwatch('predecessor');
    this.unwatch('leases');
    const { session } = this;
    if (session.lost.aborted) {
      this.markLost(`its ZooKeeper session ${session.name} ${session.whyLost ?? 'was lost'}`);
    } else {
      SessionContenders.of(session).held.add(this);
    }
    return { token, validUntil: Number.POSITIVE_INFINITY, lost: this.lost, handle: this };
  }

  /** Deletes whatever the request may have at the server through `calls`, then its empty parents. */
  removeFrom(calls: ZooKeeperCalls): Promise<void> {
    return removeNodes(calls, this.nodes(), this.parents());
  }

  /** Done with (released or withdrawn): stop listening, and wake a wait still pending. */
  finish(deleted: boolean): void {
    this.released = true;
    const contenders = SessionContenders.of(this.session);
    contenders.held.delete(this);
    if (deleted) contenders.sent.delete(this);
    for (const subscription of this.#watches.values()) subscription.cancel();
    this.#watches.clear();
    this.wake?.();
  }

  markLost(why: string): void {
    const { lost } = this;
    if (lost.aborted) return;
    lost.aborted = true;
    lost.reason = new LockLostError(this.key, why);
    lost.onLost?.(lost.reason);
  }

  /**
   * For `extend`: every node of the grant still exists and belongs to this session; otherwise marks
   * the grant lost and throws LockLostError.
   */
  async confirmHeld(): Promise<number> {
    if (this.lost.aborted) throw this.lost.reason;
    const paths = this.ownPaths();
    const stats = await Promise.all(paths.map((path) => this.session.calls.exists(path)));
    const gone = paths.find(
      (_path, index) => stats[index]?.ephemeralOwner.readBigUInt64BE() !== this.session.id,
    );
    if (gone !== undefined) {
      const why = `its node ${gone} no longer exists (deleted by an operator, or expired with session ${this.session.name})`;
      this.markLost(why);
      throw new LockLostError(this.key, why);
    }
    return Number.POSITIVE_INFINITY;
  }
}

/**
 * A request that takes one EPHEMERAL_SEQUENTIAL node in a queue ordered by sequence: a lock's
 * (`lock-`) or a read-write lock's (`__READ__`, `__WRIT__`).
 */
export class QueueNode extends Contender {
  /** Our node's czxid once read (the token), 0 until then. */
  czxid = 0n;

  constructor(
    session: ZooKeeperSession,
    key: string,
    report: Report,
    readonly node: ProtectedNodes,
    /** What the node is, for messages: 'lock', 'read', 'write'. */
    readonly label: string,
  ) {
    super(session, key, report);
  }

  get parent(): string {
    return this.node.parent;
  }

  protected ownPaths(): readonly string[] {
    return this.node.paths;
  }

  nodes(): ProtectedNodes[] {
    return [this.node];
  }

  parents(): string[] {
    return [this.node.parent];
  }
}

export interface RecipeOptions {
  /** Where this recipe's parents live (the lock root, a semaphore's or read-write lock's root). */
  readonly root: string;
  /** The connect string, named in every BackendUnavailableError. */
  readonly address: string;
  /** The provider's current session (one per provider, shared by its drivers, opened on first use). */
  readonly session: () => Promise<ZooKeeperSession>;
  readonly onWatchEvent?: (event: ZooKeeperWatchEvent) => void;
}

/**
 * What every driver of this package has in common: key rules and limits, attempts that turn a
 * transient failure after a create into an unknown outcome, the wait for a change, creating nodes
 * under protected names, and withdraw / extend / release by what the ticket holds.
 */
export abstract class RecipeDriver<T extends Contender> {
  readonly backend = BACKEND;
  readonly limits = { minTtlMs: 1, maxKeyBytes: MAX_KEY_BYTES };
  readonly address: string;
  protected readonly root: string;
  protected readonly report: Report;
  readonly #session: () => Promise<ZooKeeperSession>;

  constructor(options: RecipeOptions) {
    this.root = options.root;
    this.address = options.address;
    this.#session = options.session;
    this.report = reporter(options.onWatchEvent);
  }

  /** The provider's current session, opened on first use (one per provider, shared by every driver). */
  session(): Promise<ZooKeeperSession> {
    return this.#session();
  }

  /** The session belongs to the lock driver, which closes it. */
  async close(): Promise<void> {}

  validateKey(key: string): void {
    // A lone surrogate has no UTF-8 form, so two such keys could share a node name.
    if (/\p{Cs}/u.test(key)) {
      throw new InvalidArgumentError('key', key, 'well-formed Unicode (no lone surrogate code units)');
    }
  }

  /** Gives up a place in line, or undoes an unknown outcome: deletes what the ticket may have created. */
  async withdraw(_request: LockRequest, ticket: T): Promise<void> {
    await this.discard(ticket);
  }

  /** Session-held: confirms the grant's nodes still exist in its session (LockLostError otherwise). */
  extend(_key: string, grant: Grant<T>): Promise<number> {
    return grant.handle.confirmHeld();
  }

  async release(_key: string, grant: Grant<T>): Promise<void> {
    await this.discard(grant.handle);
  }

  /**
   * One attempt with `ticket`, or with a fresh one (`make`) when there is none, it is done with, or it
   * belongs to a lost session (its nodes go with that session; the fresh one keeps its protected ids,
   * so a node of the old session found later is known as ours and deleted). A transient failure that
   * may leave a node of ours in place is an unknown outcome: core adopts what it left with the next
   * attempt, or undoes it by withdrawing the ticket. Any other failure is the attempt's.
   */
  protected async attemptWith(
    ticket: T | undefined,
    make: (session: ZooKeeperSession, previous: T | undefined) => T,
    run: (ticket: T) => Promise<Attempt<T, T>>,
  ): Promise<Attempt<T, T>> {
    const session = await this.session();
    const current = ticket?.session === session && !ticket.released ? ticket : make(session, ticket);
    try {
      return await run(current);
    } catch (error) {
      if (isTransient(error) && !current.released && current.leftAnything()) {
        return { outcome: 'unknown', ticket: current, cause: error };
      }
      throw error;
    }
  }

  /**
   * Resolves when `ticket`'s watch fires, the session reconnects or is lost (a watch may have fired
   * unseen), the request is given up, or `maxWaitMs` passes. `arm` sets the watch and resolves true
   * when there is nothing to wait for (the watched node is already gone, the count already fits); a
   * failure of `arm` means "look again". A watch that fired since the last attempt resolves at once.
   */
  protected waitForWatch(
    request: LockRequest,
    ticket: Contender,
    maxWaitMs: number,
    arm: () => Promise<boolean>,
  ): Promise<void> {
    const { session } = ticket;
    if (request.signal.aborted || session.lost.aborted || ticket.released) return Promise.resolve();
    if (ticket.changed) {
      ticket.changed = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let settled = false;
      const unsubscribe = session.onChange(() => done());
      const timer = setTimeout(() => done(), maxWaitMs);
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal.removeEventListener('abort', done);
        unsubscribe();
        ticket.wake = undefined;
        ticket.changed = false;
        resolve();
      };
      request.signal.addEventListener('abort', done, { once: true });
      ticket.wake = done;
      arm().then(
        (nothingToWaitFor) => {
          if (nothingToWaitFor) done();
        },
        () => done(),
      );
    });
  }

  /**
   * Waits for the deletion (or change) of `ticket.predecessor`. getData rather than exists: a node
   * already gone leaves no watch behind, and then there is nothing to wait for.
   */
  protected waitForPredecessor(request: LockRequest, ticket: Contender, maxWaitMs: number): Promise<void> {
    const { predecessor } = ticket;
    if (ticket.held || predecessor === undefined) return Promise.resolve();
    return this.waitForWatch(
      request,
      ticket,
      maxWaitMs,
      async () =>
        (await unlessMissing(
          ticket.session.calls.getData(predecessor, ticket.watch('predecessor', 'data', predecessor)),
        )) === undefined,
    );
  }

  /**
   * Creates `nodes.missing` EPHEMERAL_SEQUENTIAL nodes under their protected name, sending the creates
   * of `parents` (outermost first; persistent, NODE_EXISTS expected) in the same breath, so a free
   * name costs one round trip. `alongside` sends the reads that go with the creates, right after them
   * (replies come in order, so they see our nodes); its last result is returned. A failure that leaves
   * the outcome unknown leaves `nodes` unconfirmed and rethrows: the next attempt looks for the
   * protected id before creating again.
   */
  protected async createNodes<R>(
    ticket: Contender,
    parents: readonly { path: string; data?: Buffer }[],
    nodes: ProtectedNodes,
    data: Buffer,
    alongside: () => R,
  ): Promise<R> {
    const { calls } = ticket.session;
    const prefix = protectedNodePrefix(nodes.parent, nodes.protectedId, nodes.name);
    let reads: R | undefined;
    for (let round = 0; round < MAX_CREATE_ROUNDS && nodes.missing > 0; round++) {
      const outermost = parents.map(({ path, data: parentData }, index) =>
        calls.create(path, parentData ?? EMPTY, CreateMode.PERSISTENT).then(
          () => undefined,
          (error: unknown) => (index === 0 ? error : undefined),
        ),
      )[0];
      nodes.unconfirmed = true;
      nodes.pristine = false;
      ticket.sending();
      const created = Promise.allSettled(
        Array.from({ length: nodes.missing }, () =>
          calls.create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL),
        ),
      );
      reads = alongside();
      let failure: unknown;
      for (const result of await created) {
        if (result.status === 'fulfilled') nodes.paths.push(result.value);
        else if (!isReply(result.reason, 'NO_NODE')) failure ??= result.reason;
      }
      const parentError = await outermost;
      if (failure !== undefined) throw failure;
      // Every create was answered: refused ones (NO_NODE) were certainly not applied.
      nodes.unconfirmed = false;
      // The root is missing, or a release deleted an empty parent between our creates: go again.
      if (nodes.missing > 0 && isReply(parentError, 'NO_NODE')) await this.#createRoot(calls);
    }
    if (nodes.missing > 0) {
      throw new BackendUnavailableError(
        BACKEND,
        this.address,
        `could not create a node under ${nodes.parent}: its parent kept being deleted`,
      );
    }
    return reads ?? alongside();
  }

  /**
   * Release and withdraw, by what was sent: deletes the ticket's nodes (by path, or by protected id
   * when a create's outcome is unknown), then the parents that this leaves empty, so an idle name
   * leaves nothing behind. Idempotent; a failure leaves the ticket as it was, so core's retry really
   * sends again. Nodes of a lost session go with that session: its goodbye deletes them (and their
   * parents) as soon as it reconnects, or the server expires them; nothing to send now.
   */
  protected async discard(ticket: T): Promise<void> {
    if (ticket.released) return;
    const { session } = ticket;
    let deleted = false;
    if (!session.lost.aborted) {
      if (!session.connected) {
        // The library would queue the deletes until the reconnect, holding up a caller that core
        // answers only after this first try (an abort, a timeout). Nothing is sent: core retries.
        throw new BackendUnavailableError(
          BACKEND,
          this.address,
          `session ${session.name} is reconnecting: the nodes of "${ticket.key}" are deleted once it is back`,
        );
      }
      ticket.releasing = ticket.held;
      await ticket.removeFrom(session.calls);
      deleted = true;
    }
    ticket.finish(deleted);
  }

  /** Creates every missing node of the recipe's root (persistent, empty). */
  async #createRoot(calls: ZooKeeperCalls): Promise<void> {
    let path = '';
    for (const segment of this.root.slice(1).split('/')) {
      path += `/${segment}`;
      try {
        await calls.create(path, EMPTY, CreateMode.PERSISTENT);
      } catch (error) {
        if (isReply(error, 'NODE_EXISTS')) continue;
        if (isReply(error, 'NO_NODE')) {
          throw new BackendUnavailableError(
            BACKEND,
            this.address,
            `cannot create ${this.root}: the connect string's chroot does not exist`,
            { transient: false },
          );
        }
        throw error;
      }
    }
  }
}

/**
 * A driver of a queue recipe — the lock, the read-write lock: one EPHEMERAL_SEQUENTIAL node per
 * request under `<root>/<key>`, ordered by sequence, each waiter watching the one node whose deletion
 * can admit it.
 */
export abstract class QueueDriver extends RecipeDriver<QueueNode> {
  /**
   * One attempt of a queue recipe (a lock, a read-write lock) under `<root>/<key>`: creates our node
   * under its protected name (`queue.name`), or finds it again by that name after a lost reply, then
   * reads our node (czxid, and the watch that tells a holder its node was deleted) and the queue
   * (`queue.names`: the recipe's node names). Granted when `blocker` finds nobody ahead to wait for;
   * otherwise busy behind the node it names.
   */
  protected attemptInQueue(
    request: LockRequest,
    ticket: QueueNode | undefined,
    queue: { readonly name: string; readonly names: readonly string[]; readonly label: string },
    blocker: (ahead: readonly string[]) => string | undefined,
  ): Promise<Attempt<QueueNode, QueueNode>> {
    const make = (session: ZooKeeperSession, previous: QueueNode | undefined) =>
      new QueueNode(
        session,
        request.key,
        this.report,
        previous?.node.again() ?? new ProtectedNodes(lockPath(this.root, request.key), queue.name),
        queue.label,
      );
    return this.attemptWith(ticket, make, (current) =>
      this.#queueRound(current, request, queue.names, blocker),
    );
  }

  async #queueRound(
    ticket: QueueNode,
    request: LockRequest,
    names: readonly string[],
    blocker: (ahead: readonly string[]) => string | undefined,
  ): Promise<Attempt<QueueNode, QueueNode>> {
    const { session, parent, node } = ticket;
    const { calls } = session;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      await confirmNodes(calls, node);
      // The name our node gets when its create is the first child of a parent created just before it,
      // as when the key is free (sequence 0, the parent's cversion). It is read, with the watch, in
      // the create's batch: uncontended, the create, our node's czxid and watch, and the queue cost one
      // round trip. Only while no create was ever sent under our protected id: then no other node of
      // ours can have that name, and a read of a name that is not ours finds nothing and leaves no watch.
      const guess = node.pristine
        ? `${protectedNodePrefix(parent, node.protectedId, node.name)}${FIRST_SEQUENCE}`
        : undefined;
      let sent: { own: Promise<HolderInfo | undefined> | undefined; children: Promise<string[]> } | undefined;
      if (node.missing > 0) {
        // A request given up on must not queue any more: core withdraws what the ticket holds.
        if (request.signal.aborted) return { outcome: 'busy', ticket };
        sent = await this.createNodes(
          ticket,
          [{ path: parent }],
          node,
          Buffer.from(request.identity, 'utf8'),
          () => ({
            own:
              guess === undefined
                ? undefined
                : quiet(describeNode(calls, guess, ticket.watch('own-node', 'data', guess))),
            children: quiet(childrenOf(calls, parent)),
          }),
        );
        ticket.czxid = 0n;
      }
      const path = node.paths[0] as string;
      if (guess !== undefined && path !== guess) ticket.unwatch('own-node', guess);
      // Replies come in order: reads sent with the create see our node.
      const [own, children] = await Promise.all([
        ticket.czxid !== 0n
          ? undefined
          : path === guess && sent?.own
            ? sent.own
            : describeNode(calls, path, ticket.watch('own-node', 'data', path)),
        sent?.children ?? childrenOf(calls, parent),
      ]);
      if (own) ticket.czxid = own.token;
      // Withdrawn while this attempt ran (core gave up on it): nothing more to do.
      if (ticket.released) return { outcome: 'busy', ticket };
      const queue = queueOrder(await dropDuplicates(calls, node, children), names);
      const index = ticket.czxid === 0n ? -1 : queue.indexOf(path.slice(parent.length + 1));
      if (index >= 0) {
        const blocking = blocker(queue.slice(0, index));
        if (blocking === undefined) return { outcome: 'granted', grant: ticket.grant(ticket.czxid) };
        ticket.predecessor = `${parent}/${blocking}`;
        return { outcome: 'busy', ticket };
      }
      // Our node is gone (an operator deleted it): take a new place in line.
      ticket.unwatch('own-node', path);
      node.paths = [];
      ticket.czxid = 0n;
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the ${ticket.label} node for "${request.key}" kept disappearing under ${parent}`,
    );
  }

  waitForChange(request: LockRequest, ticket: QueueNode | undefined, maxWaitMs: number): Promise<void> {
    return ticket ? this.waitForPredecessor(request, ticket, maxWaitMs) : Promise.resolve();
  }
}
