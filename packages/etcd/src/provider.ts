import {
  type HolderInfo,
  InvalidArgumentError,
  type Lease,
  type LockProvider,
  type ProviderOptions,
  type RetryPolicy,
  type RetryPolicyOptions,
  createLockProvider,
  defaultIdentity,
  resolveRetryPolicy,
  validateDuration,
} from '@dlock/core';
import { EtcdConnection } from './connection.js';
import { RevisionQueueDriver } from './queue.js';
import { EtcdReadWriteDriver } from './read-write.js';
import { EtcdSemaphoreDriver } from './semaphore.js';
import { SessionKeys } from './session-keys.js';
import { SessionKeeper } from './session.js';
import { WatchHub } from './watch.js';

export interface EtcdProviderOptions extends Omit<ProviderOptions, 'election'> {
  /** Client URLs, e.g. `http://127.0.0.1:2379` (all `http://` or all `https://`). */
  hosts: string | readonly string[];
  /** Prepended to every lock name. Default `'dlock/'`; `''` gives exactly Go's (and etcdctl's) layout. */
  namespace?: string;
  /** Prepended to every election name (`provider.election`). Default `'dlock-election/'`. */
  electionNamespace?: string;
  /**
   * Prepended to every semaphore name (`provider.semaphore()`). Default `'dlock-semaphore/'`. Must differ
   * from the other namespaces, so a semaphore never shares keys with a lock of the same name.
   */
  semaphoreNamespace?: string;
  /**
   * Prepended to every read-write lock name (`provider.readWriteLock()`). Default `'dlock-rw/'`; `''`
   * gives exactly the keys of etcd's recipes.RWMutex. Must differ from the other namespaces.
   */
  readWriteNamespace?: string;
  /**
   * TTL of the session lease, in whole seconds (etcd's unit). A crashed holder's locks are freed this
   * long after its last keepalive. At least the cluster's minimum lease TTL (1.5 election timeouts,
   * rounded up: 2 s with etcd's defaults), or the first acquire rejects InvalidArgumentError. Default 10.
   */
  sessionTtlSec?: number;
  /** Deadline of every request to etcd (ms); a cluster that does not answer gives BackendUnavailableError. Default 5000. */
  callTimeoutMs?: number;
  /**
   * How transient failures are retried (core's RetryPolicy), field by field over etcd's defaults:
   * back-off 50 ms doubling to 500 ms with jitter; `outageMs` = max(3 × callTimeoutMs, 2 × the session
   * ttl) — a waiting acquire gives up after that long without any answer; `cleanupMs` 60 s;
   * `closeMs` 5 s (also bounds close()'s retries of the session revoke).
   */
  retry?: RetryPolicyOptions;
  /** etcd user/password authentication. */
  auth?: { username: string; password: string };
  /** TLS: the CA certificate, and a client certificate/key pair for client-certificate authentication. */
  tls?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
}

/** `provider.election`: Go's concurrency.Election on the same session. */
export interface EtcdElectionProvider extends LockProvider {
  /**
   * Go's Election.Observe: the current leader first, then each change (a watch on the election's
   * prefix; coalesced, see LockProvider.watchHolder).
   */
  watchHolder(name: string, signal: AbortSignal): AsyncIterable<HolderInfo | null>;
  /**
   * Go's Election.Proclaim: while `leadership` (a lease from this provider's `acquire`, i.e. a won
   * campaign) is still the leader, replace the value that `holder()` and `watchHolder()` report.
   * Rejects LockLostError when it is not the leader any more.
   */
  proclaim(leadership: Lease, value: string): Promise<void>;
}

/** Fault injection for tests and the lab — never for production use. */
export interface EtcdFaults {
  /** Stop sending keepalives for the current session, as a stalled process would. */
  suspendKeepAlive(): void;
  /** Stop like a crashed process: keepalives stop and the connection closes, nothing is revoked or released. */
  crash(): void;
}

