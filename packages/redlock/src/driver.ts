import {
  type Attempt,
  type Grant,
  type HolderInfo,
  InvalidArgumentError,
  KeyConflictError,
  type LockDriver,
  LockLostError,
  type LockRequest,
  now,
  pause,
} from '@dlock/core';
import { PLACE_MS, PLACE_REFRESH_MS } from '@dlock/redis/primitives';
import { redlockCapabilities } from './capabilities.js';
import type { NodeAnswer, NodeFailure, RedisNode } from './node.js';
import { type Ballot, castBallot, majorityOf, unavailableError, unknownOutcomes } from './quorum.js';
import {
  ABSENT,
  ACQUIRE_FAST_SCRIPT,
  ACQUIRE_SCRIPT,
  BEHIND,
  CLAIM_SCRIPT,
  CREATE,
  FOREIGN_HOLDER,
  HANDOFF_MS,
  NEEDS_LINE,
  NOT_A_LOCK,
  ONLY_REFRESH,
  READ_SCRIPT,
  RELEASE_FAST_SCRIPT,
  RELEASE_SCRIPT,
  fastKeys,
  identityOf,
  lineKeys,
  newOwnerValue,
} from './scripts.js';
import type { ReleaseNotices, ReleaseSubscription } from './wakeups.js';

/**
 * The client's measure of a lease is cut by the drift allowance: clocks may run apart by driftFactor,
 * and Redis expires keys with 1 ms precision (the `redlock` library adds the same 2 ms).
 */
export const EXPIRY_PRECISION_MS = 2;

/** After a split vote, the RedLock algorithm retries after a random delay so contenders fall out of step. */
export const COLLISION_BACKOFF_MS = 20;

/**
 * How long at most the head of a line sleeps while a client that ignores the line holds the key: such
 * a client's release admits nobody, and it retries every few hundred ms (the `redlock` library's
 * retryDelay is 200 ms plus jitter), so waiting for the next place refresh (PLACE_REFRESH_MS) would let
 * it win nearly every time and starve dlock's waiters to LockTimeoutError (issue 13). Jittered.
 */
export const FOREIGN_POLL_MS = 50;

/** The endings of a waiting line's keys (scripts.ts, lineKeys), which no lock's key may have. */
const LINE_SUFFIX = /:lock-queue(:expiry|:queue|:handoff)?$/;

/** How many keys' line hints (RedlockDriver's `#linesSeen`) a provider keeps at most. */
const LINE_HINTS = 1_000;

/** A grant: the owner value every node stores, and how long the last acquire or extension vouches for it. */
export interface RedlockHandle {
  readonly ownerValue: string;
  /** Local monotonic time (ms) up to which the last successful acquire or extension holds a majority. */
  validUntil: number;
  /**
   * Set when the release starts: an extension still waiting for a node's connection is then not sent
   * there, so it cannot re-create the key behind the release.
   */
  released: boolean;
  /**
   * The request met a waiting line (it waited, or a node had a line for the key): its release sends
   * the line's script at once, which admits the next waiter in one round trip instead of two.
   */
  readonly contended: boolean;
}

/**
 * What one request sent, and what it is waiting for. Every attempt of a request claims the key with
 * the same owner value, so a retry adopts what an attempt with a lost reply took, and a withdrawal
 * deletes by that value wherever it may be.
 */
