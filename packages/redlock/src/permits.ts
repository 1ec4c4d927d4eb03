import {
  type Attempt,
  type Capabilities,
  type Grant,
  type LeaseDriver,
  LockLostError,
  type LockRequest,
  now,
  pause,
} from '@dlock/core';
import {
  type LuaScript,
  PERMIT_BUSY,
  PERMIT_GRANTED,
  PERMIT_LIMIT_MISMATCH,
  type PermitAsk,
  type PermitEntry,
  type PermitLayout,
  type PermitPrimitive,
  decodeHolders,
  newPermitOwner,
  permitAcquireArgs,
  permitAcquireScript,
  permitExtendScript,
  permitHoldersScript,
  permitKeys,
  permitLayout,
  permitLeaveScript,
} from '@dlock/redis/primitives';
import type { Redis } from 'ioredis';
import { redlockCapabilities } from './capabilities.js';
import {
  COLLISION_BACKOFF_MS,
  EXPIRY_PRECISION_MS,
  closeSubscription,
  onlyHungPending,
  settleWithin,
} from './driver.js';
import type { NodeFailure, RedisNode } from './node.js';
import { type Ballot, castBallot, quorumUnreachable, unavailableError, unknownOutcomes } from './quorum.js';
import type { ReleaseNotices, ReleaseSubscription } from './wakeups.js';

/**
 * EVAL, never EVALSHA with a NOSCRIPT fallback (as for locks, see scripts.ts): the fallback re-sends a
 * script behind whatever was queued on the connection meanwhile, so after a script-cache flush an
 * attempt's re-send could land after the undo that followed it and leave a permit nobody holds.
 */
function evalScript(
  client: Redis,
  script: LuaScript,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  return client.eval(script.source, keys.length, ...keys, ...args);
}

export const redlockPermitCapabilities: Capabilities = {
  ...redlockCapabilities,
  safety:
    `${redlockCapabilities.safety} A permit of a semaphore of limit L is held on q = floor(N·L/(L+1)) + 1 ` +
    'of the N nodes (a majority for L = 1; all 5 of 5 nodes for L >= 4), each node admitting by its own ' +
    'count and clock: any L+1 sets of q nodes share a node, which admits at most L, so more than L holders ' +
    'at once need a node to forget (a plain majority would let up to floor(N·L/majority) hold at once). ' +
    'The price is availability: a semaphore tolerates only N − q nodes down. A read or write lease needs a ' +
    'majority: any two majorities share a node, and no node admits a writer beside anyone. Each extension ' +
    're-creates the entry on nodes that lost it (only where it fits the limit, never over another owner) ' +
    'while more than c·(N − q) nodes still hold it (c: the limit, 1 for a read or write lease), so no quorum ' +
    'taken meanwhile can have missed them; with fewer, the lease is lost at that extension. There is no ' +
    'queue (fairness none): a FIFO order would need the nodes to agree on one order of waiters, and RedLock ' +
    'nodes never talk to each other; per-node queues would order waiters differently on each node and could ' +
    'leave every waiter short of a quorum. So waiters race when permits free up, and for a read-write lock ' +
    'a stream of readers can starve a writer.',
};

/** A permit held on a quorum of nodes: the owner value written on each node, and that quorum. */
export interface RedlockPermitHandle {
  readonly owner: string;
  readonly quorum: number;
  /** The acquire script's arguments, re-sent (with the extension's ttl) to repair nodes that lost the entry. */
  readonly acquireArgs: readonly (string | number)[];
  /** Local monotonic time (ms) up to which the last successful acquire or extension holds a quorum. */
  validUntil: number;
  /** Set when the release starts: a repair not yet sent then stays unsent, so it cannot re-create the entry. */
  released: boolean;
}

