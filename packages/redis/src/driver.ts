import { randomBytes } from 'node:crypto';
import {
  type Attempt,
  type Capabilities,
  type Grant,
  type HolderInfo,
  type LockDriver,
  LockLostError,
  type LockRequest,
  now,
  pause,
} from '@dlock/core';
import type { RedisConnection } from './connection.js';
import { decodeLockValue, lockValueParts, redisKeyLayout, validateLockKey } from './layout.js';
import { acquireScript, extendScript, releaseScript, runScript } from './scripts.js';
import type { RedisTicket, ReleaseWakeups } from './wakeups.js';

export type ConnectionLossPolicy = 'abort' | 'wait-for-ttl';

/**
 * What a grant remembers: the exact value written at the lock key, which compare-owner scripts match,
 * and (under the 'abort' policy) the controller behind the grant's `lost` signal.
 */
export interface RedisGrantHandle {
  readonly value: string;
  readonly live?: LiveGrant;
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

  async attempt(
    request: LockRequest,
    ticket: RedisTicket | undefined,
  ): Promise<Attempt<RedisGrantHandle, RedisTicket>> {
    const layout = redisKeyLayout(request.key, this.#keyPrefix);
    const { head, tail } = lockValueParts(randomBytes(OWNER_TOKEN_BYTES).toString('hex'), request.identity);
    const valueWith = (token: string | number) => `${head}${token}${tail}`;
    if (ticket) this.#wakeups.beforeAttempt(ticket);
    const epoch = this.#connection.epoch;
    const sentAt = now();
    const [taken, tokenOrTtl] = await this.#connection.run(
      'acquire',
      (client) =>
        runScript(
          client,
          acquireScript,
          [layout.lockKey, layout.fenceKey],
          [head, Math.ceil(request.ttlMs), tail],
        ) as Promise<[number, string | number]>,
      // The caller was already told this attempt failed, so nobody else would ever release the lock.
      ([lateTaken, lateToken]) => {
        if (lateTaken === 1) this.#releaseValue(request.key, valueWith(lateToken)).catch(() => {});
      },
    );

    if (taken !== 1) {
      const holderTtlMs = Number(tokenOrTtl);
      if (!ticket)
        return { outcome: 'busy', ticket: this.#wakeups.ticket(layout.releaseChannel, holderTtlMs) };
      this.#wakeups.sawHolder(ticket, holderTtlMs);
      return { outcome: 'busy', ticket };
    }
    if (ticket) this.#wakeups.drop(ticket);
    const validUntil = sentAt + request.ttlMs - driftMs(request.ttlMs);
    const live = this.#liveGrants?.add(request.key, validUntil);
    // The reply was read just before a connection close that has already been reported.
    if (live && epoch !== this.#connection.epoch) {
      abortOnConnectionLoss(live, this.#connection.closedError());
    }
    return {
      outcome: 'granted',
      grant: {
        token: BigInt(tokenOrTtl),
        validUntil,
        lost: live?.lost.signal,
        handle: { value: valueWith(tokenOrTtl), live },
      },
    };
  }

  waitForChange(request: LockRequest, ticket: RedisTicket | undefined, maxWaitMs: number): Promise<void> {
    if (!ticket) return pause(maxWaitMs, request.signal);
    return this.#wakeups.wait(ticket, request.signal, maxWaitMs);
  }

  async withdraw(_request: LockRequest, ticket: RedisTicket): Promise<void> {
    this.#wakeups.drop(ticket);
  }

  async extend(key: string, grant: Grant<RedisGrantHandle>, ttlMs: number): Promise<number> {
    const { lockKey } = redisKeyLayout(key, this.#keyPrefix);
    const sentAt = now();
    const outcome = await this.#connection.run('extend', (client) =>
      runScript(client, extendScript, [lockKey], [grant.handle.value, Math.ceil(ttlMs)]),
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

  async release(key: string, grant: Grant<RedisGrantHandle>): Promise<void> {
    this.#liveGrants?.forget(grant.handle.live);
    await this.#releaseValue(key, grant.handle.value);
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const { lockKey } = redisKeyLayout(key, this.#keyPrefix);
    const value = await this.#connection.run('holder', (client) => client.get(lockKey));
    if (value === null) return null;
    const decoded = decodeLockValue(value);
    return decoded ? { identity: decoded.identity, token: decoded.fencingToken } : FOREIGN_HOLDER;
  }

  async close(): Promise<void> {
    this.#wakeups.close();
    await this.#connection.close();
  }

  async #releaseValue(key: string, value: string): Promise<void> {
    const { lockKey, releaseChannel } = redisKeyLayout(key, this.#keyPrefix);
    await this.#connection.run('release', (client) =>
      runScript(client, releaseScript, [lockKey], [value, releaseChannel]),
    );
  }
}
