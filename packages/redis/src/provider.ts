import type { ConnectionOptions as TlsOptions } from 'node:tls';
import {
  InvalidArgumentError,
  type LockProvider,
  type ProviderOptions,
  type RetryPolicyOptions,
  createLockProvider,
  validateDuration,
} from '@dlock/core';
import { type Cluster, Redis } from 'ioredis';
import { RedisConnection } from './connection.js';
import { type ConnectionLossPolicy, RedisLockDriver } from './driver.js';
import { DEFAULT_KEY_PREFIX, newOwnerToken } from './layout.js';
import { RedisReadWriteDriver } from './read-write.js';
import type { RedisClient } from './scripts.js';
import { RedisSemaphoreDriver } from './semaphore.js';
import { ReleaseWakeups } from './wakeups.js';

export interface RedisProviderOptions extends Omit<ProviderOptions, 'election'> {
  /** `redis://[[user]:password@]host[:port][/db]` or `rediss://...` (TLS). Give this or `client`. */
  url?: string;
  /**
   * An ioredis client you already have: standalone, Sentinel-managed or Cluster. The provider never
   * quits it (close() leaves it open); the provider's subscriber connection is a `duplicate()` of it.
   */
  client?: RedisClient;
  /**
   * Prepended to every key: the lock lives at `<keyPrefix><key>`. Default 'dlock:', so that locks never
   * share a Redis key with application data; '' is the `redlock` library's layout (interop).
   */
  keyPrefix?: string;
  /**
   * Longest wait for a usable connection, per try, before BackendUnavailableError. Default 3 000 ms.
   * A provider that has never reached its server fails after one such wait; afterwards a waiting
   * acquire keeps trying for up to `retry.outageMs` (see `redisRetryDefaults`).
   */
  connectTimeoutMs?: number;
  /**
   * Longest wait for one command's reply. Default 2 000 ms. An acquire whose reply does not come in
   * time has an unknown outcome: core adopts it on the next attempt or undoes it by its owner prefix.
   */
  commandTimeoutMs?: number;
  /**
   * What a dropped connection means for the leases it took. 'abort' (default): their signals abort at
   * once — the lock may well still be held at the server, but this process can no longer vouch for it
   * (Curator's SUSPENDED treated as LOST). 'wait-for-ttl': nothing happens until the lease's validity
   * runs out, and an extension after reconnecting keeps it — for code that tolerates a short blip.
   */
  onConnectionLoss?: ConnectionLossPolicy;
  /** With `url` only: ACL user name (overrides one in the URL). */
  username?: string;
  /** With `url` only: password (overrides one in the URL). */
  password?: string;
  /** With `url` only: TLS options, or true for defaults. A `rediss://` URL turns TLS on by itself. */
  tls?: boolean | TlsOptions;
}

const ON_CONNECTION_LOSS: readonly ConnectionLossPolicy[] = ['abort', 'wait-for-ttl'];
const URL_ONLY_OPTIONS = ['username', 'password', 'tls'] as const;

/**
 * A dlock provider on one Redis node (or a Sentinel-managed primary, or a Cluster): one round trip per
 * attempt, a per-key fencing counter, pub/sub wake-ups, and attempts whose reply was lost adopted or
 * undone by their owner prefix (issue 11). See the package README for the key layout.
 *
 * Throws InvalidArgumentError (naming the field) for bad options. Its operations reject
 * BackendUnavailableError when the server cannot be used (after core's retries, see `retry`), and
 * KeyConflictError when a lock key holds application data.
 */
