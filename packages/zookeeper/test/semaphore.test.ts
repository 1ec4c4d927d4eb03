import {
  type AcquireOptions,
  BackendUnavailableError,
  InvalidArgumentError,
  LockLostError,
  type LockProvider,
  type PermitLease,
  SemaphoreLimitMismatchError,
} from '@dlock/core';
import { freePort } from '@dlock/testkit';
import { CreateMode } from 'node-zookeeper-client';
import { describe, expect, it } from 'vitest';
import type { ZooKeeperWatchEvent } from '../src/index.js';
import { lockPath } from '../src/layout.js';
import { childrenOf, primitivePath, takeOverFrom, tree, withHolderProcess } from './primitive-support.js';
import { dropConnectionOnCreate, sleep, until, useStandaloneZooKeeper } from './support.js';

const ROOT = '/dlock-semaphore';
const SESSION_TIMEOUT_MS = 2_000;
const zk = useStandaloneZooKeeper(ROOT, { sessionTimeoutMs: SESSION_TIMEOUT_MS });
const { providers } = zk;
let keyCounter = 0;
const freshKey = (label: string) => `${label}-${process.pid}-${keyCounter++}`;
const PROTECTED_LEASE = /^_c_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-lease-\d{10}$/;

const semaphorePath = (name: string) => primitivePath(ROOT, 'semaphore', name);
const leasesOf = (name: string) => childrenOf(zk.inspector, `${semaphorePath(name)}/leases`);
const mutexQueueOf = (name: string) => childrenOf(zk.inspector, `${semaphorePath(name)}/locks`);

/** The semaphore's node and `leases`, as another client creates them (no limit stored); returns the node. */
async function createForeignSemaphore(name: string): Promise<string> {
  const base = semaphorePath(name);
  const calls = zk.inspector.session.calls;
  for (const path of [ROOT, `${ROOT}/#semaphores`]) {
    await calls.create(path, Buffer.alloc(0), CreateMode.PERSISTENT).catch(() => {});
  }
  await calls.create(base, Buffer.alloc(0), CreateMode.PERSISTENT);
  await calls.create(`${base}/leases`, Buffer.alloc(0), CreateMode.PERSISTENT);
  return base;
}

describe('the layout', () => {
  it("is Curator's InterProcessSemaphoreV2 under <root>/#semaphores/<name>: the limit in its node, one protected lease node per permit", async () => {
    const name = freshKey('layout');
    const provider = providers.open({ identity: 'worker-7@host-a' });
    const permit = await provider.semaphore(name, { limit: 3 }).acquire({ permits: 2 });
    const base = `${ROOT}/#semaphores/${name}`;
    expect(semaphorePath(name)).toBe(base);
    // The internal mutex was given back at the grant, and its empty `locks` went with it.
    expect(await tree(zk.inspector, base)).toEqual([
      base,
      `${base}/leases`,
      ...(await leasesOf(name)).map((lease) => `${base}/leases/${lease}`),
    ]);
    expect((await zk.inspector.session.calls.getData(base)).data.toString()).toBe('3');
    const leases = await leasesOf(name);
    expect(leases).toHaveLength(2);
    const ids = leases.map((lease) => PROTECTED_LEASE.exec(lease)?.[1]);
    expect(ids[0]).toBeDefined();
    expect(ids[1]).toBe(ids[0]);
    const [first, second] = await Promise.all(
      leases.map((lease) => zk.inspector.session.calls.getData(`${base}/leases/${lease}`)),
    );
    expect(first?.data.toString()).toBe('worker-7@host-a');
    expect(first?.stat.ephemeralOwner.readBigUInt64BE()).not.toBe(0n);
    // The token is the lease's first node's czxid.
    expect(permit.token).toBe(first?.stat.czxid.readBigInt64BE());
    expect(second?.stat.czxid.readBigInt64BE()).toBeGreaterThan(permit.token);
    expect(await provider.semaphore(name, { limit: 3 }).holders()).toEqual([
      { identity: 'worker-7@host-a', token: permit.token, permits: 2 },
    ]);
    await permit.release();
    expect(await tree(zk.inspector, base)).toEqual([]);
  });

  it('keeps a lock, a semaphore and a read-write lock of the same name apart', async () => {
    const name = freshKey('same-name');
    const provider = providers.open();
    const lock = await provider.acquire(name);
    const permit = await provider.semaphore(name, { limit: 1 }).acquire({ waitMs: 1_000 });
    const write = await provider.readWriteLock(name).write.acquire({ waitMs: 1_000 });
    expect(await zk.inspector.queue(ROOT, name)).toHaveLength(1);
    expect(await leasesOf(name)).toHaveLength(1);
    expect(await childrenOf(zk.inspector, primitivePath(ROOT, 'read-write', name))).toHaveLength(1);
    await Promise.all([lock.release(), permit.release(), write.release()]);
    expect(await zk.inspector.residue(ROOT, name)).toEqual([]);
    expect(await tree(zk.inspector, semaphorePath(name))).toEqual([]);
  });
});

