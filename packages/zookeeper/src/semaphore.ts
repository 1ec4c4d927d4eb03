import {
  type Attempt,
  BackendUnavailableError,
  type Capabilities,
  type PermitHolder,
  type PermitRequest,
  type SemaphoreDriver,
  SemaphoreLimitMismatchError,
} from '@dlock/core';
import { BACKEND, unlessMissing } from './client.js';
import {
  LEASE_NAME,
  LOCK_NAME,
  SEMAPHORE_LEASES,
  SEMAPHORE_LOCKS,
  isLockNode,
  lockPath,
  protectedIdOf,
  queueOrder,
} from './layout.js';
import {
  Contender,
  MAX_CREATE_ROUNDS,
  ProtectedNodes,
  RecipeDriver,
  type Report,
  childrenOf,
  confirmNodes,
  describeNode,
  dropDuplicates,
  quiet,
  removeNodes,
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
 * The lease nodes among the children of `leases`: Curator's protected `_c_<uuid>-lease-<seq>` (what dlock
 * and Curator create) or a plain `lease-<seq>`. Anything else there (an operator's `#meta`, a tool's
 * node) holds no permit: counted, it would occupy a permit for ever while `holders()` shows nobody.
 * Curator counts every child (`children.size() <= maxLeases`), so a foreign child only makes a Curator
 * client stricter than dlock: the number of lease nodes still never exceeds the limit.
 */
function leaseNodes(children: readonly string[]): string[] {
  return children.filter((name) => isLockNode(name, [LEASE_NAME]));
}

/** Whether the node at `path` is among `children` (names) of its parent. */
function isListed(path: string, children: readonly string[]): boolean {
  return children.includes(path.slice(path.lastIndexOf('/') + 1));
}

/**
 * A permit request between attempts, then the grant's handle: first a node in the internal mutex's
 * queue (`queued`), then — holding the mutex — `permits` lease nodes, waiting until the leases fit the
 * limit (`leasing`), then the leases alone (`held`; the mutex is given back at the grant).
 */
