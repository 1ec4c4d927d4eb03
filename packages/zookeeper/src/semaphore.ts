import {
  type Attempt,
  BackendUnavailableError,
  type Capabilities,
  type Grant,
  type PermitHolder,
  type PermitRequest,
  type SemaphoreDriver,
  SemaphoreLimitMismatchError,
} from '@dlock/core';
import type { Event } from 'node-zookeeper-client';
import { BACKEND, unlessMissing } from './client.js';
import {
  LEASE_NAME,
  LOCK_NAME,
  SEMAPHORE_LEASES,
  SEMAPHORE_LOCKS,
  lockPath,
  protectedIdOf,
  queueOrder,
} from './layout.js';
import {
  MAX_CREATE_ROUNDS,
  ProtectedNodes,
  RecipeDriver,
  RecipeTicket,
  type WatchPurpose,
  quiet,
} from './nodes.js';
import type { ZooKeeperSession } from './session.js';

export const zooKeeperSemaphoreCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    "Curator's InterProcessSemaphoreV2 layout: a permit is an ephemeral lease node and lives as long as its " +
    'ZooKeeper session (ttlMs plays no part); its signal aborts when the client notices the session is in doubt ' +
    "(at once on a disconnect under onDisconnect 'abort', the default). A process paused past the session " +
    'timeout cannot notice in time: the server deletes its lease and admits a waiter while the paused process ' +
    "still believes it holds a permit. Pass the token (the lease node's czxid, larger for every later grant) " +
    'to the resource. The limit is stored with the semaphore for dlock clients only: a Curator client trusts ' +
    'its own maxLeases, so every client of one semaphore must be configured with the same limit.',
};

/** Where one semaphore's nodes live: Curator's `<path>/locks` (internal mutex) and `<path>/leases`. */
interface SemaphorePaths {
  readonly base: string;
  readonly locks: string;
  readonly leases: string;
}

function limitData(limit: number): Buffer {
  return Buffer.from(String(limit), 'utf8');
}

/** The limit stored in the semaphore's node, or undefined when there is none (a node Curator created). */
function storedLimit(data: Buffer | undefined): number | undefined {
  const text = data?.toString('utf8') ?? '';
  return /^[1-9]\d{0,8}$/.test(text) ? Number(text) : undefined;
}

/**
 * A permit request between attempts, then the grant's handle: first a node in the internal mutex's
 * queue (`queued`), then — holding the mutex — `permits` lease nodes, waiting until the leases fit the
 * limit (`leasing`), then the leases alone (`held`; the mutex is given back at the grant).
 */
class PermitTicket extends RecipeTicket {
  stage: 'queued' | 'leasing' | 'held' = 'queued';
  /** Our node in the internal mutex's queue (`<path>/locks/_c_<uuid>-lock-<seq>`). */
  readonly mutex: ProtectedNodes;
  /** Our lease nodes, one per permit, under one protected id (`<path>/leases/_c_<uuid>-lease-<seq>`). */
  readonly leases: ProtectedNodes;
  /** Whether this mutex hold has checked (and, the semaphore being idle, stored) the limit. */
  limitChecked = false;

  constructor(
    session: ZooKeeperSession,
    request: PermitRequest,
    readonly paths: SemaphorePaths,
    report: (event: Event, purpose: WatchPurpose) => void,
  ) {
    super(session, request.key, report);
    this.mutex = new ProtectedNodes(paths.locks, LOCK_NAME);
    this.leases = new ProtectedNodes(paths.leases, LEASE_NAME, request.permits);
  }

  protected ownPaths(): string[] {
    return this.leases.paths;
  }

  protected override purposeOf(path: string): WatchPurpose {
    return path === this.paths.leases ? 'leases' : 'predecessor';
  }

  nodes(): ProtectedNodes[] {
    return [this.leases, this.mutex];
  }

  parents(): string[] {
    return [this.paths.leases, this.paths.locks, this.paths.base];
  }
}