export interface RedlockTicket {
  readonly ownerValue: string;
  /** Nodes that may store the owner value: asked, and not since seen refusing or deleting it. */
  readonly mayHold: Set<RedisNode>;
  /** Claims sent and not answered yet, by node. */
  readonly inFlight: Map<RedisNode, Promise<unknown>>;
  /**
   * Nodes where the request may have a place in line: sent a waiting attempt, and not seen leaving.
   * Each node orders its line by its own arrival counter (scripts.ts, ACQUIRE_SCRIPT), never by a
   * client clock; a grant keeps the place until the lease's release or the request's withdrawal.
   */
  readonly inLine: Set<RedisNode>;
  /** A node answered that it has a waiting line for the key (or the request waited in one). */
  metLine: boolean;
  /**
   * The request was granted: a line's script that a short script's answer still calls for is then not
   * sent, since the lease's release may already be on its way and must not be overtaken.
   */
  granted: boolean;
  /** How many withdrawals have run (the first one does not wait for hung nodes). */
  withdrawals: number;
  /** The waiter's subscription to admit notices on the provider's inbox. */
  subscription: ReleaseSubscription | undefined;
  /** An admit notice arrived (this request heads a node's line) and no wait has consumed it yet. */
  released: boolean;
  /** The last attempt lost a split vote, or won too late: retry after a short random delay. */
  collided: boolean;
  /**
   * In the last attempt, a node answered that this request heads its line while the key is held by a
   * client that ignores the line (scripts.ts, FOREIGN_HOLDER): retry within FOREIGN_POLL_MS.
   */
  foreignHolder: boolean;
  /**
   * In the last attempt, a node kept the free key for the waiter it had just admitted (scripts.ts,
   * BEHIND): retry once that reservation has lapsed (HANDOFF_MS), unless admitted first.
   */
  behind: boolean;
  wake: (() => void) | undefined;
}

/** A node where the lock's key holds application data (KeyConflictError's `found` from this backend). */
export interface NotALock {
  readonly address: string;
  /** What is there: "a hash", "a string without expiry", ... */
  readonly what: string;
}

export interface RedlockDriverConfig {
  readonly nodes: readonly RedisNode[];
  readonly keyPrefix: string;
  readonly driftFactor: number;
  readonly notices: ReleaseNotices;
  /** Closes the connections this provider owns, and lets go of the clients a caller passed in. */
  readonly closeConnections: () => Promise<void>;
}

/**
 * RedLock over independent Redis nodes (antirez, "Distributed locks with Redis"). Each operation is a
 * script sent to every node at once; this driver counts the votes, measures validity, repairs the
 * majority on every extension, and keeps waiters informed. Core does the waiting, retrying and
 * clean-up: an attempt whose majority is unknown is an 'unknown' outcome whose ticket holds the owner
 * value (dlock issue 11).
 */
export class RedlockDriver implements LockDriver<RedlockHandle, RedlockTicket> {
  readonly backend = 'redlock';
  readonly address: string;
  readonly capabilities = redlockCapabilities;
  readonly limits = { minTtlMs: 10, maxKeyBytes: 4096 };
  readonly #config: RedlockDriverConfig;
  readonly #nodes: readonly RedisNode[];
  readonly #quorum: number;
  /**
   * Whether a majority of nodes has ever answered this provider. Until then a provider that cannot
   * reach a majority fails at once, like a backend that is down at start, instead of riding it out.
   */
  #reachedMajority = false;
  /**
   * Keys on which this provider met a waiting line lately (lock key → local time, ms): a waiting
   * request's first attempt there sends the line's script at once instead of the short one first. A
   * hint only (either script is correct on any node); forgotten after PLACE_MS, on an uncontended
   * grant, and all at once past LINE_HINTS keys.
   */
  readonly #linesSeen = new Map<string, number>();

  constructor(config: RedlockDriverConfig) {
    this.#config = config;
    this.#nodes = config.nodes;
    this.#quorum = majorityOf(config.nodes.length);
    this.address = config.nodes.map((node) => node.address).join(',');
  }

