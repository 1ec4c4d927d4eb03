import { LockLostError, type LockProvider, type ReadWriteLease } from '@dlock/core';
import { describe, expect, it } from 'vitest';
import type { ZooKeeperWatchEvent } from '../src/index.js';
import { childrenOf, primitivePath, takeOverFrom, tree, withHolderProcess } from './primitive-support.js';
import { dropConnectionOnCreate, until, useStandaloneZooKeeper } from './support.js';

const ROOT = '/dlock-read-write';
const zk = useStandaloneZooKeeper(ROOT, { sessionTimeoutMs: 2_000 });
const { providers } = zk;
let keyCounter = 0;
const freshKey = (label: string) => `${label}-${process.pid}-${keyCounter++}`;
const PROTECTED = '_c_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-';

const lockNode = (name: string) => primitivePath(ROOT, 'read-write', name);
/** The lock's nodes in sequence order (the queue both dlock and Curator read). */
function queueOf(name: string): Promise<string[]> {
  return childrenOf(zk.inspector, lockNode(name));
}

describe('the layout', () => {
  it("is Curator's InterProcessReadWriteLock under <root>/#rwlocks/<name>: protected __READ__ / __WRIT__ nodes, the identity as data, czxid as token", async () => {
    const name = freshKey('layout');
    const provider = providers.open({ identity: 'reporter-1' });
    const lock = provider.readWriteLock(name);
    const read = await lock.read.acquire();
    const other = await providers.open({ identity: 'reporter-2' }).readWriteLock(name).read.acquire();
    const writing = lock.write.acquire({ waitMs: 10_000 });
    await until(async () => (await queueOf(name)).length === 3, 5_000, 'the writer queued');
    const base = `${ROOT}/#rwlocks/${name}`;
    expect(lockNode(name)).toBe(base);
    const [first, second, third] = await queueOf(name);
    expect(first).toMatch(new RegExp(`^${PROTECTED}__READ__\\d{10}$`));
    expect(second).toMatch(new RegExp(`^${PROTECTED}__READ__\\d{10}$`));
    expect(third).toMatch(new RegExp(`^${PROTECTED}__WRIT__\\d{10}$`));
    const { data, stat } = await zk.inspector.session.calls.getData(`${base}/${first}`);
    expect(data.toString()).toBe('reporter-1');
    expect(stat.czxid.readBigInt64BE()).toBe(read.token);
    expect(await lock.holders()).toEqual([
      { identity: 'reporter-1', token: read.token, mode: 'read' },
      { identity: 'reporter-2', token: other.token, mode: 'read' },
    ]);
    await Promise.all([read.release(), other.release()]);
    const write = await writing;
    expect(write.token).toBeGreaterThan(other.token);
    expect(await lock.holders()).toEqual([{ identity: 'reporter-1', token: write.token, mode: 'write' }]);
    await write.release();
    expect(await tree(zk.inspector, base)).toEqual([]);
  });
});