/** A waiter's state between attempts: its release-notice subscription and what woke it. */
export interface RedlockPermitTicket {
  subscription: ReleaseSubscription | undefined;
  released: boolean;
  /** The last attempt won some nodes but not a quorum (or too late): retry after a short random delay. */
  collided: boolean;
  /** When, by the busy replies, a quorum of nodes could have room again (local ms), if known. */
  freeAt: number | undefined;
  wake: (() => void) | undefined;
  /**
   * The owner of an attempt whose outcome is unknown (a node may have applied it, its reply lost): the
   * next attempt re-sends it, adopting what it took, and a withdrawal deletes it (dlock issue 11 #1).
   */
  unknownOwner: string | undefined;
  /** How many withdrawals have run (the first one does not wait for hung nodes, as for locks). */
  withdrawals: number;
}

/** The index of the ttl (ms) in the acquire script's arguments (permitAcquireArgs). */
const ACQUIRE_TTL_ARG = 3;
/** The index of the limit in the acquire script's arguments (permitAcquireArgs). */
const ACQUIRE_LIMIT_ARG = 2;

export interface RedlockPermitConfig {
  readonly nodes: readonly RedisNode[];
  readonly keyPrefix: string;
  readonly driftFactor: number;
  readonly notices: ReleaseNotices;
}

type NodeAnswer<T> =
  | { readonly node: RedisNode; readonly value: T }
  | { readonly node: RedisNode; readonly failure: NodeFailure };

/**
 * Semaphores and read-write locks over RedLock's independent nodes, as redis-semaphore's
 * RedlockSemaphore: @dlock/redis' permit scripts run on every node with one owner value; a grant needs
 * a quorum (quorumFor) within the validity window (ttl − drift − the time the quorum took), and a
 * failed quorum is undone on every node by owner value, in the background. No queue and no
 * fencing counter on the nodes (capabilities: fairness and fencing 'none', token 0n).
 */