  /**
   * Refuses lock names whose key (keyPrefix + key) ends like a waiting line's keys (`:lock-queue`,
   * optionally followed by `:expiry`, `:queue` or `:handoff`): InvalidArgumentError naming the key. Such a lock
   * would share its key with another lock's line.
   */
  validateKey(key: string): void {
    if (LINE_SUFFIX.test(this.#lockKey(key))) {
      throw new InvalidArgumentError(
        'key',
        key,
        "a key whose Redis key (keyPrefix + key) does not end with ':lock-queue', ':lock-queue:expiry', ':lock-queue:queue' or ':lock-queue:handoff' (reserved for waiting lines)",
      );
    }
  }

  /**
   * One RedLock attempt. Granted at the first majority (slow nodes are not waited for); busy as soon as
   * a majority can no longer be won; otherwise decided once every node has answered (each node bounds
   * its request by the connect and command timeouts):
   * - nodes that did not reply may have applied it, and with them a majority may be ours: 'unknown';
   * - a majority answered, split: busy (a collision, retried after a short random delay);
   * - too few answered for any majority: BackendUnavailableError, or 'unknown' when this attempt left
   *   the owner value on some node, so that core withdraws it.
   * A busy attempt gives back what it took before it returns; an unknown one keeps it for the retry to
   * adopt.
   */
  async attempt(
    request: LockRequest,
    ticket: RedlockTicket | undefined,
  ): Promise<Attempt<RedlockHandle, RedlockTicket>> {
    const current = ticket ?? newTicket(request.identity);
    // Redis takes whole milliseconds; rounding up only lengthens what the nodes keep excluding others.
    const durationMs = Math.ceil(request.ttlMs);
    const notLocks: NotALock[] = [];
    const startedAt = now();
    const lockKey = this.#lockKey(request.key);
    const waiting = request.willWait !== false;
    // Once the inbox is confirmed, listen before the attempt joins a line: no admit can be missed.
    if (waiting && !current.subscription && this.#config.notices.inboxConfirmed)
      this.#listen(request, current);
    // A request's first attempt sends the short script first, unless this provider met a line on the
    // key lately; a waiter's next attempts send the line's at once.
    const full = waiting && (ticket !== undefined || this.#metLineLately(lockKey));
    const ballot = await this.#claim(lockKey, current, durationMs, waiting, full, (node) =>
      notLocks.push({ address: node.address, what: 'data without expiry or of another type' }),
    );
    this.#noteAnswers(ballot);
    this.#noteLine(lockKey, current.metLine || ticket !== undefined);
    if (notLocks.length > this.#nodes.length - this.#quorum) {
      // Waiting would be forever: no RedLock client wrote it, so nobody will release it (issue 12 #9).
      return this.#fail(request, current, this.#keyConflict(request.key, notLocks));
    }
    if (ballot.granted >= this.#quorum) {
      const validUntil = this.#validUntil(startedAt, durationMs);
      if (validUntil > now()) {
        current.granted = true;
        closeSubscription(current);
        return {
          outcome: 'granted',
          grant: {
            token: 0n,
            validUntil,
            handle: {
              ownerValue: current.ownerValue,
              validUntil,
              released: false,
              contended: full || ticket !== undefined || current.metLine,
            },
          },
        };
      }
      // The majority arrived after the lock's validity was spent: RedLock counts that as a failure.
      return this.#busy(lockKey, current, true);
    }
    if (this.#majorityImpossible(ballot)) return this.#busy(lockKey, current, ballot.granted > 0);
    if (ballot.granted + unknownOutcomes(ballot) >= this.#quorum) {
      return {
        outcome: 'unknown',
        ticket: current,
        cause: unavailableError(
          ballot,
          `acquiring "${request.key}": the outcome is unknown (nodes that did not reply may have applied it)`,
        ),
      };
    }
    if (ballot.granted + ballot.refused >= this.#quorum) return this.#busy(lockKey, current, true);
    const cause = unavailableError(ballot, `acquiring "${request.key}"`);
    // Nothing of this request's is left on any node (or core already keeps the ticket): a plain failure.
    if (ticket || current.mayHold.size === 0) throw cause;
    // Never connected to a majority: fail fast, like a backend that is down at start.
    if (!this.#reachedMajority) return this.#fail(request, current, cause);
    return { outcome: 'unknown', ticket: current, cause };
  }

  async waitForChange(
    request: LockRequest,
    ticket: RedlockTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    if (request.signal.aborted) return;
    if (!ticket) return pause(maxWaitMs, request.signal);
    if (!ticket.subscription) {
      // An admit between the failed attempt and this subscription would go unnoticed, so once it is
      // in place the caller attempts again straight away.
      this.#listen(request, ticket);
      return settleWithin(ticket.subscription!.ready, maxWaitMs, request.signal);
    }
    if (ticket.collided) {
      ticket.collided = false;
      return pause(Math.min(maxWaitMs, 1 + Math.random() * COLLISION_BACKOFF_MS), request.signal);
    }
    if (ticket.foreignHolder) {
      ticket.foreignHolder = false;
      const pollMs = FOREIGN_POLL_MS / 2 + (Math.random() * FOREIGN_POLL_MS) / 2;
      return this.#sleepUntilReleaseOrExpiry(request, ticket, Math.min(maxWaitMs, pollMs));
    }
    if (ticket.behind) {
      // The key is free, kept for another waiter: once that lapses it is anyone's, so try again then
      // (a head that died or hangs costs one window), unless this request is admitted first.
      ticket.behind = false;
      const lapseMs = HANDOFF_MS + 1 + Math.random() * COLLISION_BACKOFF_MS;
      return this.#sleepUntilReleaseOrExpiry(request, ticket, Math.min(maxWaitMs, lapseMs), false);
    }
    // Attempting again at least every PLACE_REFRESH_MS keeps the request's places in line.
    return this.#sleepUntilReleaseOrExpiry(request, ticket, Math.min(maxWaitMs, PLACE_REFRESH_MS));
  }

  /** Listens for admit notices naming the ticket's owner value, until the request ends. */
  #listen(request: LockRequest, ticket: RedlockTicket): void {
    ticket.subscription = this.#config.notices.listenForAdmit(ticket.ownerValue, () => {
      ticket.released = true;
      ticket.wake?.();
    });
    // Core withdraws only a request that was not granted; the signal ends every request.
    request.signal.addEventListener('abort', () => closeSubscription(ticket), { once: true });
  }

  /**
   * Deletes the owner value wherever it may be (compare-owner delete, so a lock taken over since is
   * left alone), and ends the waiter's subscription. Resolves once every node that may hold the value
   * has confirmed; otherwise rejects BackendUnavailableError, and core retries in the background. The
   * first withdrawal, which the caller of an acquire waits for, does not wait for hung nodes (their
   * last request timed out; dlock issue 12 #8): the delete is sent to them, and core's retries confirm it.
   */
  async withdraw(request: LockRequest, ticket: RedlockTicket): Promise<void> {
    closeSubscription(ticket);
    // From here on, claims of this request still waiting for a connection are not sent.
    ticket.withdrawals++;
    const ballot = await this.#deleteOwnerValue(
      this.#lockKey(request.key),
      ticket,
      ticket.withdrawals > 1,
      'leave',
    );
    if (ballot && ticket.mayHold.size > 0) {
      throw unavailableError(ballot, `withdrawing the attempt on "${request.key}"`);
    }
  }

  /**
   * Extends on every node where the key holds the lease's owner value, and repairs the majority: once a
   * majority has confirmed, the nodes that lost the key (restarted without persistence, FLUSHALL) get
   * it back, so a renewed lease keeps a majority behind it when nodes forget it one at a time (dlock
   * issue 12 #7). Another owner's value is never overwritten.
   * - a majority still held it: the new validity, measured from before the request was sent;
   * - so many nodes lost it or hold another owner's value that no majority can be this lease's:
   *   LockLostError at once (its signal aborts). Re-creating the key then would hide that the lock was
   *   free, and possibly taken and released by someone else, in between;
   * - otherwise (nodes did not answer): BackendUnavailableError. Ownership is unknown, not lost: nodes
   *   that did not answer still keep the key for its ttl, so the current window stands.
   */
  async extend(key: string, grant: Grant<RedlockHandle>, ttlMs: number): Promise<number> {
    const { handle } = grant;
    // A lease whose window closed (the process was paused past it) may have been taken and released by
    // someone else meanwhile: extending it now would hide that gap from the holder.
    if (now() >= handle.validUntil) {
      throw new LockLostError(key, 'its validity ended before this extension could be sent');
    }
    const lockKey = this.#lockKey(key);
    const durationMs = Math.ceil(ttlMs);
    const repair = (node: RedisNode) =>
      node.evaluate(
        CLAIM_SCRIPT,
        lockKey,
        [handle.ownerValue, durationMs, CREATE],
        () => !handle.released && now() < handle.validUntil,
      );
    const lostKey: RedisNode[] = [];
    let confirmed = false;
    const startedAt = now();
    const ballot = await castBallot(
      this.#nodes,
      this.#quorum,
      (node) =>
        node.evaluate(
          CLAIM_SCRIPT,
          lockKey,
          [handle.ownerValue, durationMs, ONLY_REFRESH],
          () => !handle.released,
        ),
      (result) => (result === 1 ? 'for' : 'against'),
      {
        decided: (votes) => votes.granted >= this.#quorum || this.#majorityImpossible(votes),
        onAnswer: (node, answer) => {
          if (!answer.ok || answer.value !== ABSENT) return;
          // A node that answers after the majority did is repaired on its own; nothing waits for it.
          if (confirmed) void repair(node);
          else lostKey.push(node);
        },
      },
    );
    this.#noteAnswers(ballot);
    if (ballot.granted >= this.#quorum) {
      handle.validUntil = this.#validUntil(startedAt, durationMs);
      confirmed = true;
      await Promise.all(lostKey.map(repair));
      return handle.validUntil;
    }
    if (this.#majorityImpossible(ballot)) {
      throw new LockLostError(
        key,
        `${ballot.refused} of ${ballot.nodes} nodes no longer hold it (${lostKey.length} lost the key, ` +
          `${ballot.refused - lostKey.length} hold another owner's value), so it cannot have a majority of ${ballot.quorum}`,
      );
    }
    throw unavailableError(ballot, `extending "${key}" could not confirm a majority`);
  }

  /**
   * Compare-owner delete on every node, with a release notice where it deleted. Resolves once a
   * majority has confirmed (deleted, or the value was no longer there) and every responsive node has
   * answered, so afterwards no reachable node shows the lock; once a majority has confirmed, nodes whose
   * last request timed out still get the delete but are not waited for. Fewer than a majority
   * confirming: BackendUnavailableError, which core retries while the lease's validity window is open.
   */
  async release(key: string, grant: Grant<RedlockHandle>): Promise<void> {
    grant.handle.released = true;
    const lockKey = this.#lockKey(key);
    const ballot = await castBallot(
      this.#nodes,
      this.#quorum,
      (node) => releaseOn(node, lockKey, grant.handle.ownerValue, grant.handle.contended),
      () => 'for',
      { decided: (votes) => votes.granted >= this.#quorum && onlyHungPending(votes) },
    );
    this.#noteAnswers(ballot);
    if (ballot.granted < this.#quorum) throw unavailableError(ballot, `releasing "${key}"`);
  }

  /** The owner a majority of nodes agrees on, or null when no value has a majority. */
  async holder(key: string): Promise<HolderInfo | null> {
    const lockKey = this.#lockKey(key);
    const answers = await Promise.all(
      this.#nodes.map((node) =>
        node.run((client) => client.eval(READ_SCRIPT, 1, lockKey) as Promise<[number, string?]>),
      ),
    );
    const counts = new Map<string, number>();
    const failed: NodeFailure[] = [];
    const notLocks: NotALock[] = [];
    answers.forEach((answer, index) => {
      if (!answer.ok) failed.push(answer.failure);
      else if (answer.value[0] === NOT_A_LOCK) {
        notLocks.push({ address: this.#nodes[index]!.address, what: answer.value[1]! });
      } else if (answer.value[0] === 1) {
        const value = answer.value[1]!;
        counts.set(value, (counts.get(value) ?? 0) + 1);
      }
    });
    const ballot = {
      nodes: answers.length,
      quorum: this.#quorum,
      granted: answers.length - failed.length,
      refused: 0,
      failed,
      pending: new Set<RedisNode>(),
    };
    this.#noteAnswers(ballot);
    for (const [value, count] of counts) {
      if (count >= this.#quorum) return { identity: identityOf(value), token: 0n };
    }
    if (notLocks.length > this.#nodes.length - this.#quorum) throw this.#keyConflict(key, notLocks);
    if (ballot.granted < this.#quorum) throw unavailableError(ballot, `reading the holder of "${key}"`);
    return null;
  }

  async close(): Promise<void> {
    await this.#config.notices.close();
    await this.#config.closeConnections();
  }

  /**
   * Sends the acquire script to every node (to each only while the request has not been withdrawn: see
   * RedisNode.evaluate), joining each node's waiting line when `waiting` (a single try never joins).
   * Keeps track of where the owner value may be: a node is added when asked and dropped when it
   * refuses, or when the request certainly did not reach it and the value was not there before; and of
   * the lines the request may be in: a node is added when asked to join (a grant keeps the place).
   * Unless `full`, the short script goes first, and the line's script only to nodes that need it.
   *
   * Decided at a majority for, at too many against for a majority, or — once a majority has answered
   * and split — when only hung nodes are still to answer: their vote could still make a majority, but
   * waiting a command timeout for it, while the other contender waits for the same, left the lock
   * unheld for seconds on a black-holed node (issue 13, second review of the line). The attempt then
   * counts as a collision and gives back what it took, the hung nodes included (the delete queues
   * behind the claim on their connection).
   */
  #claim(
    lockKey: string,
    ticket: RedlockTicket,
    durationMs: number,
    waiting: boolean,
    full: boolean,
    onNotALock: (node: RedisNode) => void,
  ): Promise<Ballot> {
    // The short script's keys and arguments; the line's, built only when a node needs them.
    const shortKeys = fastKeys(lockKey);
    const shortArgs = [ticket.ownerValue, durationMs, waiting ? '1' : ''];
    let keys: string[] | undefined;
    let args: (string | number)[] | undefined;
    const sendFull = (node: RedisNode, wantedNow: () => boolean) => {
      keys ??= lineKeys(lockKey);
      args ??= [...shortArgs, this.#config.notices.inbox];
      return node.evaluate(ACQUIRE_SCRIPT, keys, args, wantedNow);
    };
    const wanted = () => ticket.withdrawals === 0;
    ticket.foreignHolder = false;
    ticket.behind = false;
    // Nodes that kept the free key for another waiter, against nodes where another owner holds it.
    let reservedVotes = 0;
    let heldVotes = 0;
    return castBallot(
      this.#nodes,
      this.#quorum,
      (node) => {
        const heldBefore = ticket.mayHold.has(node);
        ticket.mayHold.add(node);
        if (waiting) ticket.inLine.add(node);
        const sent = full
          ? sendFull(node, wanted)
          : withLine(node.evaluate(ACQUIRE_FAST_SCRIPT, shortKeys, shortArgs, wanted), () => {
              ticket.metLine = true;
              // Sent after the short script answered, so possibly after the majority granted the lease
              // and its release was sent: it would land behind the release and re-create the key.
              return sendFull(node, () => wanted() && !ticket.granted);
            });
        const claim = sent.then((answer) => {
          if (ticket.inFlight.get(node) === claim) ticket.inFlight.delete(node);
          if (refusedOrUnsent(answer) && (answer.ok || !heldBefore)) ticket.mayHold.delete(node);
          // A refusal before the line (data that is not a lock) leaves no place in line.
          if (answer.ok && answer.value === NOT_A_LOCK) {
            ticket.inLine.delete(node);
            onNotALock(node);
          }
          if (answer.ok && answer.value === FOREIGN_HOLDER) ticket.foreignHolder = true;
          if (answer.ok && answer.value === BEHIND) reservedVotes++;
          if (answer.ok && (answer.value === 0 || answer.value === FOREIGN_HOLDER)) heldVotes++;
          ticket.behind = reservedVotes > heldVotes;
          return answer;
        });
        ticket.inFlight.set(node, claim);
        return claim;
      },
      (result) => (result > 0 ? 'for' : 'against'),
      {
        decided: (ballot) =>
          ballot.granted >= this.#quorum ||
          this.#majorityImpossible(ballot) ||
          (ballot.granted + ballot.refused >= this.#quorum && onlyHungPending(ballot)),
      },
    );
  }

  /**
   * A failed attempt gives back what it took before it reports busy, so that contenders who split the
   * vote do not keep each other out until their keys expire (the RedLock algorithm unlocks every
   * instance after a failed attempt). Bounded like a withdrawal: hung nodes are not waited for, and
   * what is left there stays in the ticket for the final withdrawal. A waiting request keeps its place
   * in every line (a single try was never in one).
   */
  async #busy(
    lockKey: string,
    ticket: RedlockTicket,
    collided: boolean,
  ): Promise<Attempt<RedlockHandle, RedlockTicket>> {
    await this.#deleteOwnerValue(lockKey, ticket, false, 'give-back');
    ticket.collided = collided;
    return { outcome: 'busy', ticket };
  }

  /**
   * Compare-owner delete of the ticket's value on every node that may hold it, once the claims still
   * on their way to nodes that are not hung have answered (where they were refused, there is nothing to
   * delete). `line`: 'leave' (a withdrawal) also targets the nodes whose line the request may be in,
   * where the same script takes it out; 'give-back' (after a lost vote: the request tries again) keeps
   * its places and reserves the key for nobody (scripts.ts, RELEASE_SCRIPT). Unless `patient`, hung
   * nodes are sent the delete but not waited for. Resolves with the ballot, or undefined when no node
   * may hold the value.
   */
  async #deleteOwnerValue(
    lockKey: string,
    ticket: RedlockTicket,
    patient: boolean,
    line: 'leave' | 'give-back',
  ): Promise<Ballot | undefined> {
    const leaveLine = line === 'leave';
    await Promise.all([...ticket.inFlight].filter(([node]) => !node.hung).map(([, claim]) => claim));
    const targets = leaveLine ? [...new Set([...ticket.mayHold, ...ticket.inLine])] : [...ticket.mayHold];
    if (targets.length === 0) return undefined;
    return castBallot(
      targets,
      this.#quorum,
      (node) =>
        releaseOn(node, lockKey, ticket.ownerValue, true, !leaveLine).then((answer) => {
          if (answer.ok) {
            ticket.mayHold.delete(node);
            if (leaveLine) ticket.inLine.delete(node);
          }
          return answer;
        }),
      () => 'for',
      { decided: patient ? undefined : onlyHungPending },
    );
  }

  /**
   * Ends an attempt with an error that core does not retry, after deleting once what it took (those
   * nodes have just answered): without a ticket, core would not withdraw it. Anything left lapses by
   * its ttl.
   */
  async #fail(request: LockRequest, ticket: RedlockTicket, error: Error): Promise<never> {
    await this.withdraw(request, ticket).catch(() => {});
    throw error;
  }

  /**
   * A majority of nodes hold data at the lock's key that no RedLock client writes: it never frees up
   * the way a lock does, so acquire and holder fail at once (core's KeyConflictError, issue 12 #9).
   */
  #keyConflict(key: string, found: readonly NotALock[]): KeyConflictError<readonly NotALock[]> {
    const where = found.map(({ address, what }) => `${what} on ${address}`).join(', ');
    return new KeyConflictError(
      key,
      this.#lockKey(key),
      found,
      `the key holds data that is not a lock (${where}), which no RedLock client writes; a lock key must be ` +
        'absent or hold a lock value with an expiry: use a keyPrefix so locks never share keys with application data',
    );
  }

  #metLineLately(lockKey: string): boolean {
    const seenAt = this.#linesSeen.get(lockKey);
    return seenAt !== undefined && now() - seenAt < PLACE_MS;
  }

  #noteLine(lockKey: string, met: boolean): void {
    if (!met) {
      this.#linesSeen.delete(lockKey);
      return;
    }
    if (this.#linesSeen.size >= LINE_HINTS) this.#linesSeen.clear();
    this.#linesSeen.set(lockKey, now());
  }

  #noteAnswers(ballot: Ballot): void {
    if (ballot.granted + ballot.refused >= this.#quorum) this.#reachedMajority = true;
  }

  /** So many nodes hold another owner's value that a majority for this value is out of reach. */
  #majorityImpossible(ballot: Ballot): boolean {
    return ballot.refused > this.#nodes.length - this.#quorum;
  }

  /**
   * Sleeps until an admit notice, the moment a majority of nodes will have expired the key (read from
   * their PTTLs when `readExpiry`, so a crashed holder is replaced right at its expiry), or maxWaitMs.
   */
  #sleepUntilReleaseOrExpiry(
    request: LockRequest,
    ticket: RedlockTicket,
    maxWaitMs: number,
    readExpiry = true,
  ): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.signal.removeEventListener('abort', finish);
        ticket.wake = undefined;
        ticket.released = false;
        resolve();
      };
      if (ticket.released || request.signal.aborted) return finish();
      const startedAt = now();
      timer = setTimeout(finish, maxWaitMs);
      ticket.wake = finish;
      request.signal.addEventListener('abort', finish, { once: true });
      if (!readExpiry) return;
      this.#msUntilMajorityExpires(this.#lockKey(request.key)).then((untilFreeMs) => {
        const remainingMs = maxWaitMs - (now() - startedAt);
        if (settled || untilFreeMs >= remainingMs) return;
        clearTimeout(timer);
        timer = setTimeout(finish, untilFreeMs + 1);
      });
    });
  }

  async #msUntilMajorityExpires(lockKey: string): Promise<number> {
    const answers = await Promise.all(this.#nodes.map((node) => node.pttl(lockKey)));
    const remaining = answers.map((answer) =>
      // -2: no such key; -1: a key without expiry, which only an operator can remove.
      !answer.ok || answer.value === -1 ? Number.POSITIVE_INFINITY : Math.max(0, answer.value),
    );
    remaining.sort((a, b) => a - b);
    return remaining[this.#quorum - 1] ?? Number.POSITIVE_INFINITY;
  }

  #validUntil(startedAt: number, durationMs: number): number {
    return startedAt + durationMs - (this.#config.driftFactor * durationMs + EXPIRY_PRECISION_MS);
  }

  #lockKey(key: string): string {
    return this.#config.keyPrefix + key;
  }
}

