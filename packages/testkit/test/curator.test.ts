import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMPILE_CACHE_DIR } from '../src/curator.js';
import { fourLetterWord } from '../src/four-letter-words.js';
import {
  type CuratorPeer,
  CuratorPeerError,
  CuratorPeerExitedError,
  ServerStartError,
  type ZooKeeperServer,
  compileCuratorPeer,
  curatorUnavailableReason,
  freePort,
  startCuratorPeer,
  startNodeProcess,
  startZooKeeper,
  stopAll,
} from '../src/index.js';
import { pollUntil } from '../src/wait.js';
import { isGone } from './probes.js';

const curatorMissing = curatorUnavailableReason();
if (curatorMissing !== undefined) console.info(`[testkit] Curator peer tests skipped: ${curatorMissing}`);

afterAll(stopAll);

/** Sessions of the server's open connections, by id as `cons` prints them (`sid=0x…`). */
async function serverSessions(server: ZooKeeperServer): Promise<string[]> {
  const cons = await fourLetterWord(server.port, 'cons');
  return [...cons.matchAll(/sid=(0x[0-9a-f]+)/g)].map((match) => match[1] as string);
}

/** Calls `check` until it returns true, every 20 ms, for at most `timeoutMs`. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(curatorMissing !== undefined)('compileCuratorPeer', () => {
  it('compiles once into the shared cache, removing what a compiler that died left behind', async () => {
    const deadCompiler = spawnSync(process.execPath, ['-e', '']).pid;
    const abandoned = join(COMPILE_CACHE_DIR, `staging-${deadCompiler}-abc123`);
    mkdirSync(abandoned, { recursive: true });

    const classesDir = await compileCuratorPeer();

    expect(existsSync(join(classesDir, 'CuratorPeer.class'))).toBe(true);
    expect(existsSync(abandoned)).toBe(false);
    expect(await compileCuratorPeer()).toBe(classesDir);
  });
});

describe.skipIf(curatorMissing !== undefined)('startCuratorPeer', () => {
  let server: ZooKeeperServer;
  let a: CuratorPeer;
  let b: CuratorPeer;
  let pathCounter = 0;
  const freshPath = (label: string) => `/curator-peer-test/${label}-${pathCounter++}`;

  beforeAll(async () => {
    server = await startZooKeeper();
    [a, b] = await Promise.all([
      startCuratorPeer({ connectString: server.connectString }),
      startCuratorPeer({ connectString: server.connectString }),
    ]);
  });

  it('runs real Curator 5 with its own ZooKeeper session, visible at the server', async () => {
    expect(a.curatorVersion).toMatch(/^5\.\d+\.\d+/);
    expect(a.zooKeeperVersion).toMatch(/^3\.\d+\.\d+/);
    expect(a.connectionStates).toEqual(['CONNECTED']);
    expect(a.sessionId).toMatch(/^0x[0-9a-f]+$/);
    expect(a.sessionId).not.toBe(b.sessionId);
    expect(await serverSessions(server)).toEqual(expect.arrayContaining([a.sessionId, b.sessionId]));
    console.info(`[testkit] Curator peer JVM ready in ${Math.round(a.startupMs)} ms`);
  });

  it('a Curator mutex held by one client excludes the other until it is released, then passes to the waiter', async () => {
    const path = freshPath('mutex');
    const [mutexA, mutexB] = await Promise.all([a.mutex(path), b.mutex(path)]);
    expect(await mutexA.acquire(5_000)).toBe(true);
    expect(await mutexA.isAcquiredInThisProcess()).toBe(true);
    expect(await mutexB.acquire(100)).toBe(false);
    const waiting = mutexB.acquire(20_000);
    await eventually(async () => (await mutexA.participantNodes()).length === 2, 5_000, 'b queued');
    const [holderNode, waiterNode] = await mutexA.participantNodes();
    expect(holderNode).toMatch(new RegExp(`^${path}/_c_[0-9a-f-]{36}-lock-0000000000$`));
    expect(waiterNode).toMatch(/-lock-\d{10}$/);
    await mutexA.release();
    expect(await waiting).toBe(true);
    expect(await mutexA.isAcquiredInThisProcess()).toBe(false);
    expect(await mutexB.participantNodes()).toEqual([waiterNode]);
    await mutexB.release();
    expect(await mutexB.participantNodes()).toEqual([]);
  });

  it('answers other calls while an acquire blocks on the same peer', async () => {
    const path = freshPath('concurrent');
    const [first, second] = await Promise.all([a.mutex(path), a.mutex(path)]);
    expect(await first.acquire(5_000)).toBe(true);
    // Two lock objects are two contenders, each on its own thread: the blocked one holds up nothing.
    const waiting = second.acquire(20_000);
    await eventually(async () => (await first.participantNodes()).length === 2, 5_000, 'second queued');
    await first.release();
    expect(await waiting).toBe(true);
    await second.release();
  });

  it('rejects with the Java exception a release of a lock that is not held', async () => {
    const mutex = await a.mutex(freshPath('not-held'));
    const error = await mutex.release().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CuratorPeerError);
    expect(error).toMatchObject({ op: 'lock.release', javaClass: 'java.lang.IllegalMonitorStateException' });
  });

  it('a Curator semaphore of 2 admits two holders across clients and blocks the third until one returns', async () => {
    const path = freshPath('semaphore');
    const [first, second, third] = await Promise.all([
      a.semaphore(path, 2),
      b.semaphore(path, 2),
      b.semaphore(path, 2),
    ]);
    const [leaseA] = (await first.acquire(1, 5_000)) ?? [];
    const [leaseB] = (await second.acquire(1, 5_000)) ?? [];
    expect(leaseA).toMatch(/^_c_[0-9a-f-]{36}-lease-\d{10}$/);
    expect(leaseB).toMatch(/^_c_[0-9a-f-]{36}-lease-\d{10}$/);
    expect(await third.acquire(1, 200)).toBeNull();
    expect((await first.participantNodes()).sort()).toEqual([leaseA, leaseB].sort());
    const waiting = third.acquire(1, 20_000);
    await first.release(leaseA as string);
    const [leaseC] = (await waiting) ?? [];
    expect(leaseC).toMatch(/-lease-\d{10}$/);
    expect((await second.participantNodes()).sort()).toEqual([leaseB, leaseC].sort());
    await Promise.all([second.release(leaseB as string), third.release(leaseC as string)]);
    expect(await first.participantNodes()).toEqual([]);
    await expect(first.release(leaseA as string)).rejects.toBeInstanceOf(CuratorPeerError);
  });

  it('Curator read locks overlap across clients, and a write lock excludes them and is excluded by them', async () => {
    const path = freshPath('rw');
    const [rwA, rwB] = await Promise.all([a.readWriteLock(path), b.readWriteLock(path)]);
    expect(await rwA.readLock.acquire(5_000)).toBe(true);
    expect(await rwB.readLock.acquire(5_000)).toBe(true);
    expect(await rwB.writeLock.acquire(200)).toBe(false);
    const writing = rwB.writeLock.acquire(20_000);
    // Each lock of a read-write lock lists only the nodes of its own kind.
    await eventually(
      async () => (await rwA.writeLock.participantNodes()).length === 1,
      5_000,
      'writer queued',
    );
    expect(await rwA.readLock.participantNodes()).toHaveLength(2);
    await Promise.all([rwA.readLock.release(), rwB.readLock.release()]);
    expect(await writing).toBe(true);
    expect(await rwA.readLock.acquire(200)).toBe(false);
    const nodes = await rwA.writeLock.participantNodes();
    expect(nodes).toEqual([expect.stringMatching(new RegExp(`^${path}/_c_[0-9a-f-]{36}-__WRIT__\\d{10}$`))]);
    await rwB.writeLock.release();
    expect(await rwA.readLock.acquire(5_000)).toBe(true);
    await rwA.readLock.release();
  });

  it('SIGKILL fails the pending and later calls, and the server expires the session and deletes its nodes', async () => {
    const path = freshPath('kill');
    const victim = await startCuratorPeer({ connectString: server.connectString, sessionTimeoutMs: 1_000 });
    const [held, blocked, survivor] = await Promise.all([
      victim.mutex(path),
      victim.mutex(path),
      a.mutex(path),
    ]);
    expect(await held.acquire(5_000)).toBe(true);
    const pending = blocked.acquire(60_000);
    await eventually(async () => (await survivor.participantNodes()).length === 2, 5_000, 'blocked queued');
    await victim.kill();
    expect(victim.running).toBe(false);
    await expect(pending).rejects.toBeInstanceOf(CuratorPeerExitedError);
    await expect(held.release()).rejects.toBeInstanceOf(CuratorPeerExitedError);
    await expect(victim.mutex(path)).rejects.toBeInstanceOf(CuratorPeerExitedError);
    // The JVM did not close its session: its nodes stay until the server expires it.
    expect(await survivor.acquire(30_000)).toBe(true);
    await survivor.release();
    await victim.close();
  });

  it('close() ends the session at once: the nodes go with it', async () => {
    const path = freshPath('close');
    // A session timeout far longer than the test: only an orderly close frees the lock in time.
    const closing = await startCuratorPeer({ connectString: server.connectString, sessionTimeoutMs: 60_000 });
    const [held, other] = await Promise.all([closing.mutex(path), b.mutex(path)]);
    expect(await held.acquire(5_000)).toBe(true);
    await closing.close();
    expect(closing.running).toBe(false);
    expect(await other.acquire(20_000)).toBe(true);
    await other.release();
  });

  it('fails the start with ServerStartError when the client cannot connect within its timeout', async () => {
    const deadPort = await freePort();
    const error = await startCuratorPeer({
      connectString: `127.0.0.1:${deadPort}`,
      connectionTimeoutMs: 500,
    }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ServerStartError);
    expect((error as Error).message).toMatch(/not connected to 127\.0\.0\.1:\d+ within 500 ms/);
  });

  it('rejects bad arguments before sending them', async () => {
    const mutex = await a.mutex(freshPath('arguments'));
    await expect(mutex.acquire(-1)).rejects.toThrow(/timeoutMs must be an integer from 0/);
    await expect(mutex.acquire(1.5)).rejects.toThrow(RangeError);
    await expect(a.semaphore('/x', 0)).rejects.toThrow(/maxLeases must be an integer from 1/);
    await expect(a.mutex('relative/path')).rejects.toThrow(/absolute ZooKeeper path/);
    await expect(a.mutex('/trailing/')).rejects.toMatchObject({
      javaClass: 'java.lang.IllegalArgumentException',
    });
    await expect(startCuratorPeer({ connectString: '' })).rejects.toThrow(/connectString/);
  });
});

describe.skipIf(curatorMissing !== undefined)('Curator peer cleanup', () => {
  const ownWorkDirs = () =>
    readdirSync(tmpdir()).filter((entry) => entry.startsWith(`dlock-testkit-${process.pid}-`));

  it('stopAll() kills every peer and removes its directory', async () => {
    const before = ownWorkDirs().length;
    const server = await startZooKeeper();
    const peer = await startCuratorPeer({ connectString: server.connectString });
    const pending = (await peer.mutex('/cleanup')).acquire(60_000);
    // The server's directory and the peer's (its pid file, for the sweep of a later run).
    expect(ownWorkDirs()).toHaveLength(before + 2);

    await stopAll();

    expect(isGone(peer.pid as number)).toBe(true);
    expect(ownWorkDirs()).toEqual([]);
    await expect(pending).rejects.toBeInstanceOf(CuratorPeerExitedError);
  });

  const builtEntry = fileURLToPath(new URL('../dist/index.js', import.meta.url));
  it.skipIf(!existsSync(builtEntry))('dies with a test process that is SIGKILLed', async () => {
    const owner = startNodeProcess(fileURLToPath(new URL('./fixtures/curator-owner.mjs', import.meta.url)));
    const started = JSON.parse(await owner.waitForLine(/^\{/, 60_000)) as {
      serverPid: number;
      peerPid: number;
    };
    expect(isGone(started.peerPid)).toBe(false);

    await owner.kill();

    for (const pid of [started.peerPid, started.serverPid]) {
      await pollUntil(`pid ${pid} to die with its owner`, async () => (isGone(pid) ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 50,
      });
    }
  });
});
