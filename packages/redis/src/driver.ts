import { randomBytes } from 'node:crypto';
import {
  type Attempt,
  type Capabilities,
  type Grant,
  type HolderInfo,
  type KeyConflictError,
  type LockDriver,
  LockLostError,
  type LockRequest,
  now,
  pause,
} from '@dlock/core';
import { type RedisConnection, mayHaveBeenApplied } from './connection.js';
import { type KeyConflictFound, keyConflict } from './errors.js';
import { decodeLockValue, lockValueParts, redisKeyLayout, validateLockKey } from './layout.js';
import { acquireScript, extendScript, holderScript, releaseScript, runScript } from './scripts.js';
import type { ReleaseWakeups, WaitState } from './wakeups.js';

export type ConnectionLossPolicy = 'abort' | 'wait-for-ttl';

/**
 * What a grant remembers: the owner prefix of the value written at the lock key, which compare-owner
 * scripts match, and (under the 'abort' policy) the controller behind the grant's `lost` signal.
 */
export interface RedisGrantHandle {
  readonly owner: string;
  readonly live?: LiveGrant;
}

/**
 * Core's ticket for one acquire request: what its attempts sent, kept from the first attempt to the
 * last, and, once an attempt found the key busy, the waiter's wake-up state.
 */
export interface RedisTicket {
  /** `dlock1:<32 random hex>:`, the start of the value every attempt of this request writes. */
  readonly owner: string;
  /** `:<identity>`, the end of that value (the token goes between). */
  readonly tail: string;
  /**
   * An attempt was written and no later attempt has read the key since: the lock may hold this owner
   * prefix without our knowing (its reply was lost, or it is still in flight).
   */
  unresolved: boolean;
  /** Attempts written whose reply has not been read yet. */
  inFlight: number;
  wait: WaitState | undefined;
}

export interface LiveGrant {
  readonly key: string;
  readonly lost: AbortController;
  validUntil: number;
}

/**
 * The grants to abort when the connection drops ('abort' policy). Each grant gets its own controller
 * rather than sharing one signal per connection: the lease adds a listener to its grant's `lost` signal
 * and keeps it until the lease is lost, so listeners on a shared signal would pile up with every lease
 * ever taken over the connection (memory, and O(n) addEventListener). Entries leave on release or
 * extend failure; a lease dropped without release is pruned once its validity has passed (aborting it
 * then would change nothing: its lease has already expired locally).
 */
export class LiveGrants {
  readonly #grants = new Set<LiveGrant>();
  #pruneAtSize = 64;

  add(key: string, validUntil: number): LiveGrant {
    if (this.#grants.size >= this.#pruneAtSize) {
      const current = now();
      for (const grant of this.#grants) if (grant.validUntil <= current) this.#grants.delete(grant);
      this.#pruneAtSize = Math.max(64, this.#grants.size * 2);
    }
    const grant: LiveGrant = { key, lost: new AbortController(), validUntil };
    this.#grants.add(grant);
    return grant;
  }

  forget(grant: LiveGrant | undefined): void {
    if (grant) this.#grants.delete(grant);
  }

  abortAll(cause: Error): void {
    for (const grant of this.#grants) abortOnConnectionLoss(grant, cause);
    this.#grants.clear();
  }
}

export function abortOnConnectionLoss(grant: LiveGrant, cause: Error): void {
  grant.lost.abort(
    new LockLostError(grant.key, `${cause.message} while it was held (onConnectionLoss: 'abort')`, { cause }),
  );
}

/** `holder()` of a key locked by something other than dlock (a redlock lock, for one). */
export const FOREIGN_HOLDER: HolderInfo = { identity: '(a lock not taken through dlock)', token: 0n };

export const redisCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'none',
  wakeup: 'push',
  expiry: 'ttl',
  safety:
    'One Redis node decides. Mutual exclusion holds while that node keeps its data: a restart without ' +
    'persistence, or a failover to an asynchronously replicated replica that had not received the lock, ' +
    'forgets a held lock, and a second client can then take it while the first still believes it holds it. ' +
    'The fencing token is what protects the resource then: tokens are max(counter + 1, server time in µs), ' +
    'so they keep increasing across such a data loss as long as the servers’ clocks agree to within the ' +
    'failover time and do not step back. Lease validity is counted locally from before each request, less ' +
    '1% + 2 ms for clock drift, so it assumes client and server clocks tick at about the same rate; a ' +
    'process paused past its validity can still act once before its lease aborts (the token covers that too).',
};

export interface RedisDriverOptions {
  readonly connection: RedisConnection;
  readonly wakeups: ReleaseWakeups;
  readonly keyPrefix: string;
  readonly cluster: boolean;
  readonly onConnectionLoss: ConnectionLossPolicy;
}

const OWNER_TOKEN_BYTES = 16;

/** The part of a lease's ttl not promised to the caller: the server may count time slightly faster. */
export function driftMs(ttlMs: number): number {
  return ttlMs * 0.01 + 2;
}

type AcquireReply = [1, string] | [0, number] | ConflictReply;
type HolderReply = [0] | [1, string] | ConflictReply;
/** The scripts' description of a key that holds application data: key, type, pttl, value preview. */
type ConflictReply = [-1, string, string, number, string];

export class RedisLockDriver implements LockDriver<RedisGrantHandle, RedisTicket> {
  readonly backend = 'redis';