function newTicket(identity: string): RedlockTicket {
  return {
    ownerValue: newOwnerValue(identity),
    metLine: false,
    granted: false,
    inLine: new Set(),
    mayHold: new Set(),
    inFlight: new Map(),
    withdrawals: 0,
    subscription: undefined,
    released: false,
    collided: false,
    foreignHolder: false,
    behind: false,
    wake: undefined,
  };
}

/**
 * The short script's answer, or when it answered NEEDS_LINE (having written nothing), the answer of
 * the full script sent next to the same node (scripts.ts: ACQUIRE_FAST_SCRIPT).
 */
function withLine(
  fast: Promise<NodeAnswer<number>>,
  full: () => Promise<NodeAnswer<number>>,
): Promise<NodeAnswer<number>> {
  return fast.then((answer) => (answer.ok && answer.value === NEEDS_LINE ? full() : answer));
}

/**
 * Compare-owner delete of `ownerValue` on one node: leaving the line there and handing the key to its
 * head (admit notice and reservation), or, for a `giveBack` after a lost vote, keeping the request's
 * place and only waking the head (scripts.ts, RELEASE_SCRIPT). The line's script at once when
 * `lineLikely` (a waiter's withdrawal or give-back, the release of a lease that met a line), otherwise
 * the short script first.
 */
