import { getEventListeners } from 'node:events';
import { type HolderInfo, LeaderElector, type LockProvider, synchronized, withLock } from '@dlock/core';
import { CreateMode } from 'node-zookeeper-client';
import { describe, expect, it } from 'vitest';
import type { DisconnectPolicy } from '../src/index.js';
import { lockPath } from '../src/layout.js';
import { sleep, until, useStandaloneZooKeeper } from './support.js';

// Network faults from issues 11 and 12, injected for real by the testkit's TCP fault proxy between a
// provider and the server: resets, refused reconnects, outages.
const ROOT = '/dlock-faults';
const zk = useStandaloneZooKeeper(ROOT);
const { providers } = zk;
let keyCounter = 0;
const freshKey = (label: string) => `${label}-${process.pid}-${keyCounter++}`;
const POLICIES: DisconnectPolicy[] = ['abort', 'session-timeout'];

/** The czxid of a lock node: the fencing token of whoever holds (or will hold) that place in line. */
async function czxid(key: string, name: string): Promise<bigint> {
  const { stat } = await zk.inspector.session.calls.getData(`${lockPath(ROOT, key)}/${name}`);
  return stat.czxid.readBigInt64BE();
}

const lockFree = (key: string) => async () => (await zk.inspector.residue(ROOT, key)).length === 0;

describe.each(POLICIES)("onDisconnect '%s'", (onDisconnect) => {
  it("withLock and synchronized return fn's result when only the final release hits a 1 s blip, and the lock is free soon after (issue 11)", async () => {
    const { provider, faults } = await zk.behindProxy({
      onDisconnect,
      sessionTimeoutMs: 6_000,
      connectTimeoutMs: 1_500,
      callTimeoutMs: 1_500,
    });
    const releaseFailures: unknown[] = [];
    const key = freshKey('withlock-blip');
    const result = await withLock(
      provider,
      key,
      async () => {
        faults.outage(1_000);
        return 'work done under a valid lease';
      },
      { onReleaseError: (error) => releaseFailures.push(error) },
    );
    expect(result).toBe('work done under a valid lease');
    // The session's farewell ('abort') or the retried release ('session-timeout') removes the node
    // once the server is reachable again, a second after the blip began.
    await until(lockFree(key), 1_000 + 3_000, 'the lock free after the blip');

    const doubled = synchronized(
      provider,
      freshKey('synchronized-blip'),
      async (value: number) => {
        faults.outage(1_000);
        return value * 2;
      },
      { holdDurationMs: 10_000 },
    );
    expect(await doubled(21)).toBe(42);
    expect(releaseFailures).toEqual([]);
  });

  it('a waiting acquire rides out an outage longer than connectTimeoutMs while its session could live (issue 11)', async () => {
    // Issue 11: a 6 s outage with connectTimeoutMs 5 s and a 10 s session rejected a waitMs 60 s
    // waiter. Scaled down: a 2.5 s outage, 1 s connect timeout, 6 s session.
    const key = freshKey('long-outage');
    const held = await providers.open().acquire(key);
    const { provider, faults } = await zk.behindProxy({
      onDisconnect,
      sessionTimeoutMs: 6_000,
      connectTimeoutMs: 1_000,
      callTimeoutMs: 1_000,
    });
    const waiting = provider.acquire(key, { waitMs: 60_000 }).then(
      (lease) => ({ lease, error: undefined }),
      (error: unknown) => ({ lease: undefined, error }),
    );
    await until(async () => (await zk.inspector.queue(ROOT, key)).length === 2, 5_000, 'the waiter queued');
    const place = (await zk.inspector.queue(ROOT, key))[1] as string;
    const placeToken = await czxid(key, place);
    faults.outage(2_500);
    await sleep(2_500 + 500);
    await held.release();
    const { lease, error } = await waiting;
    expect(error).toBeUndefined();
    if (onDisconnect === 'session-timeout') {
      // The session outlived the outage, and with it the waiter's place in line.
      expect(lease?.token).toBe(placeToken);
    } else {
      // 'abort' gives the session up at the disconnect: the waiter queued again in a new one.
      expect(lease!.token > placeToken).toBe(true);
    }
    await lease!.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });

  it('watchHolder ends at an abort that arrives while the connection is refused, and leaves no listener on the signal (issue 12)', async () => {
    const key = freshKey('watch-abort');
    const held = await providers.open({ identity: 'holder' }).acquire(key);
    // A long connect timeout: a new session (after 'abort' retired the old one) would take until the
    // refusal ends; a read under 'session-timeout' waits for the reconnect.
    const { provider, faults } = await zk.behindProxy({
      onDisconnect,
      sessionTimeoutMs: 6_000,
      connectTimeoutMs: 5_000,
      callTimeoutMs: 5_000,
    });
    const controller = new AbortController();
    const seen: Array<HolderInfo | null> = [];
    let endedAt = Number.POSITIVE_INFINITY;
    const watching = (async () => {
      for await (const holder of provider.watchHolder!(key, controller.signal)) seen.push(holder);
      endedAt = performance.now();
    })();
    await until(() => seen.length === 1, 5_000, 'the holder reported');
    faults.outage(2_000);
    await sleep(500);
    const abortedAt = performance.now();
    controller.abort();
    await watching;
    // Before the fix the stream stayed open until the holder changed (8 s in the report, or forever).
    expect(endedAt - abortedAt).toBeLessThan(1_000);
    expect(seen).toEqual([{ identity: 'holder', token: held.token }]);
    expect(getEventListeners(controller.signal, 'abort')).toEqual([]);
    await held.release();
  });

  it('LeaderElector.run() resolves at an abort that arrives while the connection is refused, for the leader and a follower (issue 12)', async () => {
    const key = freshKey('elector-abort');
    const timeouts = { onDisconnect, sessionTimeoutMs: 6_000, connectTimeoutMs: 5_000, callTimeoutMs: 5_000 };
    const a = await zk.behindProxy(timeouts);
    const b = await zk.behindProxy(timeouts);
    const leader = new LeaderElector(a.provider, { key, identity: 'a', leaseDurationMs: 3_000 });
    const seenByB: string[] = [];
    const follower = new LeaderElector(b.provider, {
      key,
      identity: 'b',
      leaseDurationMs: 3_000,
      onNewLeader: (identity) => {
        seenByB.push(identity);
      },
    });
    const stopA = new AbortController();
    const stopB = new AbortController();
    const runA = leader.run(stopA.signal);
    await until(() => leader.isLeader(), 5_000, 'a leads');
    const runB = follower.run(stopB.signal);
    await until(() => seenByB.includes('a'), 5_000, 'b sees a lead');
    a.faults.outage(2_000);
    b.faults.outage(2_000);
    await sleep(500);
    const abortedAt = performance.now();
    stopA.abort();
    stopB.abort();
    const endedAfter = await Promise.all(
      [runA, runB].map((run) => run.then(() => performance.now() - abortedAt)),
    );
    for (const ms of endedAfter) expect(ms).toBeLessThan(1_000);
  });
});

