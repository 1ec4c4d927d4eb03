import {
  type Attempt,
  type Capabilities,
  type Grant,
  type GrantLoss,
  type HolderInfo,
  type KeyConflictError,
  type KeyInspection,
  type LockDriver,
  LockLostError,
  type LockRequest,
  now,
  pause,
} from '@dlock/core';
import type { Cluster, Redis } from 'ioredis';
import { type RedisConnection, mayHaveBeenApplied } from './connection.js';
import { type KeyConflictFound, keyConflict } from './errors.js';
import {
  KeyLayouts,
  decodeLockValue,
  isReservedKey,
  lockValueParts,
  newOwnerToken,
  validateLockKey,
} from './layout.js';
import { PLACE_REFRESH_MS } from './queue-lua.js';
import { acquireScript, extendScript, holderScript, releaseScript } from './scripts.js';
import type { ReleaseWakeups, WaitState } from './wakeups.js';

export type ConnectionLossPolicy = 'abort' | 'wait-for-ttl';

/**
 * What a grant remembers: the owner prefix of the value written at the lock key, which compare-owner
 * scripts match, and (under the 'abort' policy) the grant's own GrantLoss.
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
  /** An attempt that may have joined the lock's waiting line was sent: withdraw must leave it. */
  queued: boolean;
  wait: WaitState | undefined;
}

/**
 * A grant taken over the command connection, under the 'abort' policy: its own GrantLoss (what the
 * lease listens to), aborted when the connection drops, and a link in LiveGrants' list.
 */
export interface LiveGrant extends GrantLoss {
  readonly key: string;
  validUntil: number;
  aborted: boolean;
  reason: unknown;
  previous: LiveGrant | undefined;
  next: LiveGrant | undefined;
}

/**
 * The grants to abort when the connection drops ('abort' policy). Each grant is its own GrantLoss — a
 * plain object with one listener slot, rather than an AbortController per grant or one signal per
 * connection that every lease would add a listener to (listeners piling up, and O(n)
 * addEventListener) — linked into a list, so that adding and forgetting one allocates nothing more.
 * Entries leave on release or extend failure; a lease dropped without release is pruned once its
 * validity has passed (aborting it then would change nothing: its lease has already expired locally).
 */
export class LiveGrants {
  #first: LiveGrant | undefined;
  #size = 0;
  #pruneAtSize = 64;