function releaseOn(
  node: RedisNode,
  lockKey: string,
  ownerValue: string,
  lineLikely: boolean,
  giveBack = false,
): Promise<NodeAnswer<number>> {
  const full = () =>
    node.evaluate(RELEASE_SCRIPT, lineKeys(lockKey), giveBack ? [ownerValue, '1'] : [ownerValue]);
  return lineLikely
    ? full()
    : withLine(node.evaluate(RELEASE_FAST_SCRIPT, fastKeys(lockKey), [ownerValue]), full);
}

/** The node's script refused, or the request certainly never reached it. */
function refusedOrUnsent(answer: NodeAnswer<number>): boolean {
  return answer.ok ? answer.value <= 0 : !answer.failure.mayHaveApplied;
}

/** Every node still to answer has stopped answering: a clean-up's caller need not wait for them. */
export function onlyHungPending(ballot: Ballot): boolean {
  for (const node of ballot.pending) if (!node.hung) return false;
  return true;
}

/** Ends a waiter's release-notice subscription (lock and permit tickets alike). */
export function closeSubscription(ticket: { subscription: ReleaseSubscription | undefined }): void {
  ticket.subscription?.close();
  ticket.subscription = undefined;
}

/** Resolves when `work` settles, after `ms`, or when `signal` aborts — whichever is first — and leaves no timer behind. */
export function settleWithin(work: Promise<unknown>, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', finish);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    signal.addEventListener('abort', finish, { once: true });
    work.then(finish, finish);
  });
}
