import { randomUUID } from 'node:crypto';
import {
  type Attempt,
  BackendUnavailableError,
  type Grant,
  LockLostError,
  type LockRequest,
  isTransient,
} from '@dlock/core';
import { CreateMode, Event, type Stat } from 'node-zookeeper-client';
import { BACKEND, type WatchSubscription, type Watcher, isReply, unlessMissing } from './client.js';
import { EVENT_TYPES, type ZooKeeperLockDriver, type ZooKeeperWatchEvent, zxid } from './driver.js';
import { protectedIdOf, protectedNodePrefix, queueOrder } from './layout.js';
import type { ZooKeeperSession } from './session.js';

/**
 * What the semaphore and read-write recipes share: the lock driver's session, key rules and limits,
 * nodes created under protected names (found again, adopted or deleted after a lost reply), parents
 * created on demand and deleted when empty, a waiter's one watch, and a grant that is lost with its
 * session or its node.
 */

export const EMPTY = Buffer.alloc(0);
/**
 * Rounds of "create the parents, create our node" lost to a concurrent clean-up of an empty parent,
 * or of "our node vanished, queue again" (an operator deleting it), within one attempt: the recipe's
 * own race, not a retry of a failure (failures go back to core's retry policy).
 */
export const MAX_CREATE_ROUNDS = 8;

/**
 * `promise`, marked as handled: for reads sent alongside a create, which the caller abandons when the
 * create fails (their failure is then of no interest, and must not surface as an unhandled rejection).
 */
export function quiet<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

export type WatchPurpose = ZooKeeperWatchEvent['purpose'];

export interface RecipeOptions {
  /** The provider's lock driver: its session (shared, so crash and expiry hit every primitive), key rules and limits. */
  readonly locks: ZooKeeperLockDriver;
  /** Where this recipe's parents live (a semaphore's or read-write lock's root). */
  readonly root: string;
  readonly onWatchEvent?: (event: ZooKeeperWatchEvent) => void;
}

/**
 * What every recipe's driver has in common: key rules and limits (the lock driver's), the session,
 * attempts that turn a failure after a create into an unknown outcome, and withdraw / extend / release
 * by what the ticket holds.
 */
export abstract class RecipeDriver<T extends RecipeTicket> {
  readonly backend = BACKEND;
  readonly address: string;
  readonly limits: ZooKeeperLockDriver['limits'];
  protected readonly locks: ZooKeeperLockDriver;
  protected readonly root: string;
  readonly #onWatchEvent: RecipeOptions['onWatchEvent'];

  constructor(options: RecipeOptions) {
    this.locks = options.locks;
    this.root = options.root;
    this.address = options.locks.address;
    this.limits = options.locks.limits;
    this.#onWatchEvent = options.onWatchEvent;
  }

