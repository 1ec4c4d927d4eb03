import {
  type Attempt,
  BackendUnavailableError,
  type Grant,
  type HolderInfo,
  type LockDriver,
  LockLostError,
  type LockRequest,
  now,
  pause,
} from '@dlock/core';
import type { Redis } from 'ioredis';
import pRetry from 'p-retry';
import { redlockCapabilities } from './capabilities.js';
import { type Lock, OwnerValueRedlock, identityOf, newOwnerValue, releaseChannel } from './library.js';
import type { RedisNode } from './nodes.js';
import { countVotes, quorumUnreachable, unavailableError } from './quorum.js';
import type { ReleaseNotices, ReleaseSubscription } from './wakeups.js';

/**
 * The client's measure of a lease is cut by the drift allowance: clocks may run apart by driftFactor,
 * and Redis expires keys with 1 ms precision (the library adds the same 2 ms).
 */
export const EXPIRY_PRECISION_MS = 2;

/** After a split vote, the RedLock algorithm retries after a random delay so contenders fall out of step. */
export const COLLISION_BACKOFF_MS = 20;

/** A grant's library Lock; extend replaces it, because the library returns a new Lock per extension. */
export interface RedlockHandle {
  lock: Lock;
}

/** A waiter's state between attempts: its release-notice subscription and what woke it. */
export interface RedlockTicket {
  subscription: ReleaseSubscription | undefined;
  /** A release notice arrived and no wait has consumed it yet. */
  released: boolean;
  /** The last attempt lost a split vote, or won too late: retry after a short random delay. */
  collided: boolean;
  wake: (() => void) | undefined;
}

export interface RedlockDriverConfig {
  readonly nodes: readonly RedisNode[];
  readonly keyPrefix: string;
  readonly driftFactor: number;
  readonly commandTimeoutMs: number;
  readonly notices: ReleaseNotices;
  /** Closes the connections this provider owns (not the clients a caller passed in). */
  readonly closeConnections: () => Promise<void>;
}

/**
 * RedLock over independent Redis nodes, on the `redlock` library: the library runs each quorum
 * operation once; this driver measures validity, reads the per-node votes, and keeps waiters informed.
 */
export class RedlockDriver implements LockDriver<RedlockHandle, RedlockTicket> {
  readonly backend = 'redlock';
  readonly address: string;
  readonly capabilities = redlockCapabilities;
  readonly limits = { minTtlMs: 10, maxKeyBytes: 4096 };
  readonly #config: RedlockDriverConfig;
  readonly #redlock: OwnerValueRedlock;
  readonly #addresses: Map<Redis, string>;
  readonly #quorum: number;

  constructor(config: RedlockDriverConfig) {
    this.#config = config;
    this.#redlock = new OwnerValueRedlock(config.nodes.map((node) => node.client));
    this.#addresses = new Map(config.nodes.map((node) => [node.client, node.address]));
    this.#quorum = Math.floor(config.nodes.length / 2) + 1;
    this.address = config.nodes.map((node) => node.address).join(',');
  }

