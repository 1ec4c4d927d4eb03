import { type ConformanceOptions, type NetworkHooks, describeLockProvider } from '@dlock/conformance';
import { freePort } from '@dlock/testkit';
import type { DisconnectPolicy } from '../src/index.js';
import { primitiveResidue } from './primitive-support.js';
import { serverWatchCount, sleep, useStandaloneZooKeeper } from './support.js';

const ROOT = '/dlock-conformance';
const SESSION_TIMEOUT_MS = 2_000;
const zk = useStandaloneZooKeeper(ROOT, { sessionTimeoutMs: SESSION_TIMEOUT_MS });
const { providers } = zk;

/**
 * Providers behind the fault proxy: an 8 s session outlives the kit's long outage (twice the 1.5 s
 * connect timeout) under 'session-timeout', as the 10 s session outlives a 10 s outage's first half in
 * issue 11, so that case checks that a waiter keeps riding out an outage while its session lives.
 */
const NETWORK = { sessionTimeoutMs: 8_000, connectTimeoutMs: 1_500, callTimeoutMs: 1_500 };

function network(onDisconnect: DisconnectPolicy): NetworkHooks {
  return {
    connectTimeoutMs: NETWORK.connectTimeoutMs,
    connect: ({ retry } = {}) => zk.behindProxy({ ...NETWORK, onDisconnect, retry }),
  };
}

function options(onDisconnect: DisconnectPolicy): ConformanceOptions {
  return {
    ttlMs: 600,
    marginMs: 500,
    crash: async (provider) => providers.crash(provider),
    // The server expires a silent session sessionTimeout after it last heard from it, rounded up to its
    // next tick (200 ms); the next waiter is then woken by its predecessor watch.
    crashRecoveryMs: SESSION_TIMEOUT_MS + 400,
    // 'abort': the server expires the session at once (taken over with its id and password) while the
    // client is cut off, which its disconnect has already aborted. 'session-timeout': a real silence,
    // longer than the session: the client's own deadline aborts its leases first, as it would in a
    // pause. (Expiring it at the server instead would let others in while the client's deadline has
    // not passed — an overlap no real pause can produce.)
    lapse:
      onDisconnect === 'abort'
        ? async (provider) => {
            await providers.expire(provider, zk.server.connectString);
            await sleep(50);
          }
        : (provider) => providers.silence(provider, SESSION_TIMEOUT_MS + 600),
    forceRelease: (key) => zk.inspector.forceRelease(ROOT, key),
    // A semaphore's node (with `locks` and `leases` below it) or a read-write lock's node, and its children.
    residue: (key, kind) =>
      kind === 'lock' ? zk.inspector.residue(ROOT, key) : primitiveResidue(zk.inspector, ROOT, kind, key),
    // Deliberately not through the key encoder: a simple key must be the node name as given.
    heldAtRawKey: async (key) => (await zk.inspector.children(`${ROOT}/${key}`)).length > 0,
    unreachable: async () =>
      providers.open({ connectString: `127.0.0.1:${await freePort()}`, connectTimeoutMs: 1_000 }),
    connectTimeoutMs: 1_000,
    network: network(onDisconnect),
  };
}

// Both disconnect policies, the whole kit each. The default policy's report is written last, so the
// lab (which shows the newest report of a backend) shows the default.
describeLockProvider(
  'zookeeper-session-timeout',
  async () => providers.open({ onDisconnect: 'session-timeout' }),
  options('session-timeout'),
);
describeLockProvider('zookeeper', async () => providers.open(), {
  ...options('abort'),
  // Churn soak (issue 12 #6), under the default policy only (it is about leaks, not disconnects): the
  // watcher functions node-zookeeper-client holds and dlock's shared watches per session, and the
  // server's own watch count.
  soak: {
    client: (open) => {
      const sessions = open.flatMap((provider) => providers.driver(provider).liveSessions());
      let libraryWatchers = 0;
      let sharedWatches = 0;
      for (const session of sessions) {
        libraryWatchers += session.libraryWatchers();
        sharedWatches += session.watches.size;
      }
      return { 'library watchers': libraryWatchers, 'shared watches': sharedWatches };
    },
    server: async () => ({ 'server watches (wchs)': await serverWatchCount(zk.server) }),
  },
});