  add(key: string, validUntil: number): LiveGrant {
    if (this.#size >= this.#pruneAtSize) {
      const current = now();
      for (let grant = this.#first; grant; ) {
        const next = grant.next;
        if (grant.validUntil <= current) this.forget(grant);
        grant = next;
      }
      this.#pruneAtSize = Math.max(64, this.#size * 2);
    }
    const grant: LiveGrant = {
      key,
      validUntil,
      aborted: false,
      reason: undefined,
      onLost: undefined,
      previous: undefined,
      next: this.#first,
    };
    if (this.#first) this.#first.previous = grant;
    this.#first = grant;
    this.#size++;
    return grant;
  }

  forget(grant: LiveGrant | undefined): void {
    if (!grant || (grant.previous === undefined && this.#first !== grant)) return;
    if (grant.previous) grant.previous.next = grant.next;
    else this.#first = grant.next;
    if (grant.next) grant.next.previous = grant.previous;
    grant.previous = grant.next = undefined;
    this.#size--;
  }

  abortAll(cause: Error): void {
    let grant = this.#first;
    this.#first = undefined;
    this.#size = 0;
    while (grant) {
      const next = grant.next;
      grant.previous = grant.next = undefined;
      abortOnConnectionLoss(grant, cause);
      grant = next;
    }
  }
}

export function abortOnConnectionLoss(grant: LiveGrant, cause: Error): void {
  if (grant.aborted) return;
  grant.aborted = true;
  grant.reason = new LockLostError(
    grant.key,
    `${cause.message} while it was held (onConnectionLoss: 'abort')`,
    { cause },
  );
  grant.onLost?.(grant.reason);
}

/** `holder()` of a key locked by something other than dlock (a redlock lock, for one). */
export const FOREIGN_HOLDER: HolderInfo = { identity: '(a lock not taken through dlock)', token: 0n };

export const redisCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
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
    'process paused past its validity can still act once before its lease aborts (the token covers that too). ' +
    'FIFO is among live dlock waiters, across providers: a waiting request keeps its place in a line on the ' +
    'server by re-attempting at least every second (its place lapses 2 s after its last attempt, by the server ' +
    'clock), so a waiter paused longer than that joins the back of the line, and a crashed one holds the line ' +
    'up for at most 2 s. tryAcquire never joins the line and never overtakes it. A client that does not use the ' +
    "line (the redlock library on the same keys, keyPrefix: '') takes a free lock whenever it asks.",
};

export interface RedisDriverOptions {
  readonly connection: RedisConnection;
  readonly wakeups: ReleaseWakeups;
  readonly keyPrefix: string;
  readonly cluster: boolean;
  readonly onConnectionLoss: ConnectionLossPolicy;
}

/** Keys SCAN looks at per call: a hint to the server, bounding the work of each round trip. */
const SCAN_COUNT = 1000;

/** A literal for a SCAN MATCH pattern: `*`, `?`, `[`, `]` and backslash lose their glob meaning. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** The part of a lease's ttl not promised to the caller: the server may count time slightly faster. */
export function driftMs(ttlMs: number): number {
  return ttlMs * 0.01 + 2;
}

type AcquireReply = [1, string] | [0, number] | ConflictReply;
type HolderReply = [0] | [1, string, number] | ConflictReply;
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
  readonly #layouts: KeyLayouts;
  readonly #cluster: boolean;
  readonly #liveGrants: LiveGrants | undefined;

  constructor(options: RedisDriverOptions) {
    this.#connection = options.connection;
    this.#wakeups = options.wakeups;
    this.#keyPrefix = options.keyPrefix;
    this.#layouts = new KeyLayouts(options.keyPrefix);
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
    const layout = this.#layouts.of(request.key);
    const sent = ticket ?? newTicket(request.identity);
    // A waiting request joins the key's line when it finds the lock busy; a try never does.
    const waits = request.willWait !== false;
    if (sent.wait) this.#wakeups.beforeAttempt(sent.wait);
    else if (waits) sent.wait = this.#wakeups.inboxWaiterIfReady(sent.owner);
    if (waits) sent.queued = true;
    const epoch = this.#connection.epoch;
    const sentAt = now();
    let reply: AcquireReply;
    try {
      reply = (await this.#connection.script(
        'acquire',
        acquireScript,
        layout.scriptKeys,
        [sent.owner, Math.ceil(request.ttlMs), sent.tail, waits ? this.#wakeups.inbox : ''],
        request,
        sent,
      )) as AcquireReply;
    } catch (error) {
      if (!mayHaveBeenApplied(error)) throw error;
      sent.unresolved = true;
      return { outcome: 'unknown', ticket: sent, cause: error as Error };
    }
    // The script read the key: whatever an earlier attempt of this request did is now known.
    sent.unresolved = false;
    if (reply[0] === -1) throw conflict(request.key, reply);
    if (reply[0] === 0) {
      if (!waits) return { outcome: 'busy', ticket: sent };
      // Wake when the holder (or a silent head of the line) is due to expire, and in time to keep our
      // place in line; an admit notice on the inbox wakes us before that when we reach the head.
      const untilMs = reply[1] < 0 ? PLACE_REFRESH_MS : Math.min(reply[1], PLACE_REFRESH_MS);
      if (sent.wait) this.#wakeups.sawHolder(sent.wait, untilMs);
      else sent.wait = this.#wakeups.inboxWaiter(sent.owner, untilMs);
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
        lost: live,
        handle: { owner: sent.owner, live },
      },
    };
  }

  waitForChange(request: LockRequest, ticket: RedisTicket | undefined, maxWaitMs: number): Promise<void> {
    if (!ticket?.wait) return pause(maxWaitMs, request.signal);
    return this.#wakeups.wait(ticket.wait, request.signal, maxWaitMs);
  }