  get address(): string {
    return this.#connection.address;
  }

  readonly capabilities = redisCapabilities;
  readonly limits = { minTtlMs: 10, maxKeyBytes: 4096 };
  readonly #connection: RedisConnection;
  readonly #wakeups: ReleaseWakeups;
  readonly #keyPrefix: string;
  readonly #cluster: boolean;
  readonly #liveGrants: LiveGrants | undefined;

  constructor(options: RedisDriverOptions) {
    this.#connection = options.connection;
    this.#wakeups = options.wakeups;
    this.#keyPrefix = options.keyPrefix;
    this.#cluster = options.cluster;
    if (options.onConnectionLoss === 'abort') {
      const liveGrants = new LiveGrants();
      this.#connection.onConnectionLost((reason) => liveGrants.abortAll(reason));
      this.#liveGrants = liveGrants;
    }
  }

  validateKey(key: string): void {
    validateLockKey(key, this.#keyPrefix, this.#cluster);
  }

  /**
   * One round trip: take the lock, adopt it if an earlier attempt of this request took it (same owner
   * prefix: its reply was lost), or report it busy. 'unknown' when the script was written and no reply
   * came; BackendUnavailableError when it certainly did not run; KeyConflictError for application data.
   */
  async attempt(
    request: LockRequest,
    ticket: RedisTicket | undefined,
  ): Promise<Attempt<RedisGrantHandle, RedisTicket>> {
    const layout = redisKeyLayout(request.key, this.#keyPrefix);
    const sent = ticket ?? newTicket(request.identity);
    if (sent.wait) this.#wakeups.beforeAttempt(sent.wait);
    const epoch = this.#connection.epoch;
    const sentAt = now();
    let written = false;
    let reply: AcquireReply;
    try {
      reply = (await this.#connection.run(
        'acquire',
        (client) => {
          written = true;
          sent.inFlight++;
          return runScript(
            client,
            acquireScript,
            [layout.lockKey, layout.fenceKey],
            [sent.owner, Math.ceil(request.ttlMs), sent.tail],
          );
        },
        request.signal,
      )) as AcquireReply;
    } catch (error) {
      if (!mayHaveBeenApplied(error)) throw error;
      sent.unresolved = true;
      return { outcome: 'unknown', ticket: sent, cause: error as Error };
    } finally {
      if (written) sent.inFlight--;
    }
    // The script read the key: whatever an earlier attempt of this request did is now known.
    sent.unresolved = false;
    if (reply[0] === -1) throw conflict(request.key, reply);
    if (reply[0] === 0) {
      if (sent.wait) this.#wakeups.sawHolder(sent.wait, reply[1]);
      else sent.wait = this.#wakeups.waiter(layout.releaseChannel, reply[1]);
      return { outcome: 'busy', ticket: sent };
    }
    if (sent.wait) this.#wakeups.drop(sent.wait);
    const validUntil = sentAt + request.ttlMs - driftMs(request.ttlMs);
    const live = this.#liveGrants?.add(request.key, validUntil);
    // The reply was read just before a connection close that has already been reported.
    if (live && epoch !== this.#connection.epoch) {
      abortOnConnectionLoss(live, this.#connection.closedError());
    }
    return {
      outcome: 'granted',
      grant: {
        token: BigInt(reply[1]),
        validUntil,
        lost: live?.lost.signal,
        handle: { owner: sent.owner, live },
      },
    };
  }

  waitForChange(request: LockRequest, ticket: RedisTicket | undefined, maxWaitMs: number): Promise<void> {
    if (!ticket?.wait) return pause(maxWaitMs, request.signal);
    return this.#wakeups.wait(ticket.wait, request.signal, maxWaitMs);
  }

  /**
   * Stops waiting, and deletes the lock if it holds this request's owner prefix — which only an attempt
   * whose reply was not read can have left there, so nothing is sent when every attempt was answered.
   * Sent on the command connection after the attempts it cleans up, so Redis runs it after them.
   */
  async withdraw(request: LockRequest, ticket: RedisTicket): Promise<void> {
    if (ticket.wait) this.#wakeups.drop(ticket.wait);
    if (!ticket.unresolved && ticket.inFlight === 0) return;
    await this.#deleteOwned(request.key, ticket.owner, 'withdraw');
  }

  async extend(key: string, grant: Grant<RedisGrantHandle>, ttlMs: number): Promise<number> {
    const { lockKey } = redisKeyLayout(key, this.#keyPrefix);
    const sentAt = now();
    const outcome = await this.#connection.run('extend', (client) =>
      runScript(client, extendScript, [lockKey], [grant.handle.owner, Math.ceil(ttlMs)]),
    );
    if (outcome === 1) {
      const validUntil = sentAt + ttlMs - driftMs(ttlMs);
      if (grant.handle.live) grant.handle.live.validUntil = validUntil;
      return validUntil;
    }
    this.#liveGrants?.forget(grant.handle.live);
    throw new LockLostError(
      key,
      outcome === -1 ? 'another owner holds it now' : 'its key expired or was deleted at the server',
    );
  }

  /** Compare-owner delete plus release notice; idempotent, and sent again on every call. */
  async release(key: string, grant: Grant<RedisGrantHandle>): Promise<void> {
    this.#liveGrants?.forget(grant.handle.live);
    await this.#deleteOwned(key, grant.handle.owner, 'release');
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const { lockKey } = redisKeyLayout(key, this.#keyPrefix);
    const reply = (await this.#connection.run('holder', (client) =>
      runScript(client, holderScript, [lockKey], []),
    )) as HolderReply;
    if (reply[0] === 0) return null;
    if (reply[0] === -1) throw conflict(key, reply);
    const decoded = decodeLockValue(reply[1]);
    return decoded ? { identity: decoded.identity, token: decoded.fencingToken } : FOREIGN_HOLDER;
  }

  async close(): Promise<void> {
    this.#wakeups.close();
    await this.#connection.close();
  }

  async #deleteOwned(key: string, owner: string, operation: string): Promise<void> {
    const { lockKey, releaseChannel } = redisKeyLayout(key, this.#keyPrefix);
    await this.#connection.run(operation, (client) =>
      runScript(client, releaseScript, [lockKey], [owner, releaseChannel]),
    );
  }
}

/** A new request's ticket: a fresh owner prefix (128 random bits) and its identity. */
function newTicket(identity: string): RedisTicket {
  const { head, tail } = lockValueParts(randomBytes(OWNER_TOKEN_BYTES).toString('hex'), identity);
  return { owner: head, tail, unresolved: false, inFlight: 0, wait: undefined };
}

function conflict(
  key: string,
  [, redisKey, type, ttlMs, preview]: ConflictReply,
): KeyConflictError<KeyConflictFound> {
  return keyConflict(key, redisKey, { type, ttlMs: Number(ttlMs), preview });
}
