import { type HolderInfo, type Lease, LockLostError, type LockProvider } from '@dlock/core';
import { CreateMode } from 'node-zookeeper-client';
import { describe, expect, it } from 'vitest';
import type { ZooKeeperWatchEvent } from '../src/index.js';
import { lockPath } from '../src/layout.js';
import { dropConnectionOnCreate, pauseServer, sleep, until, useStandaloneZooKeeper } from './support.js';

const ROOT = '/dlock-recipe';
const zk = useStandaloneZooKeeper(ROOT);
const { providers } = zk;
let keyCounter = 0;
const freshKey = (label: string) => `${label}-${process.pid}-${keyCounter++}`;

describe('the queue', () => {
  it('wakes exactly one waiter per release: each of 20 waiters watches only its predecessor', async () => {
    const key = freshKey('herd');
    const events: Array<ZooKeeperWatchEvent & { waiter: number }> = [];
    const holder = providers.open();
    const first = await holder.acquire(key);
    const waiters = Array.from({ length: 20 }, (_, waiter) =>
      providers.open({ onWatchEvent: (event) => events.push({ ...event, waiter }) }),
    );
    const order: number[] = [];
    const done: Promise<void>[] = [];
    for (const [index, waiter] of waiters.entries()) {
      done.push(
        waiter.acquire(key, { waitMs: 30_000 }).then(async (lease) => {
          order.push(index);
          await lease.release();
        }),
      );
      await until(
        async () => (await zk.inspector.queue(ROOT, key)).length === index + 2,
        5_000,
        'waiter queued',
      );
    }
    const queue = (await zk.inspector.queue(ROOT, key)).map((name) => `${lockPath(ROOT, key)}/${name}`);
    await first.release();
    await Promise.all(done);

    expect(order).toEqual(waiters.map((_, index) => index));
    const predecessorEvents = events.filter((event) => event.purpose === 'predecessor');
    // 20 releases (the first holder's and 19 waiters'), each noticed by exactly one waiter: the next one.
    expect(predecessorEvents.map((event) => [event.waiter, event.path, event.type])).toEqual(
      waiters.map((_, index) => [index, queue[index], 'deleted']),
    );
    expect(events.filter((event) => event.purpose !== 'predecessor' && event.purpose !== 'own-node')).toEqual(
      [],
    );
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it("names nodes as Curator's protected mode does, under <root>/<key>, with the identity as data", async () => {
    const key = freshKey('layout');
    const provider = providers.open({ identity: 'worker-7@host-a' });
    const lease = await provider.acquire(key);
    const [name, ...others] = await zk.inspector.queue(ROOT, key);
    expect(others).toEqual([]);
    expect(name).toMatch(/^_c_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-lock-\d{10}$/);
    const { data, stat } = await zk.inspector.session.calls.getData(`${ROOT}/${key}/${name}`);
    expect(data.toString()).toBe('worker-7@host-a');
    expect(stat.czxid.readBigInt64BE()).toBe(lease.token);
    expect(stat.ephemeralOwner.readBigUInt64BE()).not.toBe(0n);
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });
});

describe('protected-mode recovery', () => {
  /** The key's only lock node is the lease's (no duplicate, no ghost); once released nothing is left. */
  const expectSoleNodeThenRelease = async (key: string, lease: Lease) => {
    const queue = await zk.inspector.queue(ROOT, key);
    expect(queue).toHaveLength(1);
    const { stat } = await zk.inspector.session.calls.getData(`${lockPath(ROOT, key)}/${queue[0]}`);
    expect(stat.czxid.readBigInt64BE()).toBe(lease.token);
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  };

  /** A provider with its session open and calls that give up after 300 ms; then the server is paused. */
  const openThenPauseServer = async (key: string) => {
    const provider = providers.open({
      onDisconnect: 'session-timeout',
      sessionTimeoutMs: 8_000,
      callTimeoutMs: 300,
    });
    await provider.holder(key);
    await pauseServer(zk.server);
    return provider;
  };

  it('finds its node by the protected name after the connection drops during create: no duplicate, no ghost', async () => {
    const key = freshKey('lost-reply');
    const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 4_000 });
    const dropped = await dropConnectionOnCreate(providers, provider, '-lock-');
    const [session] = providers.driver(provider).liveSessions();
    const lease = await provider.acquire(key, { waitMs: 10_000 });
    expect(dropped()).toBe(true);
    expect(providers.driver(provider).liveSessions()).toEqual([session]);
    await expectSoleNodeThenRelease(key, lease);
  });

  it('a waiting acquire adopts the node whose create was answered only after a server pause: one node, no ghost', async () => {
    const key = freshKey('no-reply-wait');
    const provider = await openThenPauseServer(key);
    let lease: Lease;
    try {
      const acquiring = provider.acquire(key, { waitMs: 10_000 });
      // Several calls time out meanwhile: the create's outcome is unknown, and the lookups fail too.
      await sleep(1_000);
      zk.server.resume();
      lease = await acquiring;
    } finally {
      zk.server.resume();
    }
    await expectSoleNodeThenRelease(key, lease);
  });

  it('a tryAcquire whose create got no reply rejects, and its node is deleted soon after the server answers again', async () => {
    const key = freshKey('no-reply-try');
    const provider = await openThenPauseServer(key);
    let outcome: unknown;
    try {
      outcome = await provider.tryAcquire(key).catch((error: unknown) => error);
    } finally {
      zk.server.resume();
    }
    const resumedAt = performance.now();
    expect(outcome).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    // The create was applied after the pause; core's clean-up finds it by its protected name.
    await until(
      async () => (await zk.inspector.residue(ROOT, key)).length === 0,
      3_000,
      'the orphan deleted',
    );
    expect(performance.now() - resumedAt).toBeLessThan(3_000);
    const lease = await provider.acquire(key, { waitMs: 5_000 });
    await lease.release();
  });
});

