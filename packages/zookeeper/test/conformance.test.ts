import { describeLockProvider } from '@dlock/conformance';
import { freePort } from '@dlock/testkit';
import { primitiveResidue } from './primitive-support.js';
import { sleep, useStandaloneZooKeeper } from './support.js';

const ROOT = '/dlock-conformance';
const SESSION_TIMEOUT_MS = 2_000;
const zk = useStandaloneZooKeeper(ROOT, { sessionTimeoutMs: SESSION_TIMEOUT_MS });
const { providers } = zk;

describeLockProvider('zookeeper', async () => providers.open(), {
  ttlMs: 600,
  marginMs: 500,
  crash: async (provider) => providers.crash(provider),
  // The server expires a silent session sessionTimeout after it last heard from it, rounded up to its
  // next tick (200 ms); the next waiter is then woken by its predecessor watch.
  crashRecoveryMs: SESSION_TIMEOUT_MS + 400,
  lapse: async (provider) => {
    await providers.expire(provider, zk.server.connectString);
    await sleep(50);
  },
  forceRelease: (key) => zk.inspector.forceRelease(ROOT, key),
  // A semaphore's node (with `locks` and `leases` below it) or a read-write lock's node, and its children.
  residue: (key, kind) =>
    kind === 'lock' ? zk.inspector.residue(ROOT, key) : primitiveResidue(zk.inspector, ROOT, kind, key),
  // Deliberately not through the key encoder: a simple key must be the node name as given.
  heldAtRawKey: async (key) => (await zk.inspector.children(`${ROOT}/${key}`)).length > 0,
  unreachable: async () =>
    providers.open({ connectString: `127.0.0.1:${await freePort()}`, connectTimeoutMs: 1_000 }),
  connectTimeoutMs: 1_000,
});