  /**
   * Stops waiting, leaves the key's waiting line (the next waiter is admitted if this one was at its
   * head), and deletes the lock if it holds this request's owner prefix — which only an attempt whose
   * reply was not read can have left there. Nothing is sent for a try whose attempts were all answered.
   * Sent on the command connection after the attempts it cleans up, so Redis runs it after them.
   */
  async withdraw(request: LockRequest, ticket: RedisTicket): Promise<void> {
    if (ticket.wait) this.#wakeups.drop(ticket.wait);
    if (!ticket.unresolved && ticket.inFlight === 0 && !ticket.queued) return;
    await this.#deleteOwned(request.key, ticket.owner, 'withdraw', request);
  }

  async extend(key: string, grant: Grant<RedisGrantHandle>, ttlMs: number): Promise<number> {
    const { lockKey } = this.#layouts.of(key);
    const sentAt = now();
    const outcome = await this.#connection.script(
      'extend',
      extendScript,
      [lockKey],
      [grant.handle.owner, Math.ceil(ttlMs)],
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
    return (await this.inspect(key)).holder;
  }

  /** The holder and its lease's PTTL, read in one script. */
  async inspect(key: string): Promise<KeyInspection> {
    const reply = await this.#readLock(this.#layouts.of(key).lockKey);
    if (reply[0] === 0) return { holder: null };
    if (reply[0] === -1) throw conflict(key, reply);
    const decoded = decodeLockValue(reply[1]);
    const holder = decoded ? { identity: decoded.identity, token: decoded.fencingToken } : FOREIGN_HOLDER;
    return { holder, ttlLeftMs: Number(reply[2]) };
  }

  /**
   * SCAN (on every master of a Cluster) for `<keyPrefix><prefix>*`, then the holder script on each
   * match: counters, semaphore keys and application data that shares the prefix are left out.
   */
  async heldKeys(prefix: string): Promise<string[]> {
    const pattern = `${escapeGlob(`${this.#keyPrefix}${prefix}`)}*`;
    // Through run(): a Cluster client knows its masters only once it is ready.
    const nodes = await this.#connection.run('list keys', async (client) =>
      this.#cluster ? (client as Cluster).nodes('master') : [client as Redis],
    );
    const candidates = new Set<string>();
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, keys] = await this.#connection.run('list keys', () =>
          node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
        );
        cursor = next;
        for (const redisKey of keys) if (!isReservedKey(redisKey)) candidates.add(redisKey);
      } while (cursor !== '0');
    }
    const held: string[] = [];
    for (const redisKey of candidates) {
      if ((await this.#readLock(redisKey))[0] === 1) held.push(redisKey.slice(this.#keyPrefix.length));
    }
    return held.sort();
  }

  async close(): Promise<void> {
    this.#wakeups.close();
    await this.#connection.close();
  }

  #readLock(lockKey: string): Promise<HolderReply> {
    return this.#connection.script('holder', holderScript, [lockKey], []) as Promise<HolderReply>;
  }

  /** With `request` (a withdraw), a server whose connects fail is not waited for (see permits.ts #leave). */
  async #deleteOwned(
    key: string,
    owner: string,
    operation: string,
    request?: { readonly signal: AbortSignal },
  ): Promise<void> {
    const { releaseKeys, releaseChannel } = this.#layouts.of(key);
    await this.#connection.script(operation, releaseScript, releaseKeys, [owner, releaseChannel], request);
  }
}

/** A new request's ticket: a fresh owner prefix (128 random bits) and its identity. */
function newTicket(identity: string): RedisTicket {
  const { head, tail } = lockValueParts(newOwnerToken(), identity);
  return { owner: head, tail, unresolved: false, inFlight: 0, queued: false, wait: undefined };
}

function conflict(
  key: string,
  [, redisKey, type, ttlMs, preview]: ConflictReply,
): KeyConflictError<KeyConflictFound> {
  return keyConflict(key, redisKey, { type, ttlMs: Number(ttlMs), preview });
}