describe('waiting', () => {
  it('wakes one client per change: only the head of the internal mutex watches the leases, every other waiter its predecessor', async () => {
    const name = freshKey('herd');
    const events: Array<ZooKeeperWatchEvent & { waiter: number }> = [];
    const holder = await providers.open().semaphore(name, { limit: 1 }).acquire();
    const waiters = Array.from({ length: 10 }, (_, waiter) =>
      providers.open({ onWatchEvent: (event) => events.push({ ...event, waiter }) }),
    );
    const order: number[] = [];
    const done: Promise<void>[] = [];
    for (const [index, waiter] of waiters.entries()) {
      done.push(
        waiter
          .semaphore(name, { limit: 1 })
          .acquire({ waitMs: 30_000 })
          .then(async (lease) => {
            order.push(index);
            await lease.release();
          }),
      );
      await until(async () => (await mutexQueueOf(name)).length === index + 1, 5_000, 'waiter queued');
    }
    const mutexQueue = (await mutexQueueOf(name)).map((node) => `${semaphorePath(name)}/locks/${node}`);
    // The head of the mutex queue holds the mutex and has its lease node; the others only queue.
    expect(await leasesOf(name)).toHaveLength(2);
    await holder.release();
    await Promise.all(done);

    expect(order).toEqual(waiters.map((_, index) => index));
    // Each mutex hand-off notifies exactly the next waiter, on the node of the one before it.
    const predecessor = events.filter((event) => event.purpose === 'predecessor');
    expect(predecessor.map((event) => [event.waiter, event.path, event.type])).toEqual(
      mutexQueue.slice(0, -1).map((path, index) => [index + 1, path, 'deleted']),
    );
    // Each release notifies at most the one client at the head of the mutex queue.
    const leases = events.filter((event) => event.purpose === 'leases');
    expect(leases.length).toBeGreaterThanOrEqual(1);
    expect(leases.length).toBeLessThanOrEqual(10);
    expect(leases.every((event) => event.type === 'childrenChanged')).toBe(true);
    expect(new Set(leases.map((event) => event.waiter)).size).toBe(leases.length);
    expect(events.filter((event) => !['predecessor', 'leases', 'own-node'].includes(event.purpose))).toEqual(
      [],
    );
    expect(await tree(zk.inspector, semaphorePath(name))).toEqual([]);
  });

  it('a waiter at the head of the mutex queue that gives up gives back its lease and the mutex to the next', async () => {
    const name = freshKey('head-timeout');
    const held = await providers.open().semaphore(name, { limit: 1 }).acquire();
    // The head gives up once the next waiter is queued behind it (an abort: the same withdrawal as a
    // timeout, without racing a short waitMs against a busy machine).
    const giveUp = new AbortController();
    const head = providers
      .open()
      .semaphore(name, { limit: 1 })
      .acquire({ waitMs: 60_000, signal: giveUp.signal });
    head.catch(() => {});
    await until(async () => (await leasesOf(name)).length === 2, 20_000, 'the head created its lease');
    const next = providers.open().semaphore(name, { limit: 1 }).acquire({ waitMs: 60_000 });
    await until(async () => (await mutexQueueOf(name)).length === 2, 20_000, 'the next waiter queued');
    giveUp.abort();
    await expect(head).rejects.toMatchObject({ name: 'AbortError' });
    // Nothing of the timed-out waiter is left: one mutex node (the next waiter's), two leases (held, next's).
    await until(async () => (await mutexQueueOf(name)).length === 1, 5_000, 'the head withdrew');
    await until(async () => (await leasesOf(name)).length === 2, 5_000, 'the next waiter created its lease');
    await held.release();
    const lease = await next;
    expect(lease.token).toBeGreaterThan(held.token);
    await lease.release();
    expect(await tree(zk.inspector, semaphorePath(name))).toEqual([]);
  });
});