export function createRedisProvider(options: RedisProviderOptions): LockProvider {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object with url or client');
  }
  const {
    url,
    client: givenClient,
    keyPrefix = DEFAULT_KEY_PREFIX,
    connectTimeoutMs = 3_000,
    commandTimeoutMs = 2_000,
    onConnectionLoss = 'abort',
    username,
    password,
    tls,
    ...providerOptions
  } = options;
  if (typeof keyPrefix !== 'string') throw new InvalidArgumentError('keyPrefix', keyPrefix, 'a string');
  validateDuration('connectTimeoutMs', connectTimeoutMs, 1);
  validateDuration('commandTimeoutMs', commandTimeoutMs, 1);
  if (!ON_CONNECTION_LOSS.includes(onConnectionLoss)) {
    throw new InvalidArgumentError('onConnectionLoss', onConnectionLoss, ON_CONNECTION_LOSS.join(' | '));
  }
  for (const [field, value] of [
    ['username', username],
    ['password', password],
  ] as const) {
    if (value !== undefined && typeof value !== 'string')
      throw new InvalidArgumentError(field, value, 'a string');
  }
  if (tls !== undefined && typeof tls !== 'boolean' && (typeof tls !== 'object' || tls === null)) {
    throw new InvalidArgumentError('tls', tls, 'true, false or node:tls connection options');
  }

  let connection: RedisConnection;
  let createSubscriber: () => RedisClient;
  if (givenClient !== undefined) {
    if (url !== undefined) {
      throw new InvalidArgumentError('client', 'an ioredis client', 'either url or client, not both');
    }
    for (const field of URL_ONLY_OPTIONS) {
      if (options[field] !== undefined) {
        throw new InvalidArgumentError(
          field,
          options[field],
          'only together with url (configure your own client)',
        );
      }
    }
    checkClient(givenClient);
    connection = new RedisConnection({
      client: givenClient,
      owned: false,
      address: describeClient(givenClient),
      connectTimeoutMs,
      commandTimeoutMs,
    });
    createSubscriber = () => duplicateForSubscribing(givenClient);
  } else {
    const { parsed, urlUsername, urlPassword } = parseRedisUrl(url);
    const effectiveUsername = username ?? urlUsername;
    const effectivePassword = password ?? urlPassword;
    const clientOptions = {
      ...(effectiveUsername === undefined ? {} : { username: effectiveUsername }),
      ...(effectivePassword === undefined ? {} : { password: effectivePassword }),
      ...(tls === undefined || tls === false ? {} : { tls: tls === true ? {} : tls }),
      lazyConnect: true,
      connectTimeout: connectTimeoutMs,
      // Commands wait for a ready connection in RedisConnection, bounded by connectTimeoutMs; nothing is
      // queued inside ioredis, and nothing in flight when a connection drops is replayed after a
      // reconnect (a replayed acquire could take a lock its caller was told it did not get).
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: reconnectDelayMs,
    };
    const client = new Redis(parsed.toString(), clientOptions);
    connection = new RedisConnection({
      client,
      owned: true,
      address: `${parsed.hostname}:${parsed.port || 6379}`,
      connectTimeoutMs,
      commandTimeoutMs,
    });
    createSubscriber = () =>
      new Redis(parsed.toString(), { ...clientOptions, enableOfflineQueue: true, maxRetriesPerRequest: 1 });
  }

  const cluster = isCluster(connection.client);
  const driverOptions = {
    connection,
    wakeups: new ReleaseWakeups(createSubscriber, `${keyPrefix}wake:${newOwnerToken()}`),
    keyPrefix,
    cluster,
    onConnectionLoss,
  };
  const driver = new RedisLockDriver(driverOptions);
  try {
    return createLockProvider(driver, providerOptions, {
      semaphoreDriver: new RedisSemaphoreDriver(driverOptions),
      readWriteDriver: new RedisReadWriteDriver(driverOptions),
      retryDefaults: redisRetryDefaults(connectTimeoutMs),
    });
  } catch (error) {
    // Bad provider options: do not leave the client this call created behind.
    void connection.close();
    throw error;
  }
}

/**
 * The Redis provider's retry defaults, fitted to its connect timeout (each try of a waiting acquire
 * during an outage is a wait for the reconnect of up to `connectTimeoutMs`). A waiting acquire rides
 * out an outage of up to `outageMs` = max(15 s, 5 × connectTimeoutMs) — comfortably more than a
 * restart, or the 2 × connectTimeoutMs outage the conformance kit injects — and fails with
 * BackendUnavailableError after that. Every other field is core's default (`defaultRetryPolicy`).
 */
export function redisRetryDefaults(connectTimeoutMs: number): RetryPolicyOptions {
  return { outageMs: Math.max(15_000, 5 * connectTimeoutMs) };
}

