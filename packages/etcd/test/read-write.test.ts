import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ReadWriteLease } from '@dlock/core';
import { describe, expect, it } from 'vitest';
import { type EtcdProviderOptions, readWritePrefix } from '../src/index.js';
import { figure, settle, sleep, within } from './etcd.js';
import {
  PUSHED_WAITER,
  describeWaiterEdges,
  etcdHarness,
  serverWatchers,
  txnsStarted,
} from './primitives.js';

/** `readWriteNamespace: ''`: the keys of etcd's recipes.RWMutex. */
const GO_LAYOUT = { readWriteNamespace: '' };
const GO_WAITER = { ...PUSHED_WAITER, ...GO_LAYOUT };

const etcd = etcdHarness();
const open = (options: Partial<EtcdProviderOptions> = GO_LAYOUT) => etcd.open(options);
let nameCounter = 0;
const freshName = (label: string) => `rw-${label}-${process.pid}-${nameCounter++}`;
const keysOf = (name: string) => etcd.raw.keys(readWritePrefix('', name));

/** One `etcdctl` (v3) command, as another team's tooling would run it; resolves with its stdout. */
async function etcdctl(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('etcdctl', [`--endpoints=${etcd.server.endpoint}`, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
  });
  return stdout;
}

/** A key written by etcdctl on a lease of its own, as a Go RWMutex client leaves it: `name/<side>/<ns>`. */
async function foreignKey(name: string, side: 'read' | 'write'): Promise<{ key: string; lease: string }> {
  const lease = /lease ([0-9a-f]+) granted/.exec(await etcdctl('lease', 'grant', '30'))?.[1];
  if (!lease) throw new Error('etcdctl granted no lease');
  const key = `${name}/${side}/${BigInt(Date.now()) * 1_000_000n}`;
  await etcdctl('put', `--lease=${lease}`, key, '');
  return { key, lease };
}

describe('the layout of etcd recipes.RWMutex', () => {
  it("with readWriteNamespace '' the keys are exactly the recipe's: <name>/read/<number> and <name>/write/<number> on the session lease", async () => {
    const provider = open();
    const name = freshName('layout');
    const lock = provider.readWriteLock(name);
    const readers = [
      await lock.read.acquire({ identity: 'r1' }),
      await lock.read.acquire({ identity: 'r2' }),
    ];
    const writer = settle(open().readWriteLock(name).write.acquire({ identity: 'w1', waitMs: 10_000 }));
    await within('the writer is queued', 5_000, async () => (await keysOf(name)).length === 3);

    const { kvs } = await etcd.raw.client.kv.range({
      key: Buffer.from(`${name}/`),
      range_end: Buffer.from(`${name}0`),
      sort_target: 'Create',
      sort_order: 'Ascend',
    });
    // Go's newUniqueEphemeralKey: `%s/%v` of the side and time.Now().UnixNano(), created if absent.
    expect(kvs.map((kv) => kv.key.toString().replace(/\d{19}$/, 'N'))).toEqual([
      `${name}/read/N`,
      `${name}/read/N`,
      `${name}/write/N`,
    ]);
    expect(kvs.map((kv) => kv.value.toString())).toEqual(['r1', 'r2', 'w1']);
    expect(BigInt(kvs[0]?.lease ?? 0).toString(16)).toBe(provider.sessionLeaseId);
    expect(readers.map((reader) => reader.token)).toEqual(
      kvs.slice(0, 2).map((kv) => BigInt(kv.create_revision)),
    );
    expect(await lock.holders()).toEqual([
      { identity: 'r1', token: readers[0]?.token, mode: 'read' },
      { identity: 'r2', token: readers[1]?.token, mode: 'read' },
    ]);

    await Promise.all(readers.map((reader) => reader.release()));
    const written = (await writer).value as ReadWriteLease;
    expect(await lock.holders()).toEqual([{ identity: 'w1', token: written.token, mode: 'write' }]);
    await written.release();
    expect(await keysOf(name)).toEqual([]);
  });

  it('the default namespace keeps read-write keys apart from the lock of the same name', async () => {
    const provider = open({});
    const name = freshName('apart');
    const lock = await provider.acquire(name);
    const write = await provider.readWriteLock(name).write.tryAcquire();
    expect(write).not.toBeNull();
    expect(await etcd.raw.keys(readWritePrefix('dlock-rw/', name))).toHaveLength(1);
    expect(await etcd.raw.keys(`dlock/${name}/`)).toHaveLength(1);
    await Promise.all([lock.release(), write?.release()]);
  });
});