  async attempt(
    request: LockRequest,
    ticket: RedlockTicket | undefined,
  ): Promise<Attempt<RedlockHandle, RedlockTicket>> {
    const lockKey = this.#lockKey(request.key);
    // Redis takes whole milliseconds; rounding up only lengthens what the nodes keep excluding others.
    const durationMs = Math.ceil(request.ttlMs);
    const startedAt = now();
    let lock: Lock;
    try {
      lock = await this.#redlock.acquireWithValue(lockKey, durationMs, newOwnerValue(request.identity));
    } catch (error) {
      // The library has already released whatever minority of nodes it did lock.
      const votes = await countVotes(error, this.#addressOf);
      if (!votes || quorumUnreachable(votes)) {
        throw votes ? unavailableError(votes, `acquiring "${request.key}"`) : error;
      }
      return this.#notAcquired(ticket, votes.granted > 0);
    }
    const validUntil = this.#validUntil(startedAt, durationMs);
    if (validUntil <= now()) {
      // The majority arrived after the lock's validity was spent: RedLock counts that as a failure.
      await this.#releaseOnce(request.key, lock).catch(() => {});
      return this.#notAcquired(ticket, true);
    }
    return { outcome: 'granted', grant: { token: 0n, validUntil, handle: { lock } } };
  }

  async waitForChange(
    request: LockRequest,
    ticket: RedlockTicket | undefined,
    maxWaitMs: number,
  ): Promise<void> {
    if (request.signal.aborted) return;
    if (!ticket) return pause(maxWaitMs, request.signal);
    if (!ticket.subscription) {
      // A release between the failed attempt and this subscription would go unnoticed, so once it is
      // in place the caller attempts again straight away.
      ticket.subscription = this.#config.notices.subscribe(releaseChannel(this.#lockKey(request.key)), () => {
        ticket.released = true;
        ticket.wake?.();
      });
      // Core withdraws only a request that was not granted; the signal ends every request.
      request.signal.addEventListener('abort', () => this.withdraw(request, ticket), { once: true });
      return settleWithin(ticket.subscription.ready, maxWaitMs, request.signal);
    }
    if (ticket.collided) {
      ticket.collided = false;
      return pause(Math.min(maxWaitMs, 1 + Math.random() * COLLISION_BACKOFF_MS), request.signal);
    }
    return this.#sleepUntilReleaseOrExpiry(request, ticket, maxWaitMs);
  }

  async withdraw(_request: LockRequest, ticket: RedlockTicket): Promise<void> {
    ticket.subscription?.close();
    ticket.subscription = undefined;
  }

  async extend(key: string, grant: Grant<RedlockHandle>, ttlMs: number): Promise<number> {
    const durationMs = Math.ceil(ttlMs);
    const startedAt = now();
    try {
      grant.handle.lock = await this.#redlock.extend(grant.handle.lock, durationMs);
    } catch (error) {
      const votes = await countVotes(error, this.#addressOf);
      if (!votes) {
        // Only reachable after a wall-clock jump: the library checks its own Date.now()-based expiration.
        throw new LockLostError(key, 'the redlock library considers the lock expired by the wall clock');
      }
      if (votes.refused >= votes.quorum) {
        throw new LockLostError(
          key,
          `${votes.refused} of ${votes.nodes} nodes no longer hold this owner's value (it expired or was taken over)`,
        );
      }
      // Neither a majority for nor a majority against: ownership is unknown, not lost. The lease stays
      // valid until its window closes, and a later extension may still confirm it.
      throw unavailableError(votes, `extending "${key}" could not confirm a majority`);
    }
    return this.#validUntil(startedAt, durationMs);
  }

  async release(key: string, grant: Grant<RedlockHandle>): Promise<void> {
    try {
      await this.#releaseOnce(key, grant.handle.lock);
    } catch (error) {
      if (!(error instanceof BackendUnavailableError)) throw error;
      // A release that cannot reach a majority leaves the key blocked for the rest of its ttl, so a
      // transient failure is worth two more jittered tries, bounded by the command timeout.
      await pRetry(() => this.#releaseOnce(key, grant.handle.lock), {
        retries: 2,
        minTimeout: 20,
        randomize: true,
        maxRetryTime: this.#config.commandTimeoutMs,
        shouldRetry: ({ error: retryError }) => retryError instanceof BackendUnavailableError,
      });
    }
  }

  /** The owner a majority of nodes agrees on, or null when no value has a majority. */
  async holder(key: string): Promise<HolderInfo | null> {
    const lockKey = this.#lockKey(key);
    const answers = await Promise.allSettled(this.#config.nodes.map((node) => node.client.get(lockKey)));
    const counts = new Map<string, number>();
    const failed: Array<{ address: string; error: Error }> = [];
    answers.forEach((answer, index) => {
      if (answer.status === 'fulfilled') {
        if (answer.value !== null) counts.set(answer.value, (counts.get(answer.value) ?? 0) + 1);
      } else {
        failed.push({ address: this.#config.nodes[index]!.address, error: asError(answer.reason) });
      }
    });
    for (const [value, count] of counts) {
      if (count >= this.#quorum) return { identity: identityOf(value), token: 0n };
    }
    const votes = { nodes: answers.length, quorum: this.#quorum, granted: 0, refused: 0, failed };
    if (quorumUnreachable(votes)) throw unavailableError(votes, `reading the holder of "${key}"`);
    return null;
  }

  async close(): Promise<void> {
    await this.#config.notices.close();
    await this.#config.closeConnections();
  }

  async #releaseOnce(key: string, lock: Lock): Promise<void> {
    try {
      const { attempts } = await this.#redlock.release(lock);
      // The library settles at the first majority. Waiting for the last nodes too (bounded by the
      // command timeout) means a released key is gone from every node that answers.
      await attempts.at(-1);
    } catch (error) {
      const votes = await countVotes(error, this.#addressOf);
      if (votes && quorumUnreachable(votes)) throw unavailableError(votes, `releasing "${key}"`);
      // Otherwise a majority no longer holds this value: it expired or was taken over, nothing to do.
    }
  }

  #notAcquired(ticket: RedlockTicket | undefined, collided: boolean): Attempt<RedlockHandle, RedlockTicket> {
    const next = ticket ?? { subscription: undefined, released: false, collided: false, wake: undefined };
    next.collided = collided;
    return { outcome: 'busy', ticket: next };
  }

  /**
   * Sleeps until a release notice, the moment a majority of nodes will have expired the key (read from
   * their PTTLs, so a crashed holder is replaced right at its expiry), or maxWaitMs.
   */
  #sleepUntilReleaseOrExpiry(request: LockRequest, ticket: RedlockTicket, maxWaitMs: number): Promise<void> {
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
      this.#msUntilMajorityExpires(this.#lockKey(request.key)).then((untilFreeMs) => {
        const remainingMs = maxWaitMs - (now() - startedAt);
        if (settled || untilFreeMs >= remainingMs) return;
        clearTimeout(timer);
        timer = setTimeout(finish, untilFreeMs + 1);
      });
    });
  }

  async #msUntilMajorityExpires(lockKey: string): Promise<number> {
    const remaining = await Promise.all(
      this.#config.nodes.map((node) =>
        node.client.pttl(lockKey).then(
          // -2: no such key; -1: a key without expiry, which only an operator can remove.
          (ms) => (ms === -2 ? 0 : ms < 0 ? Number.POSITIVE_INFINITY : ms),
          () => Number.POSITIVE_INFINITY,
        ),
      ),
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

  readonly #addressOf = (client: Redis): string => this.#addresses.get(client) ?? 'unknown node';
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

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