/**
 * Counting semaphores in Apache Curator's `InterProcessSemaphoreV2` layout, so dlock and Curator
 * clients share one semaphore on one path:
 *
 *   <root>/<encoded name>               data: the limit (dlock only; Curator ignores it)
 *   ├── locks/_c_<uuid>-lock-<seq>      the internal mutex (Curator's InterProcessMutex layout)
 *   └── leases/_c_<uuid>-lease-<seq>    one EPHEMERAL_SEQUENTIAL node per permit held
 *
 * Acquiring is Curator's protocol: take the internal mutex (queue in it, each waiter watching only its
 * predecessor), create the lease node(s), and, while holding the mutex, wait on the leases' children
 * until their number is within the limit; then give the mutex back. Only the head of the mutex queue
 * watches the leases, so a release wakes one client, and waiters are served in arrival order without
 * barging (a request for several permits holds everyone behind it until they fit). A permit's token
 * is its (first) lease node's czxid: lease nodes are created only by the mutex holder, one holder after
 * another, so a later grant always has a later zxid.
 */
export class ZooKeeperSemaphoreDriver
  extends RecipeDriver<PermitTicket>
  implements SemaphoreDriver<PermitTicket, PermitTicket>
{
  readonly capabilities = zooKeeperSemaphoreCapabilities;

  /** The semaphore `key`'s nodes. */
  paths(key: string): SemaphorePaths {
    const base = lockPath(this.root, key);
    return { base, locks: `${base}/${SEMAPHORE_LOCKS}`, leases: `${base}/${SEMAPHORE_LEASES}` };
  }

  /**
   * One attempt, from wherever the ticket stands: queue in the internal mutex (or re-check that place),
   * and once first in it, create the lease nodes and count the leases. A ticket whose create's reply
   * was lost finds its nodes by their protected ids first. Returns 'unknown' whenever a transient
   * failure may leave a node of ours in place.
   */
  async attempt(
    request: PermitRequest,
    ticket: PermitTicket | undefined,
  ): Promise<Attempt<PermitTicket, PermitTicket>> {
    const make = (session: ZooKeeperSession) =>
      new PermitTicket(session, request, this.paths(request.key), this.report);
    return this.attemptWith(ticket, make, async (current) => {
      for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
        if (current.stage === 'queued') {
          const queued = await this.#queue(current, request);
          if (queued) return queued;
        }
        const leased = await this.#lease(current, request);
        if (leased) return leased;
      }
      throw new BackendUnavailableError(
        BACKEND,
        this.address,
        `the node of semaphore "${request.key}" kept disappearing (${current.paths.base})`,
      );
    });
  }

  waitForChange(request: PermitRequest, ticket: PermitTicket | undefined, maxWaitMs: number): Promise<void> {
    if (!ticket) return Promise.resolve();
    const { session } = ticket;
    if (ticket.stage === 'queued' && ticket.predecessor !== undefined) {
      const predecessor = ticket.predecessor;
      // getData rather than exists: a node already gone leaves no watch behind.
      return this.waitForWatch(
        request,
        ticket,
        maxWaitMs,
        async () =>
          (await unlessMissing(session.calls.getData(predecessor, ticket.watch('data', predecessor)))) ===
          undefined,
      );
    }
    if (ticket.stage === 'leasing') {
      return this.waitForWatch(request, ticket, maxWaitMs, async () => {
        const { children } = await session.calls.getChildren(
          ticket.paths.leases,
          ticket.watch('children', ticket.paths.leases),
        );
        // Changed since the attempt counted (a release in between): count again now.
        return (
          children.length <= request.limit || !ticket.leases.paths.every((path) => isListed(path, children))
        );
      });
    }
    return Promise.resolve();
  }

  /**
   * Who holds permits, oldest grant first: the lease nodes grouped by protected id (a dlock lease of
   * several permits is several nodes under one id; each Curator lease has an id of its own). When the
   * leases exceed the stored limit, the newest group is the mutex holder's, still waiting: not a holder.
   */
  async holders(key: string): Promise<PermitHolder[]> {
    const session = await this.locks.session();
    const paths = this.paths(key);
    const [base, names] = await Promise.all([
      unlessMissing(session.calls.getData(paths.base)),
      this.children(session, paths.leases),
    ]);
    const groups: string[][] = [];
    const byId = new Map<string, string[]>();
    for (const name of queueOrder(names, [LEASE_NAME])) {
      const id = protectedIdOf(name);
      const group = id === undefined ? undefined : byId.get(id);
      if (group) group.push(name);
      else {
        const created = [name];
        groups.push(created);
        if (id !== undefined) byId.set(id, created);
      }
    }
    const limit = storedLimit(base?.data);
    if (limit !== undefined && names.length > limit) groups.pop();
    const described = await Promise.all(
      groups.map((group) => this.describe(session, `${paths.leases}/${group[0]}`)),
    );
    return described.flatMap((holder, index) =>
      holder ? [{ identity: holder.identity, token: holder.token, permits: groups[index]?.length ?? 1 }] : [],
    );
  }

  /**
   * The internal mutex: creates our node (with the semaphore's node, holding our limit if we are first,
   * and `locks` in the same breath), checks the stored limit on arrival, and finds our place. Returns
   * 'busy' while someone is ahead, undefined once we hold the mutex.
   */
  async #queue(
    ticket: PermitTicket,
    request: PermitRequest,
  ): Promise<Attempt<PermitTicket, PermitTicket> | undefined> {
    const { session, paths, mutex } = ticket;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      await this.confirmNodes(session, mutex);
      let locks: Promise<string[]>;
      if (mutex.missing > 0) {
        // A request given up on must not queue any more: core withdraws what the ticket holds.
        if (request.signal.aborted) return { outcome: 'busy', ticket };
        const arrival = await this.createNodes(
          session,
          [{ path: paths.base, data: limitData(request.limit) }, { path: paths.locks }],
          mutex,
          Buffer.from(request.identity, 'utf8'),
          () => ({
            base: quiet(unlessMissing(session.calls.getData(paths.base))),
            leases: quiet(this.children(session, paths.leases)),
            locks: quiet(this.children(session, paths.locks)),
          }),
        );
        // Fail fast: permits are held under another limit (the check that counts comes with the mutex).
        const stored = storedLimit((await arrival.base)?.data);
        if (stored !== undefined && stored !== request.limit && (await arrival.leases).length > 0) {
          await this.#refuse(ticket, request, stored);
        }
        locks = arrival.locks;
      } else {
        locks = this.children(session, paths.locks);
      }
      const queue = queueOrder(await locks);
      const index = queue.indexOf(mutex.paths[0]?.slice(paths.locks.length + 1) ?? '');
      if (index === 0) {
        ticket.stage = 'leasing';
        return undefined;
      }
      if (index > 0) {
        ticket.predecessor = `${paths.locks}/${queue[index - 1]}`;
        return { outcome: 'busy', ticket };
      }
      // Our node is gone (an operator deleted it): queue again.
      mutex.paths = [];
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the internal mutex node of semaphore "${request.key}" kept disappearing under ${paths.locks}`,
    );
  }

  /**
   * Holding the mutex: checks the limit once (storing ours when no one else holds a permit), creates
   * the lease nodes, counts the leases. Granted when they fit: the mutex is given back in the same
   * breath as our lease nodes are read for their czxid. Undefined when the semaphore's node vanished
   * (an operator): the request queues again.
   */
  async #lease(
    ticket: PermitTicket,
    request: PermitRequest,
  ): Promise<Attempt<PermitTicket, PermitTicket> | undefined> {
    const { session, paths, leases } = ticket;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      await this.confirmNodes(session, leases);
      let listed: string[];
      if (leases.missing > 0 || !ticket.limitChecked) {
        if (request.signal.aborted) return { outcome: 'busy', ticket };
        const base = quiet(unlessMissing(session.calls.getData(paths.base)));
        const before = quiet(this.children(session, paths.leases));
        const after = await this.createNodes(
          session,
          [{ path: paths.leases }],
          leases,
          Buffer.from(request.identity, 'utf8'),
          () => quiet(this.children(session, paths.leases)),
        );
        if (!ticket.limitChecked) {
          const stored = storedLimit((await base)?.data);
          if (stored !== request.limit) {
            const others = (await before).filter((name) => protectedIdOf(name) !== leases.protectedId);
            if (stored !== undefined && others.length > 0) await this.#refuse(ticket, request, stored);
            // Nobody else holds a permit (or only Curator clients, which store nothing): ours counts.
            if (!(await unlessMissing(session.calls.setData(paths.base, limitData(request.limit))))) {
              // The semaphore's node is gone, so our mutex node went with it: start over.
              await this.removeNodes(session, [leases, ticket.mutex], []);
              ticket.stage = 'queued';
              ticket.limitChecked = false;
              return undefined;
            }
          }
          ticket.limitChecked = true;
        }
        listed = await after;
      } else {
        const [children, stillHeld] = await Promise.all([
          this.children(session, paths.leases),
          this.#holdsMutex(ticket),
        ]);
        if (!stillHeld) {
          // Our mutex node is gone (given back by a grant whose reply was lost, or deleted by an
          // operator): someone else may be creating leases now, and a grant with our older lease would
          // break the order of tokens. Give the leases back and queue again.
          await this.removeNodes(session, [leases, ticket.mutex], []);
          ticket.stage = 'queued';
          ticket.limitChecked = false;
          return undefined;
        }
        listed = children;
      }
      const vanished = leases.paths.filter((path) => !isListed(path, listed));
      if (vanished.length > 0) {
        // An operator deleted a lease node of ours (Curator: "Sequential path not found"): create it again.
        leases.paths = leases.paths.filter((path) => !vanished.includes(path));
        continue;
      }
      if (listed.length > request.limit) return { outcome: 'busy', ticket };
      const granted = await this.#grant(ticket);
      if (granted) return granted;
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the lease nodes of semaphore "${request.key}" kept disappearing under ${paths.leases}`,
    );
  }

  /**
   * Reads our lease nodes (czxid for the token, and a watch that tells a holder its node was deleted)
   * and deletes our mutex node in the same breath. Undefined when a lease node vanished meanwhile.
   */
  async #grant(ticket: PermitTicket): Promise<Attempt<PermitTicket, PermitTicket> | undefined> {
    const { session, leases } = ticket;
    const read = Promise.all(leases.paths.map((path) => this.describe(session, path, ticket)));
    const mutexReturned = this.removeNodes(session, [ticket.mutex], [ticket.paths.locks]);
    const [described] = await Promise.all([read, mutexReturned]);
    if (described.some((node) => node === undefined)) {
      leases.paths = leases.paths.filter((_path, index) => described[index] !== undefined);
      return undefined;
    }
    ticket.stage = 'held';
    const tokens = described.map((node) => node?.token ?? 0n);
    return { outcome: 'granted', grant: ticket.grant(tokens.reduce((a, b) => (b < a ? b : a))) };
  }

  /** Whether our node in the internal mutex still exists (so we still hold the mutex). */
  async #holdsMutex(ticket: PermitTicket): Promise<boolean> {
    const [path] = ticket.mutex.paths;
    return path !== undefined && (await ticket.session.calls.exists(path)) !== null;
  }

  /** Undoes the request (its nodes go, and the semaphore's if that leaves them empty), then refuses it. */
  async #refuse(ticket: PermitTicket, request: PermitRequest, stored: number): Promise<never> {
    await this.discard(ticket);
    throw new SemaphoreLimitMismatchError(request.key, request.limit, stored);
  }
}

/** Whether the node at `path` is among `children` (names) of its parent. */
function isListed(path: string, children: readonly string[]): boolean {
  return children.includes(path.slice(path.lastIndexOf('/') + 1));
}