describe('interop with keys written by etcdctl (a Go RWMutex client)', () => {
  it('a foreign writer key on a lease blocks dlock readers until it is deleted; the waiting reader is then woken at once', async () => {
    const name = freshName('foreign-writer');
    const { key } = await foreignKey(name, 'write');
    const lock = open(GO_WAITER).readWriteLock(name);
    expect(await lock.read.tryAcquire()).toBeNull();
    expect(await lock.holders()).toEqual([{ identity: key, token: expect.any(BigInt), mode: 'write' }]);
    const reading = settle(lock.read.acquire({ waitMs: 20_000 }));
    await sleep(300);
    const deletedAt = performance.now();
    await etcdctl('del', key);
    const { value, error } = await reading;
    expect(error).toBeUndefined();
    figure('etcdctl del of the foreign writer → dlock reader holds', performance.now() - deletedAt);
    expect(performance.now() - deletedAt).toBeLessThan(5_000);
    await (value as ReadWriteLease).release();
  });

  it('a foreign reader key blocks dlock writers, not dlock readers; revoking its lease lets the writer in', async () => {
    const name = freshName('foreign-reader');
    const { lease } = await foreignKey(name, 'read');
    const lock = open(GO_WAITER).readWriteLock(name);
    const reader = await lock.read.tryAcquire();
    expect(reader).not.toBeNull();
    await reader?.release();
    expect(await lock.write.tryAcquire()).toBeNull();
    const writing = settle(lock.write.acquire({ waitMs: 20_000 }));
    await sleep(300);
    await etcdctl('lease', 'revoke', lease);
    const { value, error } = await writing;
    expect(error).toBeUndefined();
    await (value as ReadWriteLease).release();
    expect(await keysOf(name)).toEqual([]);
  });

  it('a foreign writer that arrives after a dlock reader does not block it, and queues behind it', async () => {
    const name = freshName('order');
    const lock = open().readWriteLock(name);
    const reader = await lock.read.acquire();
    const { key } = await foreignKey(name, 'write');
    // Go's writer waits on the key just before it (the reader); a later dlock reader queues behind it.
    expect(await open().readWriteLock(name).read.tryAcquire()).toBeNull();
    expect((await lock.holders()).map((holder) => holder.mode)).toEqual(['read']);
    await reader.release();
    expect(await lock.holders()).toEqual([{ identity: key, token: expect.any(BigInt), mode: 'write' }]);
    await etcdctl('del', key);
  });
});

describe('waiting on the key that matters', () => {
  it('a reader waits on the last writer before it, a writer on the key just before it: one release wakes one waiter', async () => {
    const name = freshName('order');
    const first = await open().readWriteLock(name).write.acquire();
    const order: string[] = [];
    const queue = async (label: string, side: 'read' | 'write') => {
      const queued = (await keysOf(name)).length;
      const lease = open(GO_WAITER)
        .readWriteLock(name)
        [side].acquire({ waitMs: 20_000 })
        .then((granted) => {
          order.push(label);
          return granted;
        });
      await within(`${label} is queued`, 5_000, async () => (await keysOf(name)).length === queued + 1);
      // Wrapped: an async function returning the promise itself would wait for the grant.
      return { outcome: settle(lease) };
    };
    const watchersBefore = await serverWatchers(etcd.server.endpoint);
    const r1 = await queue('r1', 'read');
    const w2 = await queue('w2', 'write');
    const r2 = await queue('r2', 'read');
    // One watch per waiter, created after its key: awaited, then held for 300 ms (more is a herd).
    const watches = async () => (await serverWatchers(etcd.server.endpoint)) - watchersBefore;
    await within('one watch per waiter', 5_000, async () => (await watches()) >= 3);
    await sleep(300);
    expect(await watches()).toBe(3);

    const txnsBefore = await txnsStarted(etcd.server.endpoint);
    await first.release();
    const reader = (await r1.outcome).value as ReadWriteLease;
    await sleep(500);
    // The release and r1's attempt; w2 watches r1 and r2 watches w2, so neither was woken.
    expect((await txnsStarted(etcd.server.endpoint)) - txnsBefore).toBe(2);
    expect(order).toEqual(['r1']);

    await reader.release();
    const writer = (await w2.outcome).value as ReadWriteLease;
    await sleep(200);
    expect(order).toEqual(['r1', 'w2']);
    await writer.release();
    const late = (await r2.outcome).value as ReadWriteLease;
    expect(order).toEqual(['r1', 'w2', 'r2']);
    expect(writer.token > reader.token && late.token > writer.token).toBe(true);
    await late.release();
    await within(
      'no watch is left',
      5_000,
      async () => (await serverWatchers(etcd.server.endpoint)) === watchersBefore,
    );
  });
});

describeWaiterEdges(etcd, {
  lease: 'write lease',
  fixtureKind: 'write',
  hold: (provider, name) => provider.readWriteLock(name).write.acquire(),
  contend: (provider, name, options) => provider.readWriteLock(name).read.acquire(options),
  holderTokens: async (provider, name) =>
    (await provider.readWriteLock(name).holders()).map((holder) => holder.token),
  keysOf: (raw, name) => raw.keys(readWritePrefix('dlock-rw/', name)),
});
