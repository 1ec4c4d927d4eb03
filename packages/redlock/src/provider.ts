import {
  InvalidArgumentError,
  type LockProvider,
  type ProviderOptions,
  type RetryPolicyOptions,
  createLockProvider,
  validateDuration,
} from '@dlock/core';
import type { Redis } from 'ioredis';
import { RedlockDriver } from './driver.js';
import { type RedisNode, adoptNode, closeClients, connectNode, openSubscriber } from './node.js';
import { RedlockReadWriteDriver } from './read-write.js';
import { RedlockSemaphoreDriver } from './semaphore.js';
import { ReleaseNotices } from './wakeups.js';

export interface RedlockProviderOptions extends Omit<ProviderOptions, 'election'> {
  /**
   * One `redis://` (or `rediss://`) URL per independent Redis node; an odd number of them. The provider
   * opens and closes these connections itself.
   */
  urls?: readonly string[];
  /**
   * Alternatively, one ioredis client per independent node (an odd number, created with a
   * `commandTimeout`). The provider uses them but never closes them; it opens one extra subscriber
   * connection per node (`client.duplicate()`) for release notices and closes those.
   */
  clients?: readonly Redis[];
  /** Prepended to every lock key. Default '' — the key layout of the `redlock` library itself. */
  keyPrefix?: string;
  /** Clock drift allowed between client and nodes, as a fraction of the ttl. Default 0.01. */
  driftFactor?: number;
  /**
   * Longest wait for a node's connection that is being (re)established before a request to it counts
   * as failed (ms); also the connect timeout of connections opened from `urls`. A node whose last
   * connect failed is not waited for. Default 2 000.
   */
  connectTimeoutMs?: number;
  /**
   * Per-node command timeout for connections opened from `urls` (ms); `clients` keep their own
   * `commandTimeout`. The longest of them is also the default `settleGraceMs`. Default 2 000.
   */
  commandTimeoutMs?: number;
  /**
   * How long after `waitMs` an attempt already in flight may still complete (ms). Default: the command
   * timeout, the longest one node may take to answer, so an attempt in flight when the budget runs out
   * reports its real votes; the caller is answered within `waitMs` + this (dlock issue 12 #8).
   */
  settleGraceMs?: number;
  /**
   * Overrides of the retry policy (see `RetryPolicy` in @dlock/core), field by field. Defaults for
   * RedLock: see `redlockRetryDefaults`.
   */
  retry?: RetryPolicyOptions;
}

/**
 * The retry policy's defaults for RedLock, fitted to its timeouts: a waiting acquire rides out an
 * outage of the majority for at least 15 s and for several connect-plus-command rounds; close() can
 * still release after one reconnect and one command timeout.
 */
export function redlockRetryDefaults(timeouts: {
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}): RetryPolicyOptions {
  const roundMs = timeouts.connectTimeoutMs + timeouts.commandTimeoutMs;
  return {
    outageMs: Math.max(15_000, 3 * roundMs),
    closeMs: Math.max(5_000, 2 * roundMs),
  };
}

/**
 * A LockProvider running RedLock over N independent Redis nodes: a lease is held while a majority of
 * nodes holds its owner value, for the ttl minus the time the majority took to answer and the allowed
 * clock drift. No fencing: see `capabilities.safety` and the package README.
 */