describe('the limit', () => {
  it('is stored with the semaphore while in use; a client that asks for another one is refused, even while it only waits', async () => {
    const name = freshKey('limit');
    const holder = await providers.open().semaphore(name, { limit: 1 }).acquire();
    // Arriving while a permit is held: refused at once, leaving nothing behind.
    await expect(
      providers.open().semaphore(name, { limit: 4 }).acquire({ waitMs: 5_000 }),
    ).rejects.toBeInstanceOf(SemaphoreLimitMismatchError);
    expect(await mutexQueueOf(name)).toEqual([]);
    await holder.release();
    expect(await tree(zk.inspector, semaphorePath(name))).toEqual([]);
    // Idle: the next client's limit counts.
    const relimited = await providers.open().semaphore(name, { limit: 4 }).acquire({ permits: 4 });
    expect((await zk.inspector.session.calls.getData(semaphorePath(name))).data.toString()).toBe('4');
    await relimited.release();
  });

  it("stores dlock's limit in a semaphore node another client created without one (as Curator does)", async () => {
    const name = freshKey('foreign');
    const base = await createForeignSemaphore(name);
    const calls = zk.inspector.session.calls;
    // A foreign lease (Curator's shape), counted like any other.
    const foreign = await calls.create(
      `${base}/leases/_c_00000000-0000-4000-8000-000000000000-lease-`,
      Buffer.from('10.0.0.9'),
      CreateMode.EPHEMERAL_SEQUENTIAL,
    );
    const semaphore = providers.open().semaphore(name, { limit: 2 });
    const permit = await semaphore.acquire({ waitMs: 5_000 });
    expect((await calls.getData(base)).data.toString()).toBe('2');
    expect(await semaphore.tryAcquire()).toBeNull();
    expect((await semaphore.holders()).map((holder) => holder.identity)).toEqual([
      '10.0.0.9',
      permit.identity,
    ]);
    await expect(providers.open().semaphore(name, { limit: 3 }).tryAcquire()).rejects.toBeInstanceOf(
      SemaphoreLimitMismatchError,
    );
    await calls.remove(foreign);
    await permit.release();
    expect(await tree(zk.inspector, base)).toEqual([]);
  });
});

describe('children of leases that are not lease nodes', () => {
  it('hold no permit: admission and holders() count only lease nodes, and the foreign children stay', async () => {
    const name = freshKey('foreign-child');
    const base = await createForeignSemaphore(name);
    const calls = zk.inspector.session.calls;
    const foreign = ['#meta', '.config', 'lease', 'lease-abc', '_c_not-a-uuid-lease-0000000001'];
    for (const child of foreign) {
      await calls.create(`${base}/leases/${child}`, Buffer.from('not a lease'), CreateMode.PERSISTENT);
    }
    // Before: tryAcquire() returned null with limit 1 while holders() returned [] (the reviewer's repro).
    const mine = providers.open({ identity: 'me' }).semaphore(name, { limit: 1 });
    const other = providers.open({ identity: 'other' }).semaphore(name, { limit: 1 });
    expect(await mine.holders()).toEqual([]);
    const permit = await mine.tryAcquire();
    expect(permit).not.toBeNull();
    expect(await other.holders()).toEqual([{ identity: 'me', token: permit!.token, permits: 1 }]);
    expect(await other.tryAcquire()).toBeNull();
    // A waiter counts the same way when the release wakes it.
    const waiting = other.acquire({ waitMs: 5_000 });
    await until(async () => (await leasesOf(name)).length === foreign.length + 2, 2_000, 'the waiter leased');
    await permit!.release();
    const next = await waiting;
    expect(await mine.holders()).toEqual([{ identity: 'other', token: next.token, permits: 1 }]);
    await next.release();
    expect(await mine.holders()).toEqual([]);
    // A plain `lease-<seq>` (the classic layout) holds a permit like any other.
    const classic = await calls.create(
      `${base}/leases/lease-`,
      Buffer.from('classic'),
      CreateMode.EPHEMERAL_SEQUENTIAL,
    );
    expect(await mine.tryAcquire()).toBeNull();
    expect((await mine.holders()).map((holder) => holder.identity)).toEqual(['classic']);
    await calls.remove(classic);
    // dlock deletes only what it created: the foreign children keep `leases` and the semaphore's node.
    expect((await calls.getChildren(`${base}/leases`)).children.sort()).toEqual([...foreign].sort());
  });
});

