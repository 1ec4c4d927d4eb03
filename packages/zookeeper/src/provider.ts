import {
  InvalidArgumentError,
  type LockProvider,
  type ProviderOptions,
  type RetryPolicyOptions,
  createLockProvider,
  validateDuration,
} from '@dlock/core';
import { ACL, Id, Permission } from 'node-zookeeper-client';
import { ZooKeeperLockDriver, type ZooKeeperWatchEvent } from './driver.js';
import { isValidNodePath, primitiveRoots, validateRoot, validateSeparateRoots } from './layout.js';
import { ZooKeeperReadWriteDriver } from './read-write.js';
import { ZooKeeperSemaphoreDriver } from './semaphore.js';
import type { DigestAuth, DisconnectPolicy } from './session.js';

/** One ACL entry for the nodes dlock creates, e.g. `{ scheme: 'digest', id: 'app:<base64 sha1>', perms: 31 }`. */
export interface ZooKeeperAcl {
  readonly scheme: string;
  readonly id: string;
  /** Bit mask: READ 1, WRITE 2, CREATE 4, DELETE 8, ADMIN 16 (ALL 31). */
  readonly perms: number;
}

export interface ZooKeeperProviderOptions extends Omit<ProviderOptions, 'election'> {
  /** `host:port[,host:port…][/chroot]`, as every ZooKeeper client takes it. */
  connectString: string;
  /** The node every lock parent lives under. Default `/dlock`; created on first use. */
  root?: string;
  /**
   * The node semaphores live under (Curator's `InterProcessSemaphoreV2` layout: `<semaphoreRoot>/<name>`).
   * Default `<root>/#semaphores`; set it to the parent of a Curator semaphore's path to share it.
   */
  semaphoreRoot?: string;
  /**
   * The node read-write locks live under (Curator's `InterProcessReadWriteLock` layout:
   * `<readWriteRoot>/<name>`). Default `<root>/#rwlocks`; set it to the parent of a Curator lock's path
   * to share it.
   */
  readWriteRoot?: string;
  /** Requested session timeout; the server clamps it (by default to 2–20 ticks). Default 10 000 ms. */
  sessionTimeoutMs?: number;
  /** How long opening a session may take before BackendUnavailableError. Default 5 000 ms. */
  connectTimeoutMs?: number;
  /** How long any one request may wait for its reply (including while reconnecting). Default 5 000 ms. */
  callTimeoutMs?: number;
  /** What a disconnect means for held leases; see the README. Default 'abort' (Curator's standard policy). */
  onDisconnect?: DisconnectPolicy;
  /** Credentials added to every session, e.g. `[{ scheme: 'digest', auth: 'user:password' }]`. */
  auth?: DigestAuth[];
  /** ACL for the root, lock parents and lock nodes dlock creates. Default: open (world:anyone, all). */
  acl?: ZooKeeperAcl[];
  /** Called for every watch notification this provider receives (diagnostics, benchmarks). */
  onWatchEvent?: (event: ZooKeeperWatchEvent) => void;
  /**
   * How transient failures are retried (core's RetryPolicy), field by field over this backend's
   * defaults (`zooKeeperRetryDefaults`): a waiting acquire rides out an outage of up to
   * `outageMs` = sessionTimeoutMs + 2 × connectTimeoutMs by default.
   */
  retry?: RetryPolicyOptions;
}

/**
 * This backend's retry defaults, fitted to its timeouts. A waiting acquire keeps retrying while the
 * backend has been silent for less than `outageMs`: long enough to ride out a reconnect that takes a
 * whole session timeout (the session may then be lost and a new one opened, which itself may take
 * connectTimeoutMs, twice). `closeMs` leaves close() time to reconnect and send the last releases.
 */
export function zooKeeperRetryDefaults(timeouts: {
  sessionTimeoutMs: number;
  connectTimeoutMs: number;
  callTimeoutMs: number;
}): RetryPolicyOptions {
  return {
    outageMs: timeouts.sessionTimeoutMs + 2 * timeouts.connectTimeoutMs,
    closeMs: timeouts.connectTimeoutMs + timeouts.callTimeoutMs,
  };
}

const DISCONNECT_POLICIES: readonly DisconnectPolicy[] = ['abort', 'session-timeout'];
/** host[:port]: a name or IPv4 address; node-zookeeper-client splits on ':' so IPv6 literals cannot work. */
const SERVER_ADDRESS = /^[A-Za-z0-9_.-]+(:(\d{1,5}))?$/;

function validateConnectString(value: unknown): asserts value is string {
  const allowed =
    "'host:port[,host:port...][/chroot]' with ports 1-65535 and a valid chroot path, e.g. '127.0.0.1:2181'";
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidArgumentError('connectString', value, allowed);
  }
  const slash = value.indexOf('/');
  const servers = slash < 0 ? value : value.slice(0, slash);
  const chroot = slash < 0 ? undefined : value.slice(slash);
  const serversValid = servers.split(',').every((server) => {
    const match = SERVER_ADDRESS.exec(server);
    if (!match) return false;
    const port = match[2] === undefined ? 2181 : Number(match[2]);
    return port >= 1 && port <= 65_535;
  });
  if (!serversValid || (chroot !== undefined && !isValidNodePath(chroot))) {
    throw new InvalidArgumentError('connectString', value, allowed);
  }
}