describe('waiting', () => {
  it('a writer watches the node just ahead, a reader the last writer ahead: each release wakes only whom it admits', async () => {
    const name = freshKey('watches');
    const events: Array<ZooKeeperWatchEvent & { who: string }> = [];
    const open = (who: string): LockProvider =>
      providers.open({ onWatchEvent: (event) => events.push({ ...event, who }), fallbackRecheckMs: 600_000 });
    const w0 = await open('W0').readWriteLock(name).write.acquire();
    const granted = new Map<string, ReadWriteLease>();
    const queued: Array<[string, 'read' | 'write']> = [
      ['W1', 'write'],
      ['R2', 'read'],
      ['R3', 'read'],
      ['W4', 'write'],
      ['R5', 'read'],
    ];
    for (const [index, [who, mode]] of queued.entries()) {
      open(who)
        .readWriteLock(name)
        [mode].acquire({ waitMs: 30_000 })
        .then((lease) => granted.set(who, lease));
      await until(async () => (await queueOf(name)).length === index + 2, 5_000, `${who} queued`);
    }
    const nodes = (await queueOf(name)).map((node) => `${lockNode(name)}/${node}`);
    const notified = () =>
      events
        .filter((event) => event.purpose === 'predecessor')
        .map((event) => [event.who, nodes.indexOf(event.path)]);
    const releaseAndWaitFor = async (lease: ReadWriteLease | undefined, admitted: string[]) => {
      await lease?.release();
      await until(() => admitted.every((who) => granted.has(who)), 5_000, `${admitted.join(', ')} granted`);
    };

    // W0 → W1 only: the readers behind W1 watch W1, not W0 (Curator's reader would wake here too).
    await releaseAndWaitFor(w0, ['W1']);
    expect(notified()).toEqual([['W1', 0]]);
    // W1 → both readers, together.
    await releaseAndWaitFor(granted.get('W1'), ['R2', 'R3']);
    expect(notified().slice(1).sort()).toEqual([
      ['R2', 1],
      ['R3', 1],
    ]);
    // R2's release wakes nobody: W4 waits on R3, the node just ahead of it.
    await granted.get('R2')?.release();
    await until(async () => (await queueOf(name)).length === 3, 5_000, 'R2 gone');
    expect(notified()).toHaveLength(3);
    await releaseAndWaitFor(granted.get('R3'), ['W4']);
    await releaseAndWaitFor(granted.get('W4'), ['R5']);
    expect(notified().slice(3)).toEqual([
      ['W4', 3],
      ['R5', 4],
    ]);
    await granted.get('R5')?.release();
    expect(events.filter((event) => !['predecessor', 'own-node'].includes(event.purpose))).toEqual([]);
    expect(await tree(zk.inspector, lockNode(name))).toEqual([]);
  });
});

describe('unknown outcomes and lost nodes', () => {
  it('finds its node by the protected id after the connection drops during the create: no duplicate, no ghost', async () => {
    const name = freshKey('lost-reply');
    const provider = providers.open({ onDisconnect: 'session-timeout', sessionTimeoutMs: 4_000 });
    const dropped = await dropConnectionOnCreate(providers, provider, '__WRIT__');
    const write = await provider.readWriteLock(name).write.acquire({ waitMs: 10_000 });
    expect(dropped()).toBe(true);
    const queue = await queueOf(name);
    expect(queue).toHaveLength(1);
    const { stat } = await zk.inspector.session.calls.getData(`${lockNode(name)}/${queue[0]}`);
    expect(stat.czxid.readBigInt64BE()).toBe(write.token);
    await write.release();
    expect(await tree(zk.inspector, lockNode(name))).toEqual([]);
  });

  it("aborts a lease's signal when an operator deletes its node", async () => {
    const name = freshKey('operator');
    const read = await providers.open().readWriteLock(name).read.acquire();
    const [node] = await queueOf(name);
    await zk.inspector.session.calls.remove(`${lockNode(name)}/${node}`);
    await until(() => read.signal.aborted, 5_000, 'the lease lost');
    expect(read.signal.reason).toBeInstanceOf(LockLostError);
    await expect(read.extend()).rejects.toBeInstanceOf(LockLostError);
    await read.release().catch(() => {});
  });

  it('lets readers in only once the server expires a writer process SIGSTOPped past its session timeout', async () => {
    const name = freshKey('paused-writer');
    await withHolderProcess(zk.server.connectString, ROOT, name, 'write', async (child, token) => {
      const lock = providers.open().readWriteLock(name);
      expect(await lock.holders()).toEqual([{ identity: `fixture-${child.pid}`, token, mode: 'write' }]);
      const reads = await takeOverFrom(child, token, 'pause', () =>
        Promise.all([lock.read.acquire({ waitMs: 20_000 }), lock.read.acquire({ waitMs: 20_000 })]),
      );
      await Promise.all(reads.map((read) => read.release()));
      await until(async () => (await tree(zk.inspector, lockNode(name))).length === 0, 5_000, 'cleaned up');
    });
  });

  it('admits a waiting writer once the server expires a SIGKILLed reader process', async () => {
    const name = freshKey('killed-reader');
    await withHolderProcess(zk.server.connectString, ROOT, name, 'read', async (child, token) => {
      const lock = providers.open().readWriteLock(name);
      const writing = lock.write.acquire({ waitMs: 20_000 });
      await until(async () => (await queueOf(name)).length === 2, 5_000, 'the writer queued');
      const [write] = await takeOverFrom(child, token, 'kill', async () => [await writing]);
      await write?.release();
    });
  });
});
