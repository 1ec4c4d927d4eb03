import {
  type BackendDescriptor,
  BackendUnavailableError,
  type Capabilities,
  type Grant,
  type HolderInfo,
  InvalidArgumentError,
  type LockDriver,
  type LockProvider,
  type LockRequest,
  createLockProvider,
  now,
  pause,
} from '@dlock/core';
import { Redis } from 'ioredis';

/**
 * The expiry-timestamp lock from the "weekly job" pattern, kept here only as a teaching baseline:
 *
 *   SETNX key <now + ttl>            → 1: you hold it
 *   GET key → <t>; if t < now:       → the holder's time is up
 *     GETSET key <now + ttl> → <old> → you hold it if old is still in the past
 *
 * Its flaws are the point: expiry is decided by comparing *client* wall clocks (a client whose clock
 * runs ahead steals a live lock), release is a plain DEL with no owner check (a late holder deletes its
 * successor's lock), and the timestamp is no fencing token. The lab's fault scenarios make each of
 * these visible; nothing outside the lab should use it.
 */
const baselineCapabilities: Capabilities = {
  fencing: 'none',
  fairness: 'none',
  wakeup: 'poll',
  expiry: 'ttl',
  safety:
    'Teaching baseline, unsafe by design: expiry compares client wall clocks (clock skew lets a contender take a ' +
    'live lock), release deletes without checking the owner, and a paused holder keeps writing after expiry.',
};

const POLL_MS = 25;

interface BaselineHandle {
  readonly expiry: number;
}

class SetnxGetsetDriver implements LockDriver<BaselineHandle, undefined> {
  readonly backend = 'setnx-getset';
  readonly capabilities = baselineCapabilities;
  readonly limits = { minTtlMs: 10, maxKeyBytes: 1024 };

  constructor(
    private readonly client: Redis,
    readonly address: string,
  ) {}

  async attempt(request: LockRequest) {
    const sentAt = now();
    const expiry = Date.now() + request.ttlMs + 1;
    const granted = (): { outcome: 'granted'; grant: Grant<BaselineHandle> } => ({
      outcome: 'granted',
      grant: { token: BigInt(expiry), validUntil: sentAt + request.ttlMs, handle: { expiry } },
    });
    if ((await this.#call(() => this.client.setnx(request.key, String(expiry)))) === 1) return granted();
    const current = await this.#call(() => this.client.get(request.key));
    if (current === null || Number(current) >= Date.now()) return { outcome: 'busy' as const };
    // The pattern's takeover: whoever's GETSET still returns an expired value wins. A loser has already
    // overwritten the winner's timestamp — one of the defects this baseline exists to show.
    const previous = await this.#call(() => this.client.getset(request.key, String(expiry)));
    if (previous === null || Number(previous) < Date.now()) return granted();
    return { outcome: 'busy' as const };
  }

  async waitForChange(request: LockRequest, _ticket: undefined, maxWaitMs: number): Promise<void> {
    await pause(Math.min(POLL_MS, maxWaitMs), request.signal).catch(() => {});
  }

  async withdraw(): Promise<void> {}

  async extend(key: string, _grant: Grant<BaselineHandle>, ttlMs: number): Promise<number> {
    const sentAt = now();
    await this.#call(() => this.client.set(key, String(Date.now() + ttlMs + 1)));
    return sentAt + ttlMs;
  }

  async release(key: string): Promise<void> {
    // No owner check: exactly the pattern's release, and exactly its defect.
    await this.#call(() => this.client.del(key));
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const current = await this.#call(() => this.client.get(key));
    if (current === null || Number(current) < Date.now()) return null;
    return { identity: 'unknown (the pattern stores only a timestamp)', token: BigInt(current) };
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  async #call<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (error) {
      throw new BackendUnavailableError(this.backend, this.address, String(error), { cause: error });
    }
  }
}

async function createBaselineProvider(
  endpoints: readonly string[],
  options: { identity?: string; connectTimeoutMs?: number } = {},
): Promise<LockProvider> {
  const [url] = endpoints;
  if (endpoints.length !== 1 || url === undefined) {
    throw new InvalidArgumentError('endpoints', endpoints, 'exactly one redis URL');
  }
  const connectTimeoutMs = options.connectTimeoutMs ?? 2_000;
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: connectTimeoutMs,
    commandTimeout: connectTimeoutMs,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => Math.min(attempt * 50, 500),
  });
  client.on('error', () => {
    // Connection errors surface as rejected commands, turned into BackendUnavailableError above.
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw new BackendUnavailableError('setnx-getset', url, String(error), { cause: error });
  }
  return createLockProvider(new SetnxGetsetDriver(client, url), {
    identity: options.identity,
    fallbackRecheckMs: POLL_MS * 4,
  });
}

/** Exported under the same name as a backend package's descriptor, so contender processes load it alike. */
export const dlockBackend: BackendDescriptor = {
  name: 'setnx-getset',
  servers: { kind: 'redis', count: 1 },
  createProvider: createBaselineProvider,
};