function validateAuth(value: unknown): asserts value is DigestAuth[] {
  const valid =
    Array.isArray(value) &&
    value.every(
      (entry: unknown) =>
        typeof entry === 'object' &&
        entry !== null &&
        typeof (entry as DigestAuth).scheme === 'string' &&
        (entry as DigestAuth).scheme.length > 0 &&
        typeof (entry as DigestAuth).auth === 'string',
    );
  if (!valid) {
    throw new InvalidArgumentError(
      'auth',
      value,
      "an array of { scheme, auth } such as { scheme: 'digest', auth: 'user:password' }",
    );
  }
}

function toLibraryAcl(value: unknown): ACL[] | undefined {
  if (value === undefined) return undefined;
  const valid =
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((entry: unknown) => {
      const acl = entry as ZooKeeperAcl;
      return (
        typeof entry === 'object' &&
        entry !== null &&
        typeof acl.scheme === 'string' &&
        acl.scheme.length > 0 &&
        typeof acl.id === 'string' &&
        Number.isInteger(acl.perms) &&
        acl.perms >= 1 &&
        acl.perms <= 31
      );
    });
  if (!valid) {
    throw new InvalidArgumentError(
      'acl',
      value,
      'a non-empty array of { scheme, id, perms } with perms a bit mask from 1 to 31',
    );
  }
  return (value as ZooKeeperAcl[]).map((acl) => new ACL(acl.perms, new Id(acl.scheme, acl.id)));
}

/** @internal The provider and its driver (tests reach the driver's sessions to crash or expire them). */
export function openZooKeeperProvider(options: ZooKeeperProviderOptions): {
  provider: LockProvider;
  driver: ZooKeeperLockDriver;
} {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object with at least connectString');
  }
  const {
    connectString,
    root = '/dlock',
    semaphoreRoot = primitiveRoots(root).semaphores,
    readWriteRoot = primitiveRoots(root).readWrite,
    sessionTimeoutMs = 10_000,
    connectTimeoutMs = 5_000,
    callTimeoutMs = 5_000,
    onDisconnect = 'abort',
    auth = [],
    acl,
    onWatchEvent,
    ...providerOptions
  } = options;
  validateConnectString(connectString);
  validateRoot(root);
  validateRoot(semaphoreRoot, 'semaphoreRoot');
  validateRoot(readWriteRoot, 'readWriteRoot');
  validateSeparateRoots({ root, semaphoreRoot, readWriteRoot });
  validateDuration('sessionTimeoutMs', sessionTimeoutMs, 100);
  validateDuration('connectTimeoutMs', connectTimeoutMs, 1);
  validateDuration('callTimeoutMs', callTimeoutMs, 1);
  if (!DISCONNECT_POLICIES.includes(onDisconnect)) {
    throw new InvalidArgumentError('onDisconnect', onDisconnect, "'abort' or 'session-timeout'");
  }
  validateAuth(auth);
  const libraryAcl = toLibraryAcl(acl) ?? [new ACL(Permission.ALL, new Id('world', 'anyone'))];
  if (onWatchEvent !== undefined && typeof onWatchEvent !== 'function') {
    throw new InvalidArgumentError('onWatchEvent', onWatchEvent, 'a function');
  }
  const driver = new ZooKeeperLockDriver({
    root,
    session: {
      connectString,
      sessionTimeoutMs,
      connectTimeoutMs,
      callTimeoutMs,
      onDisconnect,
      auth,
      acl: libraryAcl,
    },
    onWatchEvent,
  });
  // One session per provider, the lock driver's: a crash or an expiry hits every primitive at once.
  const shared = { address: driver.address, session: () => driver.session(), onWatchEvent };
  const retryDefaults = zooKeeperRetryDefaults({ sessionTimeoutMs, connectTimeoutMs, callTimeoutMs });
  const parts = {
    semaphoreDriver: new ZooKeeperSemaphoreDriver({ ...shared, root: semaphoreRoot }),
    readWriteDriver: new ZooKeeperReadWriteDriver({ ...shared, root: readWriteRoot }),
    retryDefaults,
  };
  return { provider: createLockProvider(driver, providerOptions, parts), driver };
}

/**
 * A LockProvider on ZooKeeper: ephemeral sequential nodes under `<root>/<key>`, the lowest holds,
 * each waiter watches only its predecessor, fencing tokens are the lock node's czxid. Sessions open
 * lazily on the first call and are replaced transparently after an expiry.
 */
export function createZooKeeperProvider(options: ZooKeeperProviderOptions): LockProvider {
  return openZooKeeperProvider(options).provider;
}
