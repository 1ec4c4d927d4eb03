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
import { type RedisConnection, mayHaveBeenApplied } from './connection.js';
import {
  type LiveGrant,
  LiveGrants,
  type RedisDriverOptions,
  abortOnConnectionLoss,
  driftMs,
} from './driver.js';
import { newOwnerToken, validateLockKey } from './layout.js';
import {
  type PermitEntry,
  type PermitLayout,
  type PermitPrimitive,
  decodePermitEntry,
  permitKeys,
  permitLayout,
} from './permit-layout.js';
import {
  permitAcquireScript,
  permitExtendScript,
  permitHoldersScript,
  permitLeaveScript,
} from './permit-scripts.js';
import { PLACE_MS, PLACE_REFRESH_MS } from './queue-lua.js';
import type { ReleaseWakeups, WaitState } from './wakeups.js';

export { PLACE_MS, PLACE_REFRESH_MS } from './queue-lua.js';

/** A permit grant: the owner value every script matches on. */
export interface PermitHandle {
  readonly owner: string;
  readonly live?: LiveGrant;
}

/**
 * A request's state between attempts: its owner value (one per request, so a retried attempt after a
 * lost reply adopts what the lost one obtained, and withdraw undoes it) and its wake-up ticket.
 */
export interface PermitTicket {
  readonly owner: string;
  wake: WaitState | undefined;
}

/** What one request asks of the permit table. */
export interface PermitAsk {
  readonly limit: number;
  readonly permits: number;
}

/** The status the acquire script answers with. */
export const PERMIT_GRANTED = 1;
export const PERMIT_BUSY = 0;
export const PERMIT_LIMIT_MISMATCH = -1;

/** A new random owner value (128 bits), the secret every permit script compares. */
export function newPermitOwner(): string {
  return newOwnerToken();
}

/** The acquire script's arguments, in its ARGV order (see permit-scripts.ts). */
export function permitAcquireArgs(
  owner: string,
  ask: PermitAsk,
  request: LockRequest,
  layout: PermitLayout,
  options: { readonly queued: boolean; readonly fenced: boolean },
): (string | number)[] {
  return [
    owner,
    ask.permits,
    ask.limit,
    Math.ceil(request.ttlMs),
    options.queued ? PLACE_MS : 0,
    request.identity,
    layout.channel,
    options.fenced ? 1 : 0,
  ];
}

/** The holders script's reply: the stored limit (0 when none) and the live holders, oldest grant first. */
export function decodeHolders(reply: unknown): {
  readonly limit: number;
  readonly holders: Array<PermitEntry & { readonly owner: string }>;
} {
  const [limit, ...flat] = reply as string[];
  const holders: Array<PermitEntry & { owner: string }> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const entry = decodePermitEntry(flat[i + 1]!);
    if (entry) holders.push({ owner: flat[i]!, ...entry });
  }
  holders.sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0));
  return { limit: Number(limit), holders };
}

/**
 * Whether a wake-up message concerns `owner`: an `admit:` notice names the waiters at the head of the
 * queue that may go now (the others sleep on); any other notice wakes everyone.
 */
function admits(owner: string): (message: string) => boolean {
  return (message) => !message.startsWith('admit:') || message.includes(owner);
}

/**
 * The driver behind the Redis semaphore and the Redis read-write lock: a permit table per name (see
 * permit-layout.ts), one script per operation. A subclass says which table and how many permits of
 * which limit a request asks for. Waiting, retries, timeouts and renewal are core's; this answers
 * attempt / waitForChange / withdraw / extend / release over the lock driver's connection and its
 * shared wake-up subscriber.
 */