export abstract class RedlockPermitDriver<Request extends LockRequest>
  implements LeaseDriver<Request, RedlockPermitHandle, RedlockPermitTicket>
{
  readonly backend = 'redlock';
  readonly address: string;
  readonly capabilities = redlockPermitCapabilities;
  readonly limits = { minTtlMs: 10, maxKeyBytes: 4096 };
  protected abstract readonly primitive: PermitPrimitive;
  readonly #config: RedlockPermitConfig;
  readonly #quorum: number;
  /** Undos of failed majorities still running; close() waits for them (each bounded by the command timeout). */
  readonly #undos = new Set<Promise<unknown>>();

  constructor(config: RedlockPermitConfig) {
    this.#config = config;
    this.#quorum = Math.floor(config.nodes.length / 2) + 1;
    this.address = config.nodes.map((node) => node.address).join(',');
  }

  protected abstract ask(request: Request): PermitAsk;

  protected abstract limitMismatch(request: Request, storedLimit: number): Error;

  /**
   * How many nodes must admit a request of `limit` so that no more than the limit can hold at once
   * while no node forgets: any limit + 1 grants must share a node, which admits at most `limit`, so
   * q > N·limit/(limit + 1). For limit 1 that is a majority, as for a lock. (A majority alone lets
   * floor(N·limit/majority) hold at once: for 5 nodes and limit 4, six.)
   */
  protected quorumFor(limit: number): number {
    const nodes = this.#config.nodes.length;
    return Math.min(nodes, Math.floor((nodes * limit) / (limit + 1)) + 1);
  }

  /** A majority of the nodes. */
  protected get majority(): number {
    return this.#quorum;
  }

  async attempt(
    request: Request,
    ticket: RedlockPermitTicket | undefined,
  ): Promise<Attempt<RedlockPermitHandle, RedlockPermitTicket>> {
    const layout = this.#layout(request.key);
    // This attempt answers every notice so far: one release publishes on each node, and the copies
    // arriving after the first must not cause another attempt each.
    if (ticket) ticket.released = false;
    // A new owner per attempt: the undo of a failed attempt runs in the background and must never
    // delete what a later attempt obtained.
    const owner = ticket?.unknownOwner ?? newPermitOwner();
    if (ticket) ticket.unknownOwner = undefined;
    const durationMs = Math.ceil(request.ttlMs);
    const ask = this.ask(request);
    const quorum = this.quorumFor(ask.limit);
    const nodes = this.#config.nodes.length;
    const args = permitAcquireArgs(owner, ask, request, layout, {
      queued: false,
      fenced: false,
    });
    const startedAt = now();
    const answers = await this.#onNodes(
      (client) =>
        evalScript(client, permitAcquireScript, permitKeys(layout), args) as Promise<[number, number]>,
      // Settle at a quorum for, or once no quorum for is possible (a refusal then never waits for
      // hung nodes).
      (granted, refused) => granted >= quorum || refused > nodes - quorum,
      ([status]) => status === PERMIT_GRANTED,
    );
    const granted = answers.filter(
      (answer) => 'value' in answer && answer.value[0] === PERMIT_GRANTED,
    ).length;
    if (granted >= quorum) {
      const validUntil = this.#validUntil(startedAt, durationMs);
      if (validUntil > now()) {
        return {
          outcome: 'granted',
          grant: {
            token: 0n,
            validUntil,
            handle: { owner, quorum, acquireArgs: args, validUntil, released: false },
          },
        };
      }
    }
    const votes = this.#votes(answers, granted, ([status]) => status !== PERMIT_GRANTED, quorum);
    // Nodes that did not reply may have granted it, and with them a quorum may be ours: core adopts it on
    // the next attempt or withdraws it (retrying in the background until the nodes answer), as for locks.
    if (quorumUnreachable(votes) && granted + unknownOutcomes(votes) > 0) {
      const next = ticket ?? newTicket();
      next.unknownOwner = owner;
      return {
        outcome: 'unknown',
        ticket: next,
        cause: unavailableError(
          votes,
          `acquiring "${request.key}" (${this.need(ask, quorum, nodes)}): the outcome is unknown (nodes that did not reply may have applied it)`,
        ),
      };
    }
    // Not a quorum in time: undo on every node, including those that failed or have not answered yet
    // (a timed-out script may still have run), without making the caller wait for them.
    if (
      granted > 0 ||
      answers.some((answer) => 'failure' in answer) ||
      answers.length < this.#config.nodes.length
    ) {
      this.#undo(layout, owner);
    }
    if (quorumUnreachable(votes)) {
      throw unavailableError(votes, `acquiring "${request.key}" (${this.need(ask, quorum, nodes)})`);
    }
    const mismatches = answers.flatMap((answer) =>
      'value' in answer && answer.value[0] === PERMIT_LIMIT_MISMATCH ? [answer.value[1]] : [],
    );
    // So many nodes store another limit that this request can never reach its quorum.
    if (mismatches.length > nodes - quorum) throw this.limitMismatch(request, mismatches[0]!);
    const next = ticket ?? newTicket();
    next.collided = granted > 0;
    next.freeAt = this.#freeAt(answers, quorum);
    return { outcome: 'busy', ticket: next };
  }

  async waitForChange(
    request: Request,
    ticket: RedlockPermitTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    if (request.signal.aborted) return;
    if (!ticket) return pause(maxWaitMs, request.signal);
    if (!ticket.subscription) {
      // A release between the failed attempt and this subscription would go unnoticed, so once it is
      // in place the caller attempts again straight away.
      ticket.subscription = this.#config.notices.subscribe(this.#layout(request.key).channel, () => {
        ticket.released = true;
        ticket.wake?.();
      });
      request.signal.addEventListener('abort', () => closeSubscription(ticket), { once: true });
      return settleWithin(ticket.subscription.ready, maxWaitMs, request.signal);
    }
    if (ticket.collided) {
      ticket.collided = false;
      return pause(Math.min(maxWaitMs, 1 + Math.random() * COLLISION_BACKOFF_MS), request.signal);
    }
    const untilFreeMs = ticket.freeAt === undefined ? maxWaitMs : Math.max(0, ticket.freeAt - now());
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        request.signal.removeEventListener('abort', finish);
        ticket.wake = undefined;
        ticket.released = false;
        resolve();
      };
      if (ticket.released || request.signal.aborted) return finish();
      const timer = setTimeout(finish, Math.min(maxWaitMs, untilFreeMs));
      ticket.wake = finish;
      request.signal.addEventListener('abort', finish, { once: true });
    });
  }

  /**
   * Ends the waiter's subscription and deletes, by owner on every node, what an attempt with an unknown
   * outcome may have taken. Rejects BackendUnavailableError while some node has not confirmed; core then
   * retries in the background, so the entry goes once the node answers again (dlock issue 11 #1).
   */
  async withdraw(request: Request, ticket: RedlockPermitTicket): Promise<void> {
    closeSubscription(ticket);
    const owner = ticket.unknownOwner;
    if (owner === undefined) return;
    ticket.withdrawals++;
    const layout = this.#layout(request.key);
    const keys = permitKeys(layout);
    // The first withdrawal, which the caller of an acquire waits for, sends the delete to hung nodes
    // (their last request timed out) without waiting for them; core's retries confirm it (issue 12 #8).
    const ballot = await castBallot(
      this.#config.nodes,
      this.majority,
      (node) => node.run((client) => evalScript(client, permitLeaveScript, keys, [owner, layout.channel, 0])),
      () => 'for',
      { decided: ticket.withdrawals > 1 ? undefined : onlyHungPending },
    );
    if (ballot.granted < ballot.nodes) {
      throw unavailableError(ballot, `withdrawing the attempt on "${request.key}"`);
    }
    ticket.unknownOwner = undefined;
  }

  /** What a request needs, for error texts: "limit 3 needs 3 of 3 nodes". */
  protected need(ask: PermitAsk, quorum: number, nodes: number): string {
    return `limit ${ask.limit} needs ${quorum} of ${nodes} nodes`;
  }

  /**
   * Extends on every node where the entry is this owner's, and repairs the quorum (dlock issue 12 #7, as
   * the lock's extend): nodes that lost the entry (restarted without persistence, FLUSHALL) are sent the
   * acquire script again, which re-creates it only where it fits the limit and never touches another
   * owner's entry. A repair is sent only while enough nodes still hold the entry that nobody can have
   * used the missing ones meanwhile (more than `conflictLimit()`·(N − quorum) of them: any
   * conflicting quorum taken meanwhile must share a node with those); with fewer, the lease may have
   * had company in between and the extension rejects LockLostError at once (its signal aborts).
   * - the entry is on a quorum again: the new validity, measured from before the request was sent;
   * - so many nodes refused that no quorum is possible: LockLostError;
   * - otherwise (nodes did not answer): BackendUnavailableError, ownership unknown, not lost.
   */
  async extend(key: string, grant: Grant<RedlockPermitHandle>, ttlMs: number): Promise<number> {
    const { handle } = grant;
    if (now() >= handle.validUntil) {
      throw new LockLostError(key, 'its validity ended before this extension could be sent');
    }
    const durationMs = Math.ceil(ttlMs);
    const keys = permitKeys(this.#layout(key));
    const { quorum } = handle;
    const { nodes } = this.#config;
    // Nodes that must still hold the entry before any is repaired.
    const floor = Math.min(quorum, this.conflictLimit(handle) * (nodes.length - quorum) + 1);
    const repairArgs = handle.acquireArgs.map((arg, index) => (index === ACQUIRE_TTL_ARG ? durationMs : arg));
    const repair = (node: RedisNode) =>
      node
        .run(
          (client) => evalScript(client, permitAcquireScript, keys, repairArgs) as Promise<[number, number]>,
          () => !handle.released && now() < handle.validUntil,
        )
        .then((answer) => answer.ok && answer.value[0] === PERMIT_GRANTED);
    const lost: RedisNode[] = [];
    let repairing = false;
    const startedAt = now();
    const ballot = await castBallot(
      nodes,
      quorum,
      (node) =>
        node.run(
          (client) =>
            evalScript(client, permitExtendScript, keys, [handle.owner, durationMs]) as Promise<number>,
          () => !handle.released,
        ),
      (extended) => (extended === 1 ? 'for' : 'against'),
      {
        decided: (votes) =>
          votes.granted >= quorum ||
          (votes.granted >= floor && votes.granted + votes.refused >= quorum) ||
          votes.refused > nodes.length - floor,
        onAnswer: (node, answer, vote) => {
          if (vote !== 'against') return;
          // A node that answers once the repair is under way is repaired on its own; nothing waits for it.
          if (repairing) void repair(node);
          else lost.push(node);
        },
      },
    );
    let held = ballot.granted;
    if (held >= floor) {
      repairing = true;
      held += (await Promise.all(lost.map(repair))).filter(Boolean).length;
      if (held >= quorum) {
        handle.validUntil = this.#validUntil(startedAt, durationMs);
        return handle.validUntil;
      }
    }
    const refused = ballot.refused - (held - ballot.granted);
    if (held < floor && ballot.refused > nodes.length - floor) {
      throw new LockLostError(
        key,
        `only ${ballot.granted} of ${nodes.length} nodes still hold this owner's entry (it expired or was ` +
          `deleted on ${ballot.refused}): fewer than the ${floor} that keep anyone else from having used the others meanwhile`,
      );
    }
    if (refused > nodes.length - quorum) {
      throw new LockLostError(
        key,
        `${refused} of ${nodes.length} nodes no longer hold this owner's entry and have no room to re-create it, ` +
          `so it cannot be on the ${quorum} it needs`,
      );
    }
    // Neither a quorum for nor enough against: ownership is unknown, not lost.
    throw unavailableError(
      { ...ballot, granted: held, refused },
      `extending "${key}" could not confirm ${quorum} of ${nodes.length} nodes`,
    );
  }

  /**
   * How many leases one lease's entry can conflict with at once, for the repair rule of `extend`: the
   * limit for a semaphore (the entry is one of `limit` on each node).
   */
  protected conflictLimit(handle: RedlockPermitHandle): number {
    return Number(handle.acquireArgs[ACQUIRE_LIMIT_ARG]);
  }

  /** Deletes the entry on every node and waits for all of them (bounded by the command timeout). */
  async release(key: string, grant: Grant<RedlockPermitHandle>): Promise<void> {
    grant.handle.released = true;
    const layout = this.#layout(key);
    const answers = await this.#leaveEverywhere(layout, grant.handle.owner, true);
    const votes = this.#votes(answers, 0, () => true);
    if (quorumUnreachable(votes)) throw unavailableError(votes, `releasing "${key}"`);
  }

  /**
   * The owners that hold an entry on as many nodes as their grant needed (by each node's clock; the
   * quorum from the largest limit the nodes store).
   */
  protected async holderEntries(key: string): Promise<PermitEntry[]> {
    const keys = permitKeys(this.#layout(key));
    const answers = await this.#onNodes(
      (client) => evalScript(client, permitHoldersScript, keys, []).then(decodeHolders),
      () => false,
      () => true,
    );
    const votes = this.#votes(answers, 0, () => true);
    if (quorumUnreachable(votes)) throw unavailableError(votes, `reading the holders of "${key}"`);
    const seen = new Map<string, { entry: PermitEntry; count: number }>();
    let limit = 1;
    for (const answer of answers) {
      if (!('value' in answer)) continue;
      limit = Math.max(limit, answer.value.limit);
      for (const { owner, ...entry } of answer.value.holders) {
        const known = seen.get(owner) ?? { entry, count: 0 };
        known.count++;
        seen.set(owner, known);
      }
    }
    const quorum = this.quorumFor(limit);
    return [...seen.values()].filter(({ count }) => count >= quorum).map(({ entry }) => entry);
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#undos]);
  }

  #undo(layout: PermitLayout, owner: string): void {
    // Silent: the contenders of a split vote retry by themselves; a notice would wake every waiter
    // into the same race again.
    const undo = this.#leaveEverywhere(layout, owner, false).finally(() => this.#undos.delete(undo));
    this.#undos.add(undo);
  }

  #leaveEverywhere(layout: PermitLayout, owner: string, notify: boolean): Promise<NodeAnswer<unknown>[]> {
    const keys = permitKeys(layout);
    return this.#onNodes(
      (client) => evalScript(client, permitLeaveScript, keys, [owner, layout.channel, notify ? 1 : 0]),
      () => false,
      () => true,
    );
  }

  /**
   * Runs `call` on every node at once. Resolves with the answers so far as soon as `decided(for,
   * refused)` holds (answers for and against, not counting failures), or once every node has answered
   * or failed; each node's commands are bounded by its connection's command timeout.
   */
  #onNodes<T>(
    call: (client: Redis) => Promise<T>,
    decided: (votesFor: number, refused: number) => boolean,
    isFor: (value: T) => boolean,
  ): Promise<NodeAnswer<T>[]> {
    const { nodes } = this.#config;
    return new Promise((resolve) => {
      const answers: NodeAnswer<T>[] = [];
      let votesFor = 0;
      let refused = 0;
      let settled = false;
      const record = (answer: NodeAnswer<T>) => {
        if (settled) return;
        answers.push(answer);
        if ('value' in answer) {
          if (isFor(answer.value)) votesFor++;
          else refused++;
        }
        if (answers.length === nodes.length || decided(votesFor, refused)) {
          settled = true;
          resolve([...answers]);
        }
      };
      // Each node waits for its connection and classifies failures (RedisNode); nothing rejects.
      for (const node of nodes) {
        node
          .run(call)
          .then((answer) =>
            record(answer.ok ? { node, value: answer.value } : { node, failure: answer.failure }),
          );
      }
    });
  }

  #votes<T>(
    answers: NodeAnswer<T>[],
    granted: number,
    isRefusal: (value: T) => boolean,
    quorum = this.#quorum,
  ): Ballot {
    let refused = 0;
    const failed: NodeFailure[] = [];
    for (const answer of answers) {
      if ('failure' in answer) failed.push(answer.failure);
      else if (isRefusal(answer.value)) refused++;
    }
    return { nodes: this.#config.nodes.length, quorum, granted, refused, failed, pending: new Set() };
  }

  /** When a quorum of nodes could have room by their busy replies (a grant counts as room now). */
  #freeAt(answers: NodeAnswer<[number, number]>[], quorum: number): number | undefined {
    const waits = answers
      .flatMap((answer) => {
        if (!('value' in answer)) return [];
        const [status, value] = answer.value;
        if (status === PERMIT_GRANTED) return [0];
        return status === PERMIT_BUSY && value >= 0 ? [value] : [];
      })
      .sort((a, b) => a - b);
    const quorumWait = waits[quorum - 1];
    // +1 ms: an entry is gone only once its expiry has passed.
    return quorumWait === undefined ? undefined : now() + quorumWait + 1;
  }

  #validUntil(startedAt: number, durationMs: number): number {
    return startedAt + durationMs - (this.#config.driftFactor * durationMs + EXPIRY_PRECISION_MS);
  }

  #layout(key: string): PermitLayout {
    return permitLayout(key, this.#config.keyPrefix, this.primitive);
  }
}

function newTicket(): RedlockPermitTicket {
  return {
    subscription: undefined,
    released: false,
    collided: false,
    freeAt: undefined,
    wake: undefined,
    unknownOwner: undefined,
    withdrawals: 0,
  };
}
