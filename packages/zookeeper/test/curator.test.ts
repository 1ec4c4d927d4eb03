import { type CuratorPeer, curatorUnavailableReason, startCuratorPeer } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockPath } from '../src/layout.js';
import { until, useStandaloneZooKeeper } from './support.js';

// Interoperability with the real thing: Apache Curator's InterProcessMutex (Debian's
// libcurator-recipes-java) in its own JVM, on the same lock path as dlock's providers.
const ROOT = '/dlock-curator';
const zk = useStandaloneZooKeeper(ROOT);
const { providers } = zk;
let keyCounter = 0;
const freshKey = (label: string) => `${label}-${process.pid}-${keyCounter++}`;

const curatorMissing = curatorUnavailableReason();
if (curatorMissing !== undefined) {
  console.info(`[@dlock/zookeeper] Curator interoperability tests skipped: ${curatorMissing}`);
}

/** A lock node's creation zxid: the fencing token dlock would report for it. */
async function czxid(path: string): Promise<bigint> {
  const { stat } = await zk.inspector.session.calls.getData(path);
  return stat.czxid.readBigInt64BE();
}

describe.skipIf(curatorMissing !== undefined)('a real Curator InterProcessMutex on the same path', () => {
  let curator: CuratorPeer;

  beforeAll(async () => {
    curator = await startCuratorPeer({ connectString: zk.server.connectString });
  });
  afterAll(() => curator?.close());

  it('is refused while dlock holds the lock, and granted when dlock releases', async () => {
    const key = freshKey('dlock-holds');
    const parent = lockPath(ROOT, key);
    const lease = await providers.open().acquire(key);
    const mutex = await curator.mutex(parent);

    expect(await mutex.acquire(300)).toBe(false);
    const [dlockNode] = await zk.inspector.queue(ROOT, key);
    // Curator sees dlock's node as the holder: the only participant once its own timed-out node is gone.
    expect(await mutex.participantNodes()).toEqual([`${parent}/${dlockNode}`]);

    const waiting = mutex.acquire(20_000);
    await until(async () => (await zk.inspector.queue(ROOT, key)).length === 2, 5_000, 'Curator queued');
    await lease.release();
    expect(await waiting).toBe(true);
    const [curatorNode] = await mutex.participantNodes();
    expect(await czxid(curatorNode as string)).toBeGreaterThan(lease.token);
    await mutex.release();
    expect(await zk.inspector.queue(ROOT, key)).toEqual([]);
  });

  it('refuses dlock while Curator holds, reports Curator as the holder, and pushes the release to a waiting dlock acquire', async () => {
    const key = freshKey('curator-holds');
    const parent = lockPath(ROOT, key);
    const mutex = await curator.mutex(parent);
    expect(await mutex.acquire(5_000)).toBe(true);
    const [curatorNode] = (await mutex.participantNodes()) as [string];
    const curatorToken = await czxid(curatorNode);
    const { data } = await zk.inspector.session.calls.getData(curatorNode);
    // No fallback re-check within the wait: only the predecessor watch firing on Curator's delete can wake it.
    const provider = providers.open({ fallbackRecheckMs: 600_000 });

    expect(await provider.tryAcquire(key)).toBeNull();
    // Curator's node data is its client's IP address; dlock shows it as the identity.
    expect(await provider.holder(key)).toEqual({ identity: data.toString(), token: curatorToken });

    const waiting = provider.acquire(key, { waitMs: 30_000 });
    await until(async () => (await mutex.participantNodes()).length === 2, 5_000, 'dlock queued');
    // Curator orders dlock's node second, as dlock does: both sort by the sequence after "lock-".
    const queue = await zk.inspector.queue(ROOT, key);
    expect(await mutex.participantNodes()).toEqual(queue.map((name) => `${parent}/${name}`));
    expect(`${parent}/${queue[0]}`).toBe(curatorNode);

    await mutex.release();
    const lease = await waiting;
    expect(lease.token).toBeGreaterThan(curatorToken);
    expect(await mutex.isAcquiredInThisProcess()).toBe(false);
    expect(await mutex.acquire(300)).toBe(false);
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it('serves dlock and Curator contenders in one FIFO queue, in arrival order', async () => {
    const key = freshKey('fifo');
    const parent = lockPath(ROOT, key);
    const [first, ...curatorMutexes] = await Promise.all([1, 2, 3].map(() => curator.mutex(parent)));
    expect(await first?.acquire(5_000)).toBe(true);
    const order: string[] = [];
    const contenders = ['dlock-1', 'curator-1', 'dlock-2', 'curator-2', 'dlock-3'];
    const done: Promise<void>[] = [];
    for (const [index, name] of contenders.entries()) {
      if (name.startsWith('dlock')) {
        const provider = providers.open({ identity: name });
        done.push(
          provider.acquire(key, { waitMs: 30_000 }).then(async (lease) => {
            order.push(name);
            await lease.release();
          }),
        );
      } else {
        const mutex = curatorMutexes.shift();
        if (mutex === undefined) throw new Error('not enough Curator lock objects');
        done.push(
          mutex.acquire(30_000).then(async (acquired) => {
            order.push(acquired ? name : `${name} timed out`);
            if (acquired) await mutex.release();
          }),
        );
      }
      // Arrival order is node creation order: wait for each contender's node before the next arrives.
      await until(
        async () => (await zk.inspector.queue(ROOT, key)).length === index + 2,
        5_000,
        `${name} queued`,
      );
    }
    // Both clients see the same queue.
    const queue = await zk.inspector.queue(ROOT, key);
    expect(await first?.participantNodes()).toEqual(queue.map((name) => `${parent}/${name}`));

    await first?.release();
    await Promise.all(done);
    expect(order).toEqual(contenders);
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it("lets dlock take a killed Curator JVM's lock once the server expires its session", async () => {
    const key = freshKey('curator-killed');
    const victim = await startCuratorPeer({
      connectString: zk.server.connectString,
      sessionTimeoutMs: 2_000,
    });
    const mutex = await victim.mutex(lockPath(ROOT, key));
    expect(await mutex.acquire(5_000)).toBe(true);
    const [curatorNode] = (await mutex.participantNodes()) as [string];
    const curatorToken = await czxid(curatorNode);
    const provider = providers.open();
    let killSent = false;
    let grantedBeforeKill = false;
    const waiting = provider.acquire(key, { waitMs: 30_000 }).then((lease) => {
      grantedBeforeKill = !killSent;
      return lease;
    });
    await until(async () => (await zk.inspector.queue(ROOT, key)).length === 2, 5_000, 'dlock queued');

    killSent = true;
    await victim.kill();
    const lease = await waiting;

    expect(grantedBeforeKill).toBe(false);
    expect(lease.token).toBeGreaterThan(curatorToken);
    const queue = await zk.inspector.queue(ROOT, key);
    expect(queue.map((name) => `${lockPath(ROOT, key)}/${name}`)).not.toContain(curatorNode);
    expect(queue).toHaveLength(1);
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it("lets Curator take a crashed dlock client's lock once the server expires its session", async () => {
    const key = freshKey('dlock-crashed');
    const provider = providers.open({ sessionTimeoutMs: 2_000 });
    const lease = await provider.acquire(key);
    const mutex = await curator.mutex(lockPath(ROOT, key));
    expect(await mutex.acquire(200)).toBe(false);

    providers.crash(provider);
    expect(await mutex.acquire(30_000)).toBe(true);

    const [curatorNode] = (await mutex.participantNodes()) as [string];
    expect(await czxid(curatorNode)).toBeGreaterThan(lease.token);
    await mutex.release();
  });
});