describe('unknown outcomes', () => {
  for (const [what, marker] of [
    ['its internal mutex node', '-lock-'],
    ['its lease nodes', '-lease-'],
  ] as const) {
    it(`finds ${what} by the protected id after the connection drops during the create: no duplicate, no ghost`, async () => {
      const name = freshKey('lost-reply');
      const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 4_000 });
      const dropped = await dropConnectionOnCreate(providers, provider, marker);
      const session = providers.driver(provider).liveSessions()[0];
      const permit = await provider.semaphore(name, { limit: 3 }).acquire({ permits: 2, waitMs: 10_000 });
      expect(dropped()).toBe(true);
      expect(providers.driver(provider).liveSessions()).toEqual([session]);
      const leases = await leasesOf(name);
      expect(leases).toHaveLength(2);
      expect(new Set(leases.map((lease) => PROTECTED_LEASE.exec(lease)?.[1])).size).toBe(1);
      expect(await mutexQueueOf(name)).toEqual([]);
      const tokens = await Promise.all(
        leases.map(async (lease) =>
          (
            await zk.inspector.session.calls.getData(`${semaphorePath(name)}/leases/${lease}`)
          ).stat.czxid.readBigInt64BE(),
        ),
      );
      expect(permit.token).toBe(tokens.reduce((a, b) => (a < b ? a : b)));
      await permit.release();
      expect(await tree(zk.inspector, semaphorePath(name))).toEqual([]);
    });
  }
});