describe('session loss', () => {
  const holdFor = async (provider: LockProvider, key: string) => {
    const lease = await provider.acquire(key);
    const [session] = providers.driver(provider).liveSessions();
    if (!session) throw new Error('no session');
    return { lease, session };
  };

  it("'abort' (default): a disconnect aborts the lease at once, and the next acquire gets a fresh session", async () => {
    const key = freshKey('abort');
    const provider = providers.open();
    const other = providers.open();
    const { lease, session } = await holdFor(provider, key);
    const droppedAt = performance.now();
    session.dropConnection();
    await until(() => lease.signal.aborted, 200, 'the lease aborted');
    expect(performance.now() - droppedAt).toBeLessThan(200);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect((lease.signal.reason as Error).message).toMatch(/disconnected/);
    await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
    // The old session reconnects only to close itself, which deletes its node well before it would expire.
    const next = await other.acquire(key, { waitMs: 1_500 });
    await next.release();
    const again = await provider.acquire(key, { waitMs: 1_000 });
    expect(providers.driver(provider).liveSessions()).not.toContain(session);
    await again.release();
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it("'session-timeout': a short disconnect costs nothing, the lease survives the reconnect", async () => {
    const key = freshKey('blip');
    const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 4_000 });
    const { lease, session } = await holdFor(provider, key);
    session.dropConnection();
    await sleep(300);
    expect(lease.signal.aborted).toBe(false);
    await lease.extend();
    expect(providers.driver(provider).liveSessions()).toEqual([session]);
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it("'session-timeout': a disconnect that lasts aborts the lease before the server can expire the session", async () => {
    const key = freshKey('long-outage');
    const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 2_000 });
    const other = providers.open();
    const { lease, session } = await holdFor(provider, key);
    let lostAt = Number.POSITIVE_INFINITY;
    lease.signal.addEventListener('abort', () => {
      lostAt = performance.now();
    });
    const droppedAt = performance.now();
    session.dropConnection({ holdReconnect: true });
    const next = await other.acquire(key, { waitMs: 10_000 });
    const grantedAt = performance.now();
    // The guarantee: the lease aborts before anyone else can be granted. Its timer is armed to fire
    // within the session timeout; a busy machine's late timers get a generous allowance on top.
    expect(lostAt).toBeLessThan(grantedAt);
    expect(lostAt - droppedAt).toBeLessThan(session.timeoutMs + 5_000);
    expect(next.token > lease.token).toBe(true);
    session.resumeReconnecting();
    await next.release();
  });

  it('learns of an expiry on reconnect, and later acquires are served by a fresh session', async () => {
    const key = freshKey('expired');
    const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 4_000 });
    const { lease, session } = await holdFor(provider, key);
    await providers.expire(provider, zk.server.connectString);
    await until(() => lease.signal.aborted, 2_000, 'the lease aborted');
    expect((lease.signal.reason as Error).message).toMatch(/expired/);
    const next = await provider.acquire(key, { waitMs: 2_000 });
    expect(next.token > lease.token).toBe(true);
    expect(providers.driver(provider).liveSessions()).not.toContain(session);
    await next.release();
    await lease.release();
  });

  it('aborts the lease when an operator deletes its node', async () => {
    const key = freshKey('deleted');
    const { lease } = await holdFor(providers.open(), key);
    await zk.inspector.forceRelease(ROOT, key);
    await until(() => lease.signal.aborted, 1_000, 'the lease aborted');
    expect((lease.signal.reason as Error).message).toMatch(/was deleted/);
    await lease.release();
  });
});

