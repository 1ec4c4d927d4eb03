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
  runScript,
} from '@dlock/redis/primitives';
import { redlockCapabilities } from './capabilities.js';
import { COLLISION_BACKOFF_MS, EXPIRY_PRECISION_MS, settleWithin } from './driver.js';
import type { RedisNode } from './nodes.js';
import { type Votes, quorumUnreachable, unavailableError } from './quorum.js';
import type { ReleaseNotices, ReleaseSubscription } from './wakeups.js';

export const redlockPermitCapabilities: Capabilities = {
  ...redlockCapabilities,
  safety:
    `${redlockCapabilities.safety} A permit of a semaphore of limit L is held on q = floor(N·L/(L+1)) + 1 ` +
    'of the N nodes (a majority for L = 1; all 5 of 5 nodes for L >= 4), each node admitting by its own ' +
    'count and clock: any L+1 sets of q nodes share a node, which admits at most L, so more than L holders ' +
    'at once need a node to forget (a plain majority would let up to floor(N·L/majority) hold at once). ' +
    'The price is availability: a semaphore tolerates only N − q nodes down. A read or write lease needs a ' +
    'majority: any two majorities share a node, and no node admits a writer beside anyone. There is no ' +
    'queue (fairness none): a FIFO order would need the nodes to agree on one order of waiters, and RedLock ' +
    'nodes never talk to each other; per-node queues would order waiters differently on each node and could ' +
    'leave every waiter short of a quorum. So waiters race when permits free up, and for a read-write lock ' +
    'a stream of readers can starve a writer.',
};

/** A permit held on a quorum of nodes: the owner value written on each node, and that quorum. */
export interface RedlockPermitHandle {
  readonly owner: string;
  readonly quorum: number;
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
}

export interface RedlockPermitConfig {
  readonly nodes: readonly RedisNode[];
  readonly keyPrefix: string;
  readonly driftFactor: number;
  readonly notices: ReleaseNotices;
}

type NodeAnswer<T> =
  | { readonly node: RedisNode; readonly value: T }
  | { readonly node: RedisNode; readonly error: Error };

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
    const owner = newPermitOwner();
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
      (node) =>
        runScript(node.client, permitAcquireScript, permitKeys(layout), args) as Promise<[number, number]>,
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
        return { outcome: 'granted', grant: { token: 0n, validUntil, handle: { owner, quorum } } };
      }
    }
    // Not a quorum in time: undo on every node, including those that failed or have not answered yet
    // (a timed-out script may still have run), without making the caller wait for them.
    if (
      granted > 0 ||
      answers.some((answer) => 'error' in answer) ||
      answers.length < this.#config.nodes.length
    ) {
      this.#undo(layout, owner);
    }
    const votes = this.#votes(answers, granted, ([status]) => status !== PERMIT_GRANTED, quorum);
    if (quorumUnreachable(votes)) {
      throw unavailableError(
        votes,
        `acquiring "${request.key}" (limit ${ask.limit} needs ${quorum} of ${nodes} nodes)`,
      );
    }
    const mismatches = answers.flatMap((answer) =>
      'value' in answer && answer.value[0] === PERMIT_LIMIT_MISMATCH ? [answer.value[1]] : [],
    );
    // So many nodes store another limit that this request can never reach its quorum.
    if (mismatches.length > nodes - quorum) throw this.limitMismatch(request, mismatches[0]!);
    const next = ticket ?? {
      subscription: undefined,
      released: false,
      collided: false,
      freeAt: undefined,
      wake: undefined,
    };
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
      request.signal.addEventListener('abort', () => this.withdraw(request, ticket), { once: true });
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

  async withdraw(_request: Request, ticket: RedlockPermitTicket): Promise<void> {
    ticket.subscription?.close();
    ticket.subscription = undefined;
  }

  async extend(key: string, grant: Grant<RedlockPermitHandle>, ttlMs: number): Promise<number> {
    const durationMs = Math.ceil(ttlMs);
    const keys = permitKeys(this.#layout(key));
    const { quorum } = grant.handle;
    const nodes = this.#config.nodes.length;
    const startedAt = now();
    const answers = await this.#onNodes(
      (node) =>
        runScript(node.client, permitExtendScript, keys, [grant.handle.owner, durationMs]) as Promise<number>,
      (extended, refused) => extended >= quorum || refused > nodes - quorum,
      (extended) => extended === 1,
    );
    const extended = answers.filter((answer) => 'value' in answer && answer.value === 1).length;
    if (extended >= quorum) return this.#validUntil(startedAt, durationMs);
    const votes = this.#votes(answers, extended, (value) => value !== 1, quorum);
    // So many nodes no longer hold the entry that no quorum can ever confirm it.
    if (votes.refused > nodes - quorum) {
      throw new LockLostError(
        key,
        `${votes.refused} of ${votes.nodes} nodes no longer hold this owner's entry (it expired or was deleted)`,
      );
    }
    // Neither a quorum for nor enough against: ownership is unknown, not lost.
    throw unavailableError(votes, `extending "${key}" could not confirm ${quorum} of ${nodes} nodes`);
  }

  /** Deletes the entry on every node and waits for all of them (bounded by the command timeout). */
  async release(key: string, grant: Grant<RedlockPermitHandle>): Promise<void> {
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
      (node) => runScript(node.client, permitHoldersScript, keys, []).then(decodeHolders),
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
      (node) => runScript(node.client, permitLeaveScript, keys, [owner, layout.channel, notify ? 1 : 0]),
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
    call: (node: RedisNode) => Promise<T>,
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
      for (const node of nodes) {
        call(node).then(
          (value) => record({ node, value }),
          (error: unknown) =>
            record({ node, error: error instanceof Error ? error : new Error(String(error)) }),
        );
      }
    });
  }

  #votes<T>(
    answers: NodeAnswer<T>[],
    granted: number,
    isRefusal: (value: T) => boolean,
    quorum = this.#quorum,
  ): Votes {
    let refused = 0;
    const failed: Array<{ address: string; error: Error }> = [];
    for (const answer of answers) {
      if ('error' in answer) failed.push({ address: answer.node.address, error: answer.error });
      else if (isRefusal(answer.value)) refused++;
    }
    return { nodes: this.#config.nodes.length, quorum, granted, refused, failed };
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
