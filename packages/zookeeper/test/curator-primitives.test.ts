import type { LockProvider } from '@dlock/core';
import { type CuratorPeer, curatorUnavailableReason, startCuratorPeer } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lockPath } from '../src/layout.js';
import { childrenOf, tree } from './primitive-support.js';
import { until, useStandaloneZooKeeper } from './support.js';

// Interoperability with Apache Curator's own InterProcessSemaphoreV2 and InterProcessReadWriteLock
// (Debian's libcurator-recipes-java, in its own JVM) on the same paths as dlock's providers.
const ROOT = '/dlock-curator-primitives';
const SEMAPHORES = '/interop/semaphores';
const RW_LOCKS = '/interop/rwlocks';
const zk = useStandaloneZooKeeper(ROOT, { semaphoreRoot: SEMAPHORES, readWriteRoot: RW_LOCKS });
const { providers } = zk;
let keyCounter = 0;
const freshKey = (label: string) => `${label}-${process.pid}-${keyCounter++}`;

const curatorMissing = curatorUnavailableReason();
if (curatorMissing !== undefined) {
  console.info(
    `[@dlock/zookeeper] Curator semaphore and read-write interoperability tests skipped: ${curatorMissing}`,
  );
}

/** The lease nodes under a semaphore's `leases`, as both clients count them. */
async function leaseCount(name: string): Promise<number> {
  return (await childrenOf(zk.inspector, `${lockPath(SEMAPHORES, name)}/leases`)).length;
}

/** A node's creation zxid: the fencing token dlock would report for it. */
async function czxid(path: string): Promise<bigint> {
  const { stat } = await zk.inspector.session.calls.getData(path);
  return stat.czxid.readBigInt64BE();
}

/** Resolves with what `work` resolved to, recording whether it settled before `flag()` turned true. */
function settledBefore<T>(work: Promise<T>, flag: () => boolean): Promise<{ value: T; early: boolean }> {
  return work.then((value) => ({ value, early: !flag() }));
}