describe("'session-timeout' keeps a waiter's place in line while the session lives", () => {
  it('a 1 s reset during the fallback re-checks neither rejects the waiter nor moves it; it holds when the holder releases at t = 4 s (issue 11)', async () => {
    const key = freshKey('keeps-place');
    const held = await providers.open().acquire(key);
    // The setting: a 10 s session, waitMs 8000; re-checks every 100 ms so the reset lands on one.
    const { provider, faults } = await zk.behindProxy({
      onDisconnect: 'session-timeout',
      sessionTimeoutMs: 10_000,
      fallbackRecheckMs: 100,
    });
    const startedAt = performance.now();
    const waiting = provider.acquire(key, { waitMs: 8_000 }).then(
      (lease) => ({ lease, error: undefined }),
      (error: unknown) => ({ lease: undefined, error }),
    );
    await until(async () => (await zk.inspector.queue(ROOT, key)).length === 2, 2_000, 'the waiter queued');
    const line = await zk.inspector.queue(ROOT, key);
    const placeToken = await czxid(key, line[1] as string);
    await sleep(500);
    faults.outage(1_000);
    await sleep(Math.max(0, 4_000 - (performance.now() - startedAt)));
    expect(await zk.inspector.queue(ROOT, key)).toEqual(line);
    await held.release();
    const { lease, error } = await waiting;
    expect(error).toBeUndefined();
    expect(lease?.token).toBe(placeToken);
    await lease!.release();
  });
});

describe('watchHolder and signals', () => {
  it('a signal that has already aborted ends the stream at once and gets no listener', async () => {
    const provider = providers.open();
    const signal = AbortSignal.abort();
    const seen: Array<HolderInfo | null> = [];
    for await (const holder of provider.watchHolder!(freshKey('pre-aborted'), signal)) seen.push(holder);
    expect(seen).toEqual([]);
    expect(getEventListeners(signal, 'abort')).toEqual([]);
  });
});

describe('children of a lock node that are not lock nodes', () => {
  it('are ignored: a foreign `.config` or `#meta` is never taken as the holder (issue 12)', async () => {
    const key = freshKey('foreign');
    const parent = lockPath(ROOT, key);
    const calls = zk.inspector.session.calls;
    await calls.create(parent, Buffer.alloc(0), CreateMode.PERSISTENT);
    for (const name of ['.config', '#meta', 'lock', 'lock-abc', '_c_not-a-uuid-lock-0000000001']) {
      await calls.create(`${parent}/${name}`, Buffer.from('not a contender'), CreateMode.PERSISTENT);
    }
    const provider: LockProvider = providers.open({ identity: 'me' });
    const other = providers.open({ identity: 'other' });
    expect(await provider.holder(key)).toBeNull();
    const lease = await provider.acquire(key, { waitMs: 2_000 });
    expect(await provider.holder(key)).toEqual({ identity: 'me', token: lease.token });
    expect(await other.tryAcquire(key)).toBeNull();
    const waiting = other.acquire(key, { waitMs: 5_000 });
    await sleep(100);
    await lease.release();
    const next = await waiting;
    expect(await other.holder(key)).toEqual({ identity: 'other', token: next.token });
    await next.release();
    expect(await provider.holder(key)).toBeNull();
    // The foreign children stay, and keep the parent: dlock deletes only what it created.
    expect((await zk.inspector.children(parent)).length).toBe(0);
    expect((await calls.getChildren(parent)).children.sort()).toEqual(
      ['#meta', '.config', '_c_not-a-uuid-lock-0000000001', 'lock', 'lock-abc'].sort(),
    );
  });

  it('a plain `lock-<seq>` node of the classic recipe is a contender like any other', async () => {
    const key = freshKey('classic');
    const parent = lockPath(ROOT, key);
    const classic = zk.inspector.session.calls;
    await classic.create(parent, Buffer.alloc(0), CreateMode.PERSISTENT);
    const node = await classic.create(
      `${parent}/lock-`,
      Buffer.from('classic'),
      CreateMode.EPHEMERAL_SEQUENTIAL,
    );
    const provider = providers.open();
    expect((await provider.holder(key))?.identity).toBe('classic');
    expect(await provider.tryAcquire(key)).toBeNull();
    const waiting = provider.acquire(key, { waitMs: 5_000 });
    await sleep(100);
    await classic.remove(node);
    const lease = await waiting;
    await lease.release();
    expect(await zk.inspector.residue(ROOT, key)).toEqual([]);
  });
});