export abstract class RedisPermitDriver<Request extends LockRequest>
  implements LeaseDriver<Request, PermitHandle, PermitTicket>
{
  readonly backend = 'redis';
  abstract readonly capabilities: Capabilities;
  readonly limits = { minTtlMs: 10, maxKeyBytes: 4096 };
  protected abstract readonly primitive: PermitPrimitive;
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

  get address(): string {
    return this.#connection.address;
  }

  /** The limit and the number of permits `request` asks for. */
  protected abstract ask(request: Request): PermitAsk;

  /** Throws the primitive's error for a name in use with another limit. */
  protected abstract limitMismatch(request: Request, storedLimit: number): Error;

  validateKey(key: string): void {
    validateLockKey(key, this.#keyPrefix, this.#cluster);
  }

  async attempt(
    request: Request,
    ticket: PermitTicket | undefined,
  ): Promise<Attempt<PermitHandle, PermitTicket>> {
    const layout = this.#layout(request.key);
    const owner = ticket?.owner ?? newPermitOwner();
    if (ticket?.wake) this.#wakeups.beforeAttempt(ticket.wake);
    const epoch = this.#connection.epoch;
    const sentAt = now();
    let reply: [number, string | number];
    try {
      reply = (await this.#connection.script(
        'acquire',
        permitAcquireScript,
        permitKeys(layout),
        permitAcquireArgs(owner, this.ask(request), request, layout, { queued: true, fenced: true }),
        request,
      )) as [number, string | number];
    } catch (error) {
      // Written and unanswered: the script may have run. The ticket keeps the owner, so the next
      // attempt adopts whatever it obtained and withdraw undoes it.
      if (!mayHaveBeenApplied(error)) throw error;
      return { outcome: 'unknown', ticket: ticket ?? { owner, wake: undefined }, cause: error as Error };
    }
    const [status, value] = reply;
    if (status === PERMIT_LIMIT_MISMATCH) throw this.limitMismatch(request, Number(value));
    if (status === PERMIT_BUSY) {
      // Wake at the earliest expiry that could admit us, and in time to keep our place in line.
      const untilExpiryMs = Number(value) < 0 ? PLACE_REFRESH_MS : Math.min(Number(value), PLACE_REFRESH_MS);
      const next = ticket ?? { owner, wake: undefined };
      if (next.wake) this.#wakeups.sawHolder(next.wake, untilExpiryMs);
      else next.wake = this.#wakeups.waiter(layout.channel, untilExpiryMs, admits(owner));
      return { outcome: 'busy', ticket: next };
    }
    if (ticket?.wake) this.#wakeups.drop(ticket.wake);
    const validUntil = sentAt + request.ttlMs - driftMs(request.ttlMs);
    const live = this.#liveGrants?.add(request.key, validUntil);
    if (live && epoch !== this.#connection.epoch) abortOnConnectionLoss(live, this.#connection.closedError());
    return {
      outcome: 'granted',
      grant: { token: BigInt(value), validUntil, lost: live, handle: { owner, live } },
    };
  }

  waitForChange(request: Request, ticket: PermitTicket | undefined, maxWaitMs: number): Promise<void> {
    if (!ticket?.wake) return pause(maxWaitMs, request.signal);
    return this.#wakeups.wait(ticket.wake, request.signal, maxWaitMs);
  }

  async withdraw(request: Request, ticket: PermitTicket): Promise<void> {
    if (ticket.wake) this.#wakeups.drop(ticket.wake);
    await this.#leave(request.key, ticket.owner, request);
  }

  async extend(key: string, grant: Grant<PermitHandle>, ttlMs: number): Promise<number> {
    const sentAt = now();
    const extended = await this.#connection.script(
      'extend',
      permitExtendScript,
      permitKeys(this.#layout(key)),
      [grant.handle.owner, Math.ceil(ttlMs)],
    );
    if (extended === 1) {
      const validUntil = sentAt + ttlMs - driftMs(ttlMs);
      if (grant.handle.live) grant.handle.live.validUntil = validUntil;
      return validUntil;
    }
    this.#liveGrants?.forget(grant.handle.live);
    throw new LockLostError(key, 'its entry expired by the server clock or was deleted at the server');
  }

  async release(key: string, grant: Grant<PermitHandle>): Promise<void> {
    this.#liveGrants?.forget(grant.handle.live);
    await this.#leave(key, grant.handle.owner);
  }

  /** The live holders of `key` by the server's clock, oldest grant first. */
  protected async holderEntries(key: string): Promise<PermitEntry[]> {
    const reply = await this.#connection.script(
      'holders',
      permitHoldersScript,
      permitKeys(this.#layout(key)),
      [],
    );
    return decodeHolders(reply).holders;
  }

  /** The connection and the subscriber belong to the lock driver, which closes them. */
  async close(): Promise<void> {}

  /**
   * Deletes `owner`'s entry (holder or place in line). With `request` (a withdraw: the request is
   * over), a server whose connects fail is not waited for (RedisConnection.script): the failure is
   * transient, and core retries the clean-up in the background instead of holding the caller's
   * answer (an abort, issue 12 #2) for connectTimeoutMs.
   */
  async #leave(key: string, owner: string, request?: { readonly signal: AbortSignal }): Promise<void> {
    const layout = this.#layout(key);
    await this.#connection.script(
      request ? 'withdraw' : 'release',
      permitLeaveScript,
      permitKeys(layout),
      [owner, layout.channel, 1],
      request,
    );
  }

  #layout(key: string): PermitLayout {
    return permitLayout(key, this.#keyPrefix, this.primitive);
  }
}