describe('holders that crash, pause or lose their node', () => {
  it("aborts a permit's signal when an operator deletes its lease node", async () => {
    const name = freshKey('operator');
    const permit: PermitLease = await providers.open().semaphore(name, { limit: 2 }).acquire();
    const [lease] = await leasesOf(name);
    await zk.inspector.session.calls.remove(`${semaphorePath(name)}/leases/${lease}`);
    await until(() => permit.signal.aborted, 5_000, 'the permit lost');
    expect(permit.signal.reason).toBeInstanceOf(LockLostError);
    await expect(permit.extend()).rejects.toBeInstanceOf(LockLostError);
    await permit.release().catch(() => {});
    await until(
      async () => (await tree(zk.inspector, semaphorePath(name))).length === 0,
      5_000,
      'cleaned up',
    );
  });

  it('admits a waiter only once the server expires a SIGKILLed holder process, with a larger token', async () => {
    const name = freshKey('killed');
    await withHolderProcess(zk.server.connectString, ROOT, name, 'semaphore', async (child, token) => {
      const semaphore = providers.open().semaphore(name, { limit: 1 });
      expect((await semaphore.holders())[0]?.identity).toBe(`fixture-${child.pid}`);
      const [permit] = await takeOverFrom(child, token, 'kill', async () => [
        await semaphore.acquire({ waitMs: 20_000 }),
      ]);
      await permit?.release();
    });
  });

  it('hands the permit of a holder SIGSTOPped past its session timeout to a waiter; the holder learns of it at SIGCONT', async () => {
    const name = freshKey('paused');
    await withHolderProcess(
      zk.server.connectString,
      ROOT,
      name,
      'semaphore',
      async (child, token) => {
        const semaphore = providers.open().semaphore(name, { limit: 2 });
        const other = await semaphore.acquire();
        const [next] = await takeOverFrom(child, token, 'pause', async () => [
          await semaphore.acquire({ waitMs: 20_000 }),
        ]);
        expect((await semaphore.holders()).map((holder) => holder.token)).toEqual([other.token, next?.token]);
        await Promise.all([other.release(), next?.release()]);
        await until(
          async () => (await tree(zk.inspector, semaphorePath(name))).length === 0,
          5_000,
          'cleaned up',
        );
      },
      2,
    );
  });

  it('keeps at most `limit` permits held while holders are killed and contenders churn', async () => {
    const name = freshKey('churn');
    const limit = 3;
    let inside = 0;
    let most = 0;
    const contenders = Array.from({ length: 6 }, () => providers.open());
    const doomed = providers.open({ sessionTimeoutMs: SESSION_TIMEOUT_MS });
    await doomed.semaphore(name, { limit }).acquire({ permits: 2 });
    inside += 2;
    // The limit is reachable: the last permit beside the doomed holder's two, before the churn (the
    // churn's own grants depend on who heads the queue: a 2-permit head waits for the crash).
    const last = await providers.open().semaphore(name, { limit }).acquire({ waitMs: 10_000 });
    most = inside + 1;
    await last.release();
    const crashing = (async () => {
      await sleep(100);
      inside -= 2;
      providers.crash(doomed);
    })();
    await Promise.all([
      crashing,
      ...contenders.map(async (provider, index) => {
        const semaphore = provider.semaphore(name, { limit });
        for (let round = 0; round < 5; round++) {
          const permits = index % 3 === 0 ? 2 : 1;
          const lease = await semaphore.acquire({ permits, waitMs: 30_000 });
          inside += permits;
          most = Math.max(most, inside);
          expect(inside).toBeLessThanOrEqual(limit);
          expect((await leasesOf(name)).length).toBeLessThanOrEqual(limit + 2);
          await sleep(Math.random() * 5);
          inside -= permits;
          await lease.release();
        }
      }),
    ]);
    expect(most).toBe(limit);
    await until(
      async () => (await tree(zk.inspector, semaphorePath(name))).length === 0,
      5_000,
      'cleaned up',
    );
  }, 90_000);
});

// Both primitives here, as the last describe does: what a session that drops leaves behind is the
// same code for a permit and a read-write lease (and a lock, test/recipe.test.ts and the kit).
describe('sessions that drop, for both primitives', () => {
  const PRIMITIVES = [
    {
      what: 'a permit',
      take: (provider: LockProvider, name: string, options: AcquireOptions = {}) =>
        provider.semaphore(name, { limit: 1 }).acquire(options),
      path: semaphorePath,
      /** A waiter that queued and counted the leases: its mutex node and lease beside the holder's lease. */
      queuedNodes: 3,
    },
    {
      what: 'a write lease',
      take: (provider: LockProvider, name: string, options: AcquireOptions = {}) =>
        provider.readWriteLock(name).write.acquire(options),
      path: (name: string) => primitivePath(ROOT, 'read-write', name),
      queuedNodes: 2,
    },
  ];
  /** The ephemeral (protected) nodes under a primitive's node. */
  const ephemeralNodes = async (path: string) =>
    (await tree(zk.inspector, path)).filter((node) =>
      node.slice(node.lastIndexOf('/') + 1).startsWith('_c_'),
    );

  for (const { what, take, path, queuedNodes } of PRIMITIVES) {
    it(`${what} released while its session was away ('abort'): the retired session's goodbye deletes its nodes and their empty parents once it reconnects`, async () => {
      const name = freshKey('goodbye');
      const provider = providers.open({ sessionTimeoutMs: 4_000 });
      const lease = await take(provider, name);
      const [session] = providers.driver(provider).liveSessions();
      if (!session) throw new Error('no session');
      session.dropConnection({ holdReconnect: true });
      await until(() => lease.signal.aborted, 5_000, 'the lease lost at the disconnect');
      const releasedAt = performance.now();
      await lease.release();
      // Nothing to send in a lost session: its nodes go with it.
      expect(performance.now() - releasedAt).toBeLessThan(1_000);
      expect(await ephemeralNodes(path(name))).toHaveLength(1);
      session.resumeReconnecting();
      // The session's expiry would delete the node but leave its parents: only the goodbye empties the tree.
      await until(async () => (await tree(zk.inspector, path(name))).length === 0, 3_000, 'the goodbye');
    });

    it(`a waiter for ${what} given up while its session reconnects is answered at once, and its nodes are deleted once the session is back ('session-timeout')`, async () => {
      const name = freshKey('reconnecting');
      const held = await take(providers.open(), name);
      const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 4_000 });
      const controller = new AbortController();
      const waiting = take(provider, name, { waitMs: 30_000, signal: controller.signal }).then(
        () => 'granted',
        (error: unknown) => error,
      );
      await until(async () => (await ephemeralNodes(path(name))).length === queuedNodes, 5_000, 'queued');
      const [session] = providers.driver(provider).liveSessions();
      if (!session) throw new Error('no session');
      session.dropConnection({ holdReconnect: true });
      await until(() => !session.connected, 2_000, 'the client disconnected');
      const abortedAt = performance.now();
      controller.abort();
      expect(await waiting).toMatchObject({ name: 'AbortError' });
      // Not callTimeoutMs (3 s): the withdraw is not queued behind the reconnect; core retries it.
      expect(performance.now() - abortedAt).toBeLessThan(1_000);
      expect(providers.driver(provider).liveSessions()).toEqual([session]);
      session.resumeReconnecting();
      await until(
        async () => (await ephemeralNodes(path(name))).length === 1,
        5_000,
        "the waiter's nodes deleted",
      );
      await held.release();
      expect(await tree(zk.inspector, path(name))).toEqual([]);
    });
  }
});