/**
 * ioredis' reconnect back-off for connections the provider opens: 50, 100, 200, 400 ms, then every
 * 500 ms, each with up to 50% jitter taken off so that many clients do not reconnect in step. A server
 * that is back is noticed within half a second, which bounds "reachable again → orphan gone" and the
 * hand-off to a waiter after a blip; a refused connect costs next to nothing.
 */
function reconnectDelayMs(attempt: number): number {
  return Math.round(Math.min(50 * 2 ** (attempt - 1), 500) * (1 - Math.random() / 2));
}

interface ParsedRedisUrl {
  /** The URL without credentials. */
  readonly parsed: URL;
  readonly urlUsername: string | undefined;
  readonly urlPassword: string | undefined;
}

/**
 * Credentials are taken out of the URL and passed to ioredis as options: with both, ioredis lets the
 * URL's win (and an empty user name in the URL would hide the username option).
 */
function parseRedisUrl(url: unknown): ParsedRedisUrl {
  const allowed = 'a redis://host[:port][/db] or rediss://... URL';
  if (url === undefined) throw new InvalidArgumentError('url', url, `${allowed}, or a client`);
  if (typeof url !== 'string') throw new InvalidArgumentError('url', url, allowed);
  try {
    const parsed = new URL(url);
    const valid =
      (parsed.protocol === 'redis:' || parsed.protocol === 'rediss:') &&
      parsed.hostname !== '' &&
      /^(\/\d*)?$/.test(parsed.pathname);
    if (valid) {
      const urlUsername = decodeURIComponent(parsed.username) || undefined;
      const urlPassword = decodeURIComponent(parsed.password) || undefined;
      parsed.username = '';
      parsed.password = '';
      return { parsed, urlUsername, urlPassword };
    }
  } catch {
    // Not a URL, or malformed percent-encoding in its credentials: reported below.
  }
  throw new InvalidArgumentError('url', redactUrl(url), `${allowed}; db, when given, a number`);
}

/** Error messages show the URL without its password. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*):[^@/]*@/, '//$1:***@');
}

function checkClient(client: unknown): asserts client is RedisClient {
  const candidate = client as Partial<Record<'evalsha' | 'eval' | 'get' | 'duplicate' | 'on', unknown>>;
  const looksLikeIoredis =
    typeof client === 'object' &&
    client !== null &&
    typeof (client as { status?: unknown }).status === 'string' &&
    (['evalsha', 'eval', 'get', 'duplicate', 'on'] as const).every((m) => typeof candidate[m] === 'function');
  if (!looksLikeIoredis) {
    throw new InvalidArgumentError('client', client, 'an ioredis Redis or Cluster client');
  }
}

function isCluster(client: RedisClient): boolean {
  return (client as { isCluster?: boolean }).isCluster === true;
}

/** host:port, the Sentinel group or the Cluster seed nodes: enough to find the server, never a password. */
function describeClient(client: RedisClient): string {
  if (isCluster(client)) {
    const nodes = (client as { startupNodes?: Array<{ host?: string; port?: number } | string | number> })
      .startupNodes;
    const seeds = (nodes ?? []).map((node) =>
      typeof node === 'object' ? `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}` : String(node),
    );
    return `cluster ${seeds.join(',') || '(unknown seeds)'}`;
  }
  const { host, port, sentinels, name } = (client as Redis).options;
  if (sentinels && sentinels.length > 0) {
    return `sentinel group "${name}" via ${sentinels.map((s) => `${s.host ?? '127.0.0.1'}:${s.port ?? 26379}`).join(',')}`;
  }
  return `${host ?? '127.0.0.1'}:${port ?? 6379}`;
}

/**
 * The subscriber must queue SUBSCRIBE while it connects, whatever the application configured for its
 * own client; a subscription that still fails only costs waiters the fallback re-check.
 */
function duplicateForSubscribing(client: RedisClient): RedisClient {
  if (isCluster(client)) return (client as Cluster).duplicate([], { enableOfflineQueue: true });
  return (client as Redis).duplicate({ enableOfflineQueue: true, lazyConnect: true });
}