  validateKey(key: string): void {
    this.locks.validateKey(key);
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

  /** The session is the lock driver's and closes with it. */
  async close(): Promise<void> {}

  /** Tells `onWatchEvent` (diagnostics, benchmarks) about a watch notification. */
  protected readonly report = (event: Event, purpose: WatchPurpose): void => {
    const type = EVENT_TYPES[event.getType()];
    if (this.#onWatchEvent && type) this.#onWatchEvent({ path: event.getPath(), type, purpose });
  };

  /** Creates every missing node of `path` (persistent, empty): the recipe's root. */
  protected async createRoot(session: ZooKeeperSession): Promise<void> {
    let path = '';
    for (const segment of this.root.slice(1).split('/')) {
      path += `/${segment}`;
      try {
        await session.calls.create(path, EMPTY, CreateMode.PERSISTENT);
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

  /**
   * Creates `nodes.missing` EPHEMERAL_SEQUENTIAL nodes under their protected name, sending the creates
   * of `parents` (outermost first; persistent, NODE_EXISTS expected) in the same breath, so a free
   * name costs one round trip. `alongside` sends the reads that go with the creates, right after them
   * (replies come in order, so they see our nodes); its last result is returned. A failure that leaves
   * the outcome unknown marks `nodes` unconfirmed and rethrows: the next attempt looks for the
   * protected id before creating again.
   */
  protected async createNodes<R>(
    session: ZooKeeperSession,
    parents: readonly { path: string; data?: Buffer }[],
    nodes: ProtectedNodes,
    data: Buffer,
    alongside: () => R,
  ): Promise<R> {
    const prefix = protectedNodePrefix(nodes.parent, nodes.protectedId, nodes.name);
    let reads: R | undefined;
    for (let round = 0; round < MAX_CREATE_ROUNDS && nodes.missing > 0; round++) {
      const outermost = parents.map(({ path, data: parentData }, index) =>
        session.calls.create(path, parentData ?? EMPTY, CreateMode.PERSISTENT).then(
          () => undefined,
          (error: unknown) => (index === 0 ? error : undefined),
        ),
      )[0];
      nodes.unconfirmed = true;
      const created = Promise.allSettled(
        Array.from({ length: nodes.missing }, () =>
          session.calls.create(prefix, data, CreateMode.EPHEMERAL_SEQUENTIAL),
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
      if (nodes.missing > 0 && isReply(parentError, 'NO_NODE')) await this.createRoot(session);
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
   * Settles what a create whose reply was lost left behind: our nodes are those carrying our protected
   * id (replies come in order, so a listing answered after the create is conclusive). Extras — a create
   * sent twice — are deleted, newest first.
   */
  protected async confirmNodes(session: ZooKeeperSession, nodes: ProtectedNodes): Promise<void> {
    if (!nodes.unconfirmed) return;
    const names = await this.children(session, nodes.parent);
    const mine = queueOrder(
      names.filter((child) => protectedIdOf(child) === nodes.protectedId),
      [nodes.name],
    ).map((child) => `${nodes.parent}/${child}`);
    const extras = mine.splice(nodes.wanted);
    await Promise.all(extras.map((path) => unlessMissing(session.calls.remove(path))));
    nodes.paths = mine;
    nodes.unconfirmed = false;
  }

  /**
   * Deletes `nodes` (by path, or by protected id when a create's outcome is unknown), then each of
   * `parents` (innermost first) that this leaves empty; all requests go out together. NOT_EMPTY and
   * NO_NODE on a parent are the expected outcomes.
   */
  protected async removeNodes(
    session: ZooKeeperSession,
    nodes: readonly ProtectedNodes[],
    parents: readonly string[],
  ): Promise<void> {
    for (const node of nodes) if (node.unconfirmed) await this.confirmNodes(session, node);
    const removed = Promise.all(
      nodes.flatMap((node) => node.paths.map((path) => unlessMissing(session.calls.remove(path)))),
    );
    const parentsRemoved = Promise.all(parents.map((parent) => session.calls.remove(parent).catch(() => {})));
    try {
      await removed;
      for (const node of nodes) node.paths = [];
    } finally {
      await parentsRemoved;
    }
  }

  /**
   * Release and withdraw: deletes the ticket's nodes (by path, or by protected id when a create's
   * outcome is unknown), then the recipe's nodes that this leaves empty, so an idle name leaves nothing
   * behind. Idempotent; a failure leaves the ticket as it was, so core's retry really sends again.
   * Nodes of a lost session go with the session.
   */
  protected async discard(ticket: T): Promise<void> {
    if (ticket.released) return;
    if (!ticket.session.lost.aborted)
      await this.removeNodes(ticket.session, ticket.nodes(), ticket.parents());
    ticket.finish();
  }

  protected async children(session: ZooKeeperSession, parent: string): Promise<string[]> {
    return (await unlessMissing(session.calls.getChildren(parent)))?.children ?? [];
  }

  /** Identity and token of the node at `path` (undefined once it is gone), setting `ticket`'s watch on it. */
  protected async describe(
    session: ZooKeeperSession,
    path: string,
    ticket?: RecipeTicket,
  ): Promise<{ identity: string; token: bigint; stat: Stat } | undefined> {
    const found = await unlessMissing(session.calls.getData(path, ticket?.watch('data', path)));
    if (!found) return undefined;
    // Curator stores the client's IP address; an empty node is named by its path.
    const identity = found.data.length > 0 ? found.data.toString('utf8') : path;
    return { identity, token: zxid(found.stat), stat: found.stat };
  }

  /**
   * Resolves when `ticket`'s watch fires, the session reconnects or is lost (a watch may have fired
   * unseen), the request is given up, or `maxWaitMs` passes. `arm` sets the watch and resolves true
   * when there is nothing to wait for (the watched node is already gone, the count already fits).
   * A watch that fired since the last attempt resolves at once.
   */
  protected waitForWatch(
    request: LockRequest,
    ticket: RecipeTicket,
    maxWaitMs: number,
    arm: () => Promise<boolean>,
  ): Promise<void> {
    const { session } = ticket;
    if (request.signal.aborted || session.lost.aborted) return Promise.resolve();
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
   * One attempt with `ticket`, or with a fresh one (`make`) when there is none or it belongs to a lost
   * session (its nodes go with that session). A transient failure that may leave a node of ours in
   * place is an unknown outcome: core adopts what it left with the next attempt, or undoes it by
   * withdrawing the ticket. Any other failure is the attempt's.
   */
  protected async attemptWith(
    ticket: T | undefined,
    make: (session: ZooKeeperSession) => T,
    run: (ticket: T) => Promise<Attempt<T, T>>,
  ): Promise<Attempt<T, T>> {
    const session = await this.locks.session();
    const current = ticket?.session === session && !ticket.released ? ticket : make(session);
    try {
      return await run(current);
    } catch (error) {
      if (isTransient(error) && current.leftAnything())
        return { outcome: 'unknown', ticket: current, cause: error };
      throw error;
    }
  }
}

/**
 * The node(s) a request creates under one protected id (`_c_<protectedId>-<name><seq>`): one for a
 * lock node, `wanted` for a multi-permit lease (Curator counts each lease node as one permit).
 */
export class ProtectedNodes {
  readonly protectedId = randomUUID();
  /** Confirmed paths, oldest first. */
  paths: string[] = [];
  /** A create was sent and its outcome is unknown: a node of ours may exist that `paths` lacks. */
  unconfirmed = false;

  constructor(
    readonly parent: string,
    readonly name: string,
    readonly wanted = 1,
  ) {}

  get missing(): number {
    return this.wanted - this.paths.length;
  }

  /** Whether anything of ours may exist at the server. */
  get present(): boolean {
    return this.unconfirmed || this.paths.length > 0;
  }
}

/**
 * A request's state between attempts (core's ticket) and, once granted, the grant's handle. It keeps
 * one watcher function for its whole life, so node-zookeeper-client, which de-duplicates watchers by
 * function, registers it at most once per path however often the request waits.
 */
export abstract class RecipeTicket {
  /** A watch fired since the last wait: keeps a wake-up that arrives before anyone waits. */
  changed = false;
  wake: (() => void) | undefined;
  /**
   * The node we wait behind: a writer's or a mutex waiter's the node just ahead, a reader's the last
   * writer ahead.
   */
  predecessor: string | undefined;
  held = false;
  released = false;
  readonly lost = new AbortController();
  readonly onWatch: Watcher;
  #detach: (() => void) | undefined;
  /** One subscription to the session's shared watches per (kind, path), until it fires or the ticket finishes. */
  readonly #watches = new Map<string, WatchSubscription>();

  constructor(
    readonly session: ZooKeeperSession,
    readonly key: string,
    report: (event: Event, purpose: WatchPurpose) => void,
  ) {
    this.onWatch = (event) => {
      const path = event.getPath();
      const own = this.ownPaths().includes(path);
      report(event, own ? 'own-node' : this.purposeOf(path));
      if (own && event.getType() === Event.NODE_DELETED && this.held && !this.released) {
        this.markLost(`its node ${path} was deleted (by an operator, or with its session)`);
      }
      this.changed = true;
      this.wake?.();
    };
  }

  /**
   * What to hand a call that sets a watch of `kind` on `path` for this request: the ticket's one
   * watcher function (the only place that knows how node-zookeeper-client is given a watcher).
   */
  watch(kind: 'data' | 'children', path: string): WatchSubscription {
    const id = `${kind}:${path}`;
    let subscription = this.#watches.get(id);
    if (!subscription) {
      const created = this.session.calls.watch(kind, path, (event) => {
        if (this.#watches.get(id) === created) this.#watches.delete(id);
        this.onWatch(event);
      });
      subscription = created;
      this.#watches.set(id, subscription);
    }
    return subscription;
  }

  /** The nodes whose deletion ends a grant. */
  protected abstract ownPaths(): string[];

  /** What a watch on another path is for (the predecessor, the leases). */
  protected purposeOf(_path: string): WatchPurpose {
    return 'predecessor';
  }

  /** What the request creates (deleted in this order by release and withdraw). */
  abstract nodes(): ProtectedNodes[];

  /** The recipe's nodes above them, innermost first, deleted with them when that leaves them empty. */
  abstract parents(): string[];

  /** Whether a node of this request may exist at the server (what `withdraw` would have to delete). */
  leftAnything(): boolean {
    return this.nodes().some((nodes) => nodes.present);
  }

  /** Marks the ticket granted: its `lost` signal now aborts when its session is lost. */
  grant(token: bigint): Grant<this> {
    this.held = true;
    const { session } = this;
    const onLost = () =>
      this.markLost(`its ZooKeeper session ${session.name} ${session.whyLost ?? 'was lost'}`);
    if (session.lost.aborted) onLost();
    else {
      session.lost.addEventListener('abort', onLost, { once: true });
      this.#detach = () => session.lost.removeEventListener('abort', onLost);
    }
    return { token, validUntil: Number.POSITIVE_INFINITY, lost: this.lost.signal, handle: this };
  }

  /** Done with: released or withdrawn. Stops listening to the session. */
  finish(): void {
    this.released = true;
    this.#detach?.();
    this.#detach = undefined;
    for (const subscription of this.#watches.values()) subscription.cancel();
    this.#watches.clear();
    this.wake?.();
  }

  markLost(why: string): void {
    if (!this.lost.signal.aborted) this.lost.abort(new LockLostError(this.key, why));
  }

  /**
   * For `extend`: every node of the grant still exists and belongs to this session; otherwise marks
   * the grant lost and throws LockLostError.
   */
  async confirmHeld(): Promise<number> {
    if (this.lost.signal.aborted) throw this.lost.signal.reason;
    const stats = await Promise.all(this.ownPaths().map((path) => this.session.calls.exists(path)));
    const gone = this.ownPaths().find(
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