// Not a check of lockPath: a semaphore name maps to a node the way a lock key does.
describe('names', () => {
  it('encodes a semaphore name the way a lock key is encoded', async () => {
    const name = `orders/eu ${freshKey('x')}`;
    const permit = await providers.open().semaphore(name, { limit: 1 }).acquire();
    expect(await zk.inspector.session.calls.exists(lockPath(`${ROOT}/#semaphores`, name))).not.toBeNull();
    expect(semaphorePath(name)).toContain('orders%2Feu%20');
    await permit.release();
  });
});

describe('options and a server that is down', () => {
  it('refuses roots that could share nodes with another primitive, naming the field', () => {
    const table: Array<[string, Record<string, string>]> = [
      ['semaphoreRoot', { semaphoreRoot: 'relative/path' }],
      ['readWriteRoot', { readWriteRoot: '/zookeeper/rw' }],
      ['semaphoreRoot', { semaphoreRoot: ROOT }],
      // `rw` is a name a lock key could take: a lock named "rw" would live there.
      ['readWriteRoot', { readWriteRoot: `${ROOT}/rw` }],
      ['readWriteRoot', { semaphoreRoot: '/shared', readWriteRoot: '/shared' }],
      ['semaphoreRoot', { semaphoreRoot: '/apps', root: '/apps/orders/locks' }],
    ];
    for (const [field, options] of table) {
      let error: unknown;
      try {
        providers.open(options);
      } catch (caught) {
        error = caught;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toBe(field);
    }
    expect(() =>
      providers.open({ semaphoreRoot: `${ROOT}/#pools`, readWriteRoot: '/elsewhere/rw' }),
    ).not.toThrow();
  });

  it('gives BackendUnavailableError within the connect timeout when the server is down, for both primitives', async () => {
    const provider = providers.open({
      connectString: `127.0.0.1:${await freePort()}`,
      connectTimeoutMs: 1_000,
    });
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['semaphore acquire', () => provider.semaphore('down', { limit: 2 }).acquire({ waitMs: 5_000 })],
      ['semaphore holders', () => provider.semaphore('down', { limit: 2 }).holders()],
      ['write acquire', () => provider.readWriteLock('down').write.acquire({ waitMs: 5_000 })],
      ['read tryAcquire', () => provider.readWriteLock('down').read.tryAcquire()],
    ];
    for (const [what, call] of calls) {
      const startedAt = performance.now();
      await expect(call(), what).rejects.toBeInstanceOf(BackendUnavailableError);
      expect(performance.now() - startedAt, what).toBeLessThan(3_000);
    }
  });
});