export interface EtcdLockProvider extends LockProvider {
  readonly election: EtcdElectionProvider;
  /**
   * The current holder first, then each change (a watch on the lock's prefix; coalesced, see
   * LockProvider.watchHolder).
   */
  watchHolder(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null>;
  /** The current session's lease id in hex (as `etcdctl lease list` prints it), if a session is live. */
  readonly sessionLeaseId: string | undefined;
  readonly faults: EtcdFaults;
}

/**
 * etcd's retry defaults, fitted to its timeouts: a short back-off (the grpc channel retries its server
 * at least every ~0.6 s, see connection.ts), and an outage bound well above both two call timeouts and
 * the session ttl, so a waiter rides out a leader election or a server restart.
 */
export function etcdRetryDefaults(callTimeoutMs: number, sessionTtlSec: number): Partial<RetryPolicy> {
  return {
    minDelayMs: 50,
    maxDelayMs: 500,
    outageMs: Math.max(3 * callTimeoutMs, 2 * sessionTtlSec * 1000),
  };
}

const HOST_PATTERN = /^(https?:\/\/)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/;
/** etcd's MaxLeaseTTL. */
const MAX_LEASE_TTL_SEC = 9_000_000_000;

/**
 * A dlock provider over etcd's concurrency recipes: Go's Mutex layout for locks, Go's Election layout
 * for `provider.election`, both on one session lease per provider (see README.md for the layout).
 */
export function createEtcdProvider(options: EtcdProviderOptions): EtcdLockProvider {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object with hosts');
  }
  const hosts = validateHosts(options.hosts);
  const namespace = validateNamespace('namespace', options.namespace ?? 'dlock/');
  const electionNamespace = validateNamespace(
    'electionNamespace',
    options.electionNamespace ?? 'dlock-election/',
  );
  const semaphoreNamespace = validateNamespace(
    'semaphoreNamespace',
    options.semaphoreNamespace ?? 'dlock-semaphore/',
    { namespace, electionNamespace },
  );
  const readWriteNamespace = validateNamespace(
    'readWriteNamespace',
    options.readWriteNamespace ?? 'dlock-rw/',
    {
      namespace,
      electionNamespace,
      semaphoreNamespace,
    },
  );
  const sessionTtlSec = options.sessionTtlSec ?? 10;
  if (!Number.isInteger(sessionTtlSec) || sessionTtlSec < 1 || sessionTtlSec > MAX_LEASE_TTL_SEC) {
    throw new InvalidArgumentError(
      'sessionTtlSec',
      sessionTtlSec,
      `a whole number of seconds from 1 to ${MAX_LEASE_TTL_SEC} (etcd lease TTLs are whole seconds)`,
    );
  }
  const callTimeoutMs = options.callTimeoutMs ?? 5_000;
  validateDuration('callTimeoutMs', callTimeoutMs, 1);
  const auth = validateAuth(options.auth);
  const tls = validateTls(options.tls);

  const retry = resolveRetryPolicy(etcdRetryDefaults(callTimeoutMs, sessionTtlSec), options.retry);