describe("the node's first read", () => {
  // Issue 13: on a free key the read of the node (its czxid, the token, and the watch that tells a
  // holder its node was deleted) goes out with the create, under the name the node gets as its new
  // parent's first child; when the parent is already there (here kept by a foreign child), the node
  // gets another sequence and is read once its create has answered. Both ways give the same lease.
  for (const parentThere of [false, true]) {
    it(parentThere
      ? 'reads the node after its create when the parent already has children'
      : 'reads the node with its create on a free key', async () => {
      const key = freshKey(parentThere ? 'first-read-parent-there' : 'first-read-free');
      const parent = lockPath(ROOT, key);
      const { calls } = zk.inspector.session;
      if (parentThere) {
        await calls.create(parent, Buffer.alloc(0), CreateMode.PERSISTENT);
        await calls.create(`${parent}/.config`, Buffer.alloc(0), CreateMode.PERSISTENT);
      }
      const events: ZooKeeperWatchEvent[] = [];
      const provider = providers.open({ onWatchEvent: (event) => events.push(event) });
      const lease = await provider.acquire(key);
      const [name] = await zk.inspector.queue(ROOT, key);
      expect(name?.endsWith('-lock-0000000000')).toBe(!parentThere);
      const { stat } = await calls.getData(`${parent}/${name}`);
      expect(stat.czxid.readBigInt64BE()).toBe(lease.token);
      await lease.release();
      // The watch was set: the release's own deletion is reported, and is no loss.
      await until(() => events.some((event) => event.purpose === 'own-node'), 1_000, 'own-node event');
      expect(events).toEqual([{ path: `${parent}/${name}`, type: 'deleted', purpose: 'own-node' }]);
      expect(lease.signal.aborted).toBe(false);

      const next = await provider.acquire(key);
      await zk.inspector.forceRelease(ROOT, key);
      await until(() => next.signal.aborted, 1_000, 'the lease aborted');
      expect((next.signal.reason as Error).message).toMatch(/was deleted/);
      await next.release();
      if (parentThere) {
        await calls.remove(`${parent}/.config`);
        await calls.remove(parent);
      }
      expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
    });
  }
});

describe('watchHolder', () => {
  it('pushes the holder, each hand-off and the release', async () => {
    const key = freshKey('watch');
    const watcher = providers.open();
    const a = providers.open({ identity: 'a' });
    const b = providers.open({ identity: 'b' });
    const controller = new AbortController();
    const seen: Array<HolderInfo | null> = [];
    const watching = (async () => {
      for await (const holder of watcher.watchHolder!(key, controller.signal)) seen.push(holder);
    })();
    await until(() => seen.length === 1, 2_000, 'the first report');
    const leaseA: Lease = await a.acquire(key);
    await until(() => seen.length === 2, 2_000, 'a as holder');
    const waitingB = b.acquire(key, { waitMs: 5_000 });
    // b opens its session first: a release before b is in line would report the key free in between.
    await until(async () => (await zk.inspector.queue(ROOT, key)).length === 2, 5_000, 'b in line');
    await leaseA.release();
    const leaseB = await waitingB;
    await until(() => seen.length === 3, 2_000, 'b as holder');
    await leaseB.release();
    await until(() => seen.length === 4, 2_000, 'the release');
    controller.abort();
    await watching;
    expect(seen).toEqual([
      null,
      { identity: 'a', token: leaseA.token },
      { identity: 'b', token: leaseB.token },
      null,
    ]);
  });
});