describe.skipIf(curatorMissing !== undefined)('with a real Curator peer on the same paths', () => {
  let curator: CuratorPeer;
  let dlock: LockProvider;

  beforeAll(async () => {
    curator = await startCuratorPeer({ connectString: zk.server.connectString });
    // No fallback re-check within the tests' waits: only a pushed watch can wake a dlock waiter.
    dlock = providers.open({ fallbackRecheckMs: 600_000 });
  });
  afterAll(() => curator?.close());

  describe('a real Curator InterProcessSemaphoreV2 on the same path', () => {
    it('admits at most `limit` holders across both clients, and a release on either side admits a waiter on the other', async () => {
      const name = freshKey('shared');
      const path = lockPath(SEMAPHORES, name);
      const mine = dlock.semaphore(name, { limit: 2 });
      const theirs = await curator.semaphore(path, 2);
      const third = await curator.semaphore(path, 2);

      const dlockPermit = await mine.acquire({ waitMs: 5_000 });
      const [curatorLease] = (await theirs.acquire(1, 5_000)) ?? [];
      expect(curatorLease).toMatch(/^_c_[0-9a-f-]{36}-lease-\d{10}$/);
      expect(await leaseCount(name)).toBe(2);
      // Full for both clients: a third party is refused on either side.
      expect(await providers.open().semaphore(name, { limit: 2 }).tryAcquire()).toBeNull();
      expect(await third.acquire(1, 300)).toBeNull();
      expect(await leaseCount(name)).toBe(2);
      // dlock reports Curator's lease as a holder of one permit (its data is the client's IP address).
      const holders = await mine.holders();
      expect(holders).toHaveLength(2);
      expect(holders.map((holder) => holder.permits)).toEqual([1, 1]);
      expect(holders[0]).toMatchObject({ identity: dlockPermit.identity, token: dlockPermit.token });

      // A dlock release admits the Curator waiter.
      let released = false;
      const curatorWaiting = settledBefore(third.acquire(1, 20_000), () => released);
      await until(
        async () => (await childrenOf(zk.inspector, `${path}/locks`)).length === 1,
        5_000,
        'Curator waits',
      );
      released = true;
      await dlockPermit.release();
      const admitted = await curatorWaiting;
      expect(admitted.early).toBe(false);
      expect(admitted.value).toHaveLength(1);
      expect(await leaseCount(name)).toBe(2);

      // A Curator release admits the dlock waiter, pushed by the leases watch (no fallback re-check).
      released = false;
      const dlockWaiting = settledBefore(mine.acquire({ waitMs: 20_000 }), () => released);
      await until(
        async () => (await childrenOf(zk.inspector, `${path}/locks`)).length === 1,
        5_000,
        'dlock waits',
      );
      expect(await leaseCount(name)).toBe(3);
      released = true;
      await theirs.release(curatorLease as string);
      const { value: permit, early } = await dlockWaiting;
      expect(early).toBe(false);
      // Lease nodes are created only by the holder of the internal mutex: a later grant, a later zxid.
      expect(permit.token).toBeGreaterThan(await czxid(`${path}/leases/${admitted.value?.[0]}`));
      expect(permit.token).toBeGreaterThan(dlockPermit.token);
      expect(await leaseCount(name)).toBe(2);

      await permit.release();
      await third.release(admitted.value?.[0] as string);
      // Curator released last: its parents are containers, which the server removes in its own time.
      expect(await leaseCount(name)).toBe(0);
      expect(await childrenOf(zk.inspector, `${path}/locks`)).toEqual([]);
    });

    it("counts a dlock lease of several permits as that many of Curator's leases", async () => {
      const name = freshKey('multi');
      const path = lockPath(SEMAPHORES, name);
      const permit = await dlock.semaphore(name, { limit: 3 }).acquire({ permits: 2, waitMs: 5_000 });
      const leases = await childrenOf(zk.inspector, `${path}/leases`);
      expect(leases).toHaveLength(2);
      // One protected id for the lease's nodes: that is how dlock groups them into one holder.
      expect(new Set(leases.map((lease) => lease.slice(0, 39))).size).toBe(1);
      const theirs = await curator.semaphore(path, 3);
      expect(await theirs.participantNodes()).toHaveLength(2);
      expect(await theirs.acquire(2, 300)).toBeNull();
      const [single] = (await theirs.acquire(1, 5_000)) ?? [];
      expect(single).toBeDefined();
      expect(await dlock.semaphore(name, { limit: 3 }).tryAcquire()).toBeNull();
      await theirs.release(single as string);
      await permit.release();
    });

    it("hands a SIGKILLed Curator JVM's permit to a waiting dlock client once the server expires its session", async () => {
      const name = freshKey('curator-killed');
      const path = lockPath(SEMAPHORES, name);
      const victim = await startCuratorPeer({
        connectString: zk.server.connectString,
        sessionTimeoutMs: 2_000,
      });
      const theirs = await victim.semaphore(path, 1);
      const [lease] = (await theirs.acquire(1, 5_000)) ?? [];
      const curatorToken = await czxid(`${path}/leases/${lease}`);
      let killed = false;
      const waiting = settledBefore(
        dlock.semaphore(name, { limit: 1 }).acquire({ waitMs: 30_000 }),
        () => killed,
      );
      await until(async () => (await leaseCount(name)) === 2, 5_000, 'dlock waits on the leases');
      killed = true;
      await victim.kill();
      const { value: permit, early } = await waiting;
      expect(early).toBe(false);
      expect(permit.token).toBeGreaterThan(curatorToken);
      expect(await leaseCount(name)).toBe(1);
      await permit.release();
    });

    it("lets Curator take a crashed dlock client's permit once the server expires its session", async () => {
      const name = freshKey('dlock-crashed');
      const path = lockPath(SEMAPHORES, name);
      const doomed = providers.open({ sessionTimeoutMs: 2_000 });
      const permit = await doomed.semaphore(name, { limit: 1 }).acquire({ waitMs: 5_000 });
      const theirs = await curator.semaphore(path, 1);
      expect(await theirs.acquire(1, 200)).toBeNull();
      providers.crash(doomed);
      const [lease] = (await theirs.acquire(1, 30_000)) ?? [];
      expect(lease).toBeDefined();
      expect(await czxid(`${path}/leases/${lease}`)).toBeGreaterThan(permit.token);
      await theirs.release(lease as string);
    });

    it("stores dlock's limit with the semaphore; a Curator client trusts its own maxLeases (documented)", async () => {
      const name = freshKey('limits');
      const path = lockPath(SEMAPHORES, name);
      const permit = await dlock.semaphore(name, { limit: 1 }).acquire({ waitMs: 5_000 });
      expect((await zk.inspector.session.calls.getData(path)).data.toString()).toBe('1');
      // Curator reads no limit from ZooKeeper: with maxLeases 2 it takes a second permit of a limit-1 semaphore.
      const theirs = await curator.semaphore(path, 2);
      const [lease] = (await theirs.acquire(1, 5_000)) ?? [];
      expect(lease).toBeDefined();
      expect(await leaseCount(name)).toBe(2);
      await theirs.release(lease as string);
      await permit.release();
    });
  });

  describe('a real Curator InterProcessReadWriteLock on the same path', () => {
    it("dlock's write lock excludes Curator's readers and writers; its release admits a waiting Curator reader", async () => {
      const name = freshKey('dlock-writes');
      const path = lockPath(RW_LOCKS, name);
      const write = await dlock.readWriteLock(name).write.acquire({ waitMs: 5_000 });
      const theirs = await curator.readWriteLock(path);
      expect(await theirs.writeLock.acquire(300)).toBe(false);
      expect(await theirs.readLock.acquire(300)).toBe(false);
      let released = false;
      const reading = settledBefore(theirs.readLock.acquire(20_000), () => released);
      await until(
        async () => (await childrenOf(zk.inspector, path)).length === 2,
        5_000,
        'Curator reader queued',
      );
      released = true;
      await write.release();
      expect(await reading).toEqual({ value: true, early: false });
      // Readers of both clients hold together.
      const read = await dlock.readWriteLock(name).read.acquire({ waitMs: 5_000 });
      expect((await dlock.readWriteLock(name).holders()).map((holder) => holder.mode)).toEqual([
        'read',
        'read',
      ]);
      await read.release();
      await theirs.readLock.release();
      expect(await childrenOf(zk.inspector, path)).toEqual([]);
    });

    it("Curator's write lock excludes dlock's readers and writers; its release pushes the grant to a waiting dlock writer", async () => {
      const name = freshKey('curator-writes');
      const path = lockPath(RW_LOCKS, name);
      const theirs = await curator.readWriteLock(path);
      expect(await theirs.writeLock.acquire(5_000)).toBe(true);
      const [curatorNode] = (await theirs.writeLock.participantNodes()) as [string];
      expect(curatorNode).toMatch(/\/_c_[0-9a-f-]{36}-__WRIT__\d{10}$/);
      const curatorToken = await czxid(curatorNode);
      const lock = dlock.readWriteLock(name);
      expect(await lock.read.tryAcquire()).toBeNull();
      expect(await lock.write.tryAcquire()).toBeNull();
      expect((await lock.holders()).map((holder) => holder.mode)).toEqual(['write']);
      let released = false;
      const writing = settledBefore(lock.write.acquire({ waitMs: 20_000 }), () => released);
      await until(
        async () => (await childrenOf(zk.inspector, path)).length === 2,
        5_000,
        'dlock writer queued',
      );
      released = true;
      await theirs.writeLock.release();
      const { value: write, early } = await writing;
      expect(early).toBe(false);
      expect(write.token).toBeGreaterThan(curatorToken);
      expect(await theirs.readLock.acquire(300)).toBe(false);
      await write.release();
      expect(await tree(zk.inspector, path)).toEqual([]);
    });

    it('one queue across both clients: readers that arrive after a waiting writer wait behind it, whoever they are', async () => {
      const name = freshKey('fifo');
      const path = lockPath(RW_LOCKS, name);
      const [reader, writer] = [await curator.readWriteLock(path), await curator.readWriteLock(path)];
      const lock = dlock.readWriteLock(name);
      const firstRead = await lock.read.acquire({ waitMs: 5_000 });
      const order: string[] = [];
      // A Curator writer waits behind dlock's reader...
      const curatorWrite = writer.writeLock.acquire(20_000).then(async (acquired) => {
        order.push(acquired ? 'curator writer' : 'curator writer timed out');
        await writer.writeLock.release();
      });
      await until(
        async () => (await childrenOf(zk.inspector, path)).length === 2,
        5_000,
        'Curator writer queued',
      );
      // ...and readers of both clients that come later wait behind that writer.
      expect(await lock.read.tryAcquire()).toBeNull();
      expect(await reader.readLock.acquire(300)).toBe(false);
      const dlockRead = lock.read.acquire({ waitMs: 20_000 }).then(async (lease) => {
        order.push('dlock reader');
        await lease.release();
      });
      await until(
        async () => (await childrenOf(zk.inspector, path)).length === 3,
        5_000,
        'dlock reader queued',
      );
      const curatorRead = reader.readLock.acquire(20_000).then(async (acquired) => {
        order.push(acquired ? 'curator reader' : 'curator reader timed out');
        await reader.readLock.release();
      });
      await until(
        async () => (await childrenOf(zk.inspector, path)).length === 4,
        5_000,
        'Curator reader queued',
      );
      expect(order).toEqual([]);
      await firstRead.release();
      await Promise.all([curatorWrite, dlockRead, curatorRead]);
      expect(order[0]).toBe('curator writer');
      expect(order.slice(1).sort()).toEqual(['curator reader', 'dlock reader']);
      expect(await childrenOf(zk.inspector, path)).toEqual([]);
    });
  });
});