  const connection = new EtcdConnection({ hosts, callTimeoutMs, auth, tls });
  try {
    const sessions = new SessionKeeper(connection, sessionTtlSec, retry.closeMs);
    const watches = new WatchHub(connection);
    const shared: ProviderOptions = {
      defaultTtlMs: options.defaultTtlMs,
      fallbackRecheckMs: options.fallbackRecheckMs,
      settleGraceMs: options.settleGraceMs,
      identity: options.identity ?? defaultIdentity(),
    };
    const electionParts = {
      retryDefaults: retry,
      unsupportedHint: 'provider.election offers elections only; use the provider itself',
    };
    const electionDriver = new RevisionQueueDriver({
      connection,
      sessions,
      watches,
      namespace: electionNamespace,
      ownsConnection: false,
    });
    const election = Object.assign(createLockProvider(electionDriver, shared, electionParts), {
      proclaim: (leadership: Lease, value: string) => {
        if (typeof value !== 'string' || value.length === 0) {
          return Promise.reject(new InvalidArgumentError('value', value, 'a non-empty string'));
        }
        return electionDriver.proclaim(leadership, value);
      },
    }) as EtcdElectionProvider;
    const mutexDriver = new RevisionQueueDriver({
      connection,
      sessions,
      watches,
      namespace,
      ownsConnection: true,
    });
    const keys = new SessionKeys(connection, sessions, watches);
    const provider = createLockProvider(
      mutexDriver,
      { ...shared, election },
      {
        retryDefaults: retry,
        semaphoreDriver: new EtcdSemaphoreDriver({ connection, keys, namespace: semaphoreNamespace }),
        readWriteDriver: new EtcdReadWriteDriver({ connection, keys, namespace: readWriteNamespace }),
      },
    );
    const faults: EtcdFaults = {
      suspendKeepAlive: () => sessions.live?.suspendKeepAlive(),
      crash: () => {
        sessions.crash();
        connection.close();
      },
    };
    return Object.defineProperties(provider, {
      sessionLeaseId: { get: () => sessions.live?.hex, enumerable: true },
      faults: { value: faults, enumerable: true },
    }) as EtcdLockProvider;
  } catch (error) {
    connection.close();
    throw error;
  }
}

function validateHosts(value: unknown): string[] {
  const hosts = typeof value === 'string' ? [value] : value;
  const allowed = 'a host:port URL such as "http://127.0.0.1:2379", or a non-empty array of them';
  if (!Array.isArray(hosts) || hosts.length === 0) throw new InvalidArgumentError('hosts', value, allowed);
  for (const host of hosts) {
    if (typeof host !== 'string' || !HOST_PATTERN.test(host)) {
      throw new InvalidArgumentError('hosts', host, allowed);
    }
  }
  const secure = hosts.filter((host: string) => host.startsWith('https://')).length;
  if (secure !== 0 && secure !== hosts.length) {
    throw new InvalidArgumentError('hosts', value, 'all http:// or all https:// (etcd3 cannot mix them)');
  }
  return hosts as string[];
}

/** A namespace option; `others` are the namespaces of the other primitives, which it must not equal. */
function validateNamespace(field: string, value: unknown, others: Record<string, string> = {}): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(field, value, "a string (may be '')");
  for (const [other, taken] of Object.entries(others)) {
    if (value === taken) {
      throw new InvalidArgumentError(
        field,
        value,
        `a string other than ${other} ('${taken}'), so that each primitive's keys stay its own`,
      );
    }
  }
  return value;
}

function validateAuth(value: unknown): { username: string; password: string } | undefined {
  if (value === undefined) return undefined;
  const auth = value as { username?: unknown; password?: unknown } | null;
  if (
    typeof auth !== 'object' ||
    auth === null ||
    typeof auth.username !== 'string' ||
    auth.username === ''
  ) {
    throw new InvalidArgumentError('auth', value, '{ username: non-empty string, password: string }');
  }
  if (typeof auth.password !== 'string') {
    throw new InvalidArgumentError('auth.password', '(not shown)', 'a string');
  }
  return { username: auth.username, password: auth.password };
}

function validateTls(value: unknown): EtcdProviderOptions['tls'] {
  if (value === undefined) return undefined;
  const tls = value as Record<string, unknown> | null;
  const isBuffer = (field: string) => tls?.[field] === undefined || Buffer.isBuffer(tls[field]);
  if (
    typeof tls !== 'object' ||
    tls === null ||
    !Buffer.isBuffer(tls.rootCertificate) ||
    !isBuffer('privateKey') ||
    !isBuffer('certChain')
  ) {
    throw new InvalidArgumentError(
      'tls',
      '(not shown)',
      '{ rootCertificate: Buffer, privateKey?: Buffer, certChain?: Buffer }',
    );
  }
  return value as EtcdProviderOptions['tls'];
}