export function createRedlockProvider(options: RedlockProviderOptions): LockProvider {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object');
  }
  const {
    urls,
    clients,
    keyPrefix = '',
    driftFactor = 0.01,
    connectTimeoutMs = 2_000,
    commandTimeoutMs = 2_000,
    ...providerOptions
  } = options;
  if (typeof keyPrefix !== 'string' || Buffer.byteLength(keyPrefix) > 1024) {
    throw new InvalidArgumentError('keyPrefix', keyPrefix, 'a string of at most 1024 UTF-8 bytes');
  }
  if (typeof driftFactor !== 'number' || !(driftFactor >= 0 && driftFactor < 1)) {
    throw new InvalidArgumentError(
      'driftFactor',
      driftFactor,
      'a number >= 0 and < 1 (a fraction of the ttl)',
    );
  }
  validateDuration('connectTimeoutMs', connectTimeoutMs, 1);
  validateDuration('commandTimeoutMs', commandTimeoutMs, 1);
  if ((urls === undefined) === (clients === undefined)) {
    throw new InvalidArgumentError('urls', urls, 'exactly one of `urls` or `clients`');
  }
  let nodes: RedisNode[];
  let owned: Redis[];
  if (urls !== undefined) {
    validateNodeList('urls', urls);
    urls.forEach((url, index) => validateUrl(`urls[${index}]`, url));
    nodes = urls.map((url) => connectNode(url, { connectTimeoutMs, commandTimeoutMs }));
    owned = nodes.map((node) => node.client);
  } else {
    validateNodeList('clients', clients);
    clients!.forEach((client, index) => validateClient(`clients[${index}]`, client));
    nodes = clients!.map((client) => adoptNode(client, connectTimeoutMs));
    owned = [];
  }
  const slowestCommandMs =
    urls !== undefined
      ? commandTimeoutMs
      : Math.max(...clients!.map((client) => client.options.commandTimeout!));
  // Subscriber connections copy their node's connection settings (for a caller's client, its own).
  const notices = new ReleaseNotices(
    nodes.map((node) => () => openSubscriber(node, urls !== undefined)),
    keyPrefix,
  );
  const driver = new RedlockDriver({
    nodes,
    keyPrefix,
    driftFactor,
    notices,
    closeConnections: async () => {
      await closeClients(owned);
      // A caller's clients outlive the provider: take its listeners off them.
      if (owned.length === 0) for (const node of nodes) node.detach();
    },
  });
  const permitConfig = { nodes, keyPrefix, driftFactor, notices };
  try {
    return createLockProvider(
      driver,
      { ...providerOptions, settleGraceMs: providerOptions.settleGraceMs ?? slowestCommandMs },
      {
        semaphoreDriver: new RedlockSemaphoreDriver(permitConfig),
        readWriteDriver: new RedlockReadWriteDriver(permitConfig),
        retryDefaults: redlockRetryDefaults({ connectTimeoutMs, commandTimeoutMs: slowestCommandMs }),
      },
    );
  } catch (error) {
    closeClients(owned).catch(() => {});
    throw error;
  }
}

/**
 * An odd number of distinct nodes. With an even number the library can wait forever: on a 2–2 split
 * of 4 nodes neither side reaches its quorum of 3 and `acquire` never settles (observed with
 * redlock 5.0.0-beta.2; see README). An odd count also wastes no node: 4 nodes tolerate one failure,
 * like 3.
 */
function validateNodeList(field: string, list: unknown): asserts list is readonly unknown[] {
  if (!Array.isArray(list) || list.length % 2 === 0) {
    throw new InvalidArgumentError(field, list, 'an array with an odd number (1, 3, 5, ...) of Redis nodes');
  }
  if (new Set(list).size !== list.length) {
    throw new InvalidArgumentError(field, list, 'distinct nodes (each node counts once toward the majority)');
  }
}

function validateUrl(field: string, url: unknown): void {
  let protocol: string | undefined;
  try {
    protocol = typeof url === 'string' ? new URL(url).protocol : undefined;
  } catch {
    protocol = undefined;
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new InvalidArgumentError(field, url, 'a redis:// or rediss:// URL');
  }
}

function validateClient(field: string, client: unknown): asserts client is Redis {
  // Duck-typed: a second copy of ioredis in the application would fail an instanceof check.
  const candidate = client as Partial<Redis> | null;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.evalsha !== 'function' ||
    typeof candidate.duplicate !== 'function' ||
    'nodes' in candidate
  ) {
    throw new InvalidArgumentError(field, client, 'an ioredis Redis client (not a Cluster) for one node');
  }
  const commandTimeout = candidate.options?.commandTimeout;
  if (typeof commandTimeout !== 'number') {
    // Without it a node that stops answering holds up the library's vote count indefinitely.
    throw new InvalidArgumentError(
      `${field}.options.commandTimeout`,
      commandTimeout,
      'a number of milliseconds: create the client with a commandTimeout',
    );
  }
}