class PermitTicket extends Contender {
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
    report: Report,
    /** The same request's ticket in a session since lost: its protected ids are kept. */
    previous: PermitTicket | undefined,
  ) {
    super(session, request.key, report);
    this.mutex = previous?.mutex.again() ?? new ProtectedNodes(paths.locks, LOCK_NAME);
    this.leases = previous?.leases.again() ?? new ProtectedNodes(paths.leases, LEASE_NAME, request.permits);
  }

  protected ownPaths(): readonly string[] {
    return this.leases.paths;
  }

  nodes(): ProtectedNodes[] {
    return [this.leases, this.mutex];
  }

  parents(): string[] {
    return [this.paths.leases, this.paths.locks, this.paths.base];
  }

  /** Gives the leases (and the mutex, if still ours) back and starts over at the mutex queue. */
  async queueAgain(): Promise<void> {
    for (const path of this.leases.paths) this.unwatch('own-node', path);
    await removeNodes(this.session.calls, [this.leases, this.mutex], []);
    this.stage = 'queued';
    this.limitChecked = false;
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
  attempt(
    request: PermitRequest,
    ticket: PermitTicket | undefined,
  ): Promise<Attempt<PermitTicket, PermitTicket>> {
    const make = (session: ZooKeeperSession, previous: PermitTicket | undefined) =>
      new PermitTicket(session, request, this.paths(request.key), this.report, previous);
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

  /** Queued: the predecessor in the mutex queue. Holding the mutex: the count of the leases. */
  waitForChange(request: PermitRequest, ticket: PermitTicket | undefined, maxWaitMs: number): Promise<void> {
    if (ticket?.stage === 'queued') return this.waitForPredecessor(request, ticket, maxWaitMs);
    if (ticket?.stage !== 'leasing') return Promise.resolve();
    const { calls } = ticket.session;
    const { leases } = ticket.paths;
    return this.waitForWatch(request, ticket, maxWaitMs, async () => {
      const { children } = await calls.getChildren(leases, ticket.watch('leases', 'children', leases));
      // Changed since the attempt counted (a release in between): count again now.
      return (
        leaseNodes(children).length <= request.limit ||
        !ticket.leases.paths.every((path) => isListed(path, children))
      );
    });
  }

  /**
   * Who holds permits, oldest grant first: the lease nodes grouped by protected id (a dlock lease of
   * several permits is several nodes under one id; each Curator lease has an id of its own). When the
   * leases exceed the stored limit, the newest group is the mutex holder's, still waiting: not a holder.
   */
  async holders(key: string): Promise<PermitHolder[]> {
    const { calls } = await this.session();
    const paths = this.paths(key);
    const [base, names] = await Promise.all([
      unlessMissing(calls.getData(paths.base)),
      childrenOf(calls, paths.leases),
    ]);
    const groups: string[][] = [];
    const byId = new Map<string, string[]>();
    const leases = queueOrder(names, [LEASE_NAME]);
    for (const name of leases) {
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
    if (limit !== undefined && leases.length > limit) groups.pop();
    const described = await Promise.all(
      groups.map((group) => describeNode(calls, `${paths.leases}/${group[0]}`)),
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
    const { calls } = session;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      await confirmNodes(calls, mutex);
      let locks: Promise<string[]>;
      if (mutex.missing > 0) {
        // A request given up on must not queue any more: core withdraws what the ticket holds.
        if (request.signal.aborted) return { outcome: 'busy', ticket };
        const arrival = await this.createNodes(
          ticket,
          [{ path: paths.base, data: limitData(request.limit) }, { path: paths.locks }],
          mutex,
          Buffer.from(request.identity, 'utf8'),
          () => ({
            base: quiet(unlessMissing(calls.getData(paths.base))),
            leases: quiet(childrenOf(calls, paths.leases)),
            locks: quiet(childrenOf(calls, paths.locks)),
          }),
        );
        // Fail fast: permits are held under another limit (the check that counts comes with the mutex).
        const stored = storedLimit((await arrival.base)?.data);
        if (stored !== undefined && stored !== request.limit && leaseNodes(await arrival.leases).length > 0) {
          await this.#refuse(ticket, request, stored);
        }
        locks = arrival.locks;
      } else {
        locks = childrenOf(calls, paths.locks);
      }
      const queue = queueOrder(await dropDuplicates(calls, mutex, await locks));
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
   * breath as our lease nodes are read for their czxid. Undefined when the request has to queue again
   * (the semaphore's node or our mutex node vanished).
   */
  async #lease(
    ticket: PermitTicket,
    request: PermitRequest,
  ): Promise<Attempt<PermitTicket, PermitTicket> | undefined> {
    const { session, paths, leases } = ticket;
    const { calls } = session;
    for (let round = 0; round < MAX_CREATE_ROUNDS; round++) {
      await confirmNodes(calls, leases);
      let listed: string[];
      if (leases.missing > 0 || !ticket.limitChecked) {
        if (request.signal.aborted) return { outcome: 'busy', ticket };
        const base = quiet(unlessMissing(calls.getData(paths.base)));
        const before = quiet(childrenOf(calls, paths.leases));
        const after = await this.createNodes(
          ticket,
          [{ path: paths.leases }],
          leases,
          Buffer.from(request.identity, 'utf8'),
          () => quiet(childrenOf(calls, paths.leases)),
        );
        if (!ticket.limitChecked) {
          const stored = storedLimit((await base)?.data);
          if (stored !== request.limit) {
            const others = leaseNodes(await before).filter((name) => !leases.isOurs(name));
            if (stored !== undefined && others.length > 0) await this.#refuse(ticket, request, stored);
            // Nobody else holds a permit (or only Curator clients, which store nothing): ours counts.
            if (!(await unlessMissing(calls.setData(paths.base, limitData(request.limit))))) {
              // The semaphore's node is gone, so our mutex node went with it: start over.
              await ticket.queueAgain();
              return undefined;
            }
          }
          ticket.limitChecked = true;
        }
        listed = await after;
      } else {
        const [children, stillHeld] = await Promise.all([
          childrenOf(calls, paths.leases),
          this.#holdsMutex(ticket),
        ]);
        if (!stillHeld) {
          // Our mutex node is gone (given back by a grant whose reply was lost, or deleted by an
          // operator): someone else may be creating leases now, and a grant with our older lease would
          // break the order of tokens. Give the leases back and queue again.
          await ticket.queueAgain();
          return undefined;
        }
        listed = children;
      }
      listed = await dropDuplicates(calls, leases, listed);
      const vanished = leases.paths.filter((path) => !isListed(path, listed));
      if (vanished.length > 0) {
        // An operator deleted a lease node of ours (Curator: "Sequential path not found"): create it again.
        leases.paths = leases.paths.filter((path) => !vanished.includes(path));
        continue;
      }
      if (leaseNodes(listed).length > request.limit) return { outcome: 'busy', ticket };
      return this.#grant(ticket);
    }
    throw new BackendUnavailableError(
      BACKEND,
      this.address,
      `the lease nodes of semaphore "${request.key}" kept disappearing under ${paths.leases}`,
    );
  }

  /**
   * Reads our lease nodes (czxid for the token, and a watch that tells a holder its node was deleted)
   * and deletes our mutex node in the same breath. A lease node that vanished meanwhile (an operator)
   * means queueing again: the mutex is no longer ours, so no lease may be created in its place.
   */
  async #grant(ticket: PermitTicket): Promise<Attempt<PermitTicket, PermitTicket> | undefined> {
    const { calls } = ticket.session;
    const read = Promise.all(
      ticket.leases.paths.map((path) => describeNode(calls, path, ticket.watch('own-node', 'data', path))),
    );
    const mutexReturned = removeNodes(calls, [ticket.mutex], [ticket.paths.locks]);
    const [described] = await Promise.all([read, mutexReturned]);
    // Withdrawn while this attempt ran (core gave up on it): nothing more to do.
    if (ticket.released) return { outcome: 'busy', ticket };
    if (described.some((node) => node === undefined)) {
      await ticket.queueAgain();
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
