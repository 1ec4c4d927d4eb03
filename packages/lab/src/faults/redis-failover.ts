import { startRedis } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { nextLine } from './contenders.js';
import {
  type FaultScenario,
  type ScenarioContext,
  crossProcess,
  describeForgottenLock,
  letOthersIn,
} from './scenario.js';

const SYNC_TIMEOUT_MS = 10_000;
/** The holder's pause between reading and writing; the failover and the second grant fit inside it. */
const HOLDER_WORK_MS = 600;

async function waitUntilReplicating(replica: Redis, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + SYNC_TIMEOUT_MS;
  while (!/master_link_status:up/.test(await replica.info('replication'))) {
    signal.throwIfAborted();
    if (performance.now() > deadline)
      throw new Error(`the replica did not sync within ${SYNC_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function adminConnection(url: string, context: ScenarioContext): Promise<Redis> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  context.onCleanup(async () => client.disconnect());
  await client.connect();
  return client;
}

/**
 * Single Redis with an asynchronous replica. The replica is cut off before the holder acquires, so the
 * lock never reaches it; the master dies; the replica is promoted (REPLICAOF NO ONE) and new clients go
 * to it — exactly what a failover does to a write that had not replicated yet.
 */
export const redisFailover: FaultScenario = {
  id: 'redis-failover',
  title: 'Single Redis: failover to a replica that had not received the lock',
  appliesTo: (backend) => crossProcess(backend) && backend.placement === 'redis' && backend.serverCount === 1,
  claim: () => 'unsafe',

  async run(context) {
    const primary = await context.startServers('redis', 1);
    const [master] = primary.members;
    if (!master) throw new Error('no master started');
    context.step('starting a replica');
    const replica = await startRedis({ replicaOf: { host: master.host, port: master.port } });
    context.onCleanup(() => replica.stop());
    const admin = await adminConnection(replica.url, context);
    const primaryAdmin = await adminConnection(primary.endpoints[0] as string, context);
    await waitUntilReplicating(admin, context.signal);
    const holder = await context.spawn(primary.endpoints, {
      ttlMs: 15_000,
      writesPerHold: 20,
      workMs: HOLDER_WORK_MS,
      maxHolds: 1,
    });
    // Other instances, configured with the replica's address for when it is promoted.
    const others = await Promise.all([context.spawn([replica.url]), context.spawn([replica.url])]);
    context.step('replica cut off; holder acquires on the master');
    // Freezing the replica is not enough: the master's writes would wait in the frozen replica's socket
    // buffer and be applied on resume. Dropping its link while it is frozen means it never sees them.
    replica.pause();
    await primaryAdmin.client('KILL', 'TYPE', 'replica');
    const reading = nextLine([holder], /^read /, 15_000, context.signal);
    holder.go();
    // Fail over while the holder is between reading and writing: it checked its lease just before.
    await reading;
    context.step('master killed; promoting the replica');
    await master.kill();
    replica.resume();
    await admin.replicaof('NO', 'ONE');
    await letOthersIn(context, holder, others);
  },

  explain(outcome) {
    const setup =
      'The replica was cut off just before the holder acquired (replication lag, made certain), so the lock never reached it; then the master was killed and the replica promoted with REPLICAOF NO ONE, as a failover does.';
    return `${setup} ${describeForgottenLock(outcome)} Asynchronous replication means a single-Redis lock promises no mutual exclusion across a failover.`;
  },
};
