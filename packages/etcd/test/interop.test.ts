import type { Lease } from '@dlock/core';
import { type EtcdServer, startEtcd } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdLockProvider } from '../src/index.js';
import { RawEtcd, openProvider, sleep, within } from './etcd.js';
import { Etcdctl } from './etcdctl.js';

let server: EtcdServer;
let raw: RawEtcd;
let dlock: EtcdLockProvider;
let name = 0;
const freshName = (label: string) => `interop-${label}-${process.pid}-${name++}`;

beforeAll(async () => {
  server = await startEtcd();
  raw = new RawEtcd(server.endpoint);
  // namespace '' is Go's layout: the lock `k` is the queue under `k/`, exactly as `etcdctl lock k` uses.
  dlock = openProvider(server.endpoint, { namespace: '', electionNamespace: '' });
});

afterAll(async () => {
  await Etcdctl.stopAll();
  await dlock?.close();
  raw?.close();
  await server?.stop();
});

describe('interop with etcdctl (Go concurrency.Mutex / Election)', () => {
  it('an etcdctl lock holder excludes dlock, and a dlock waiter queues behind it', async () => {
    const lock = freshName('ctl-holds');
    const ctl = new Etcdctl(server.endpoint, ['lock', '--ttl', '5', lock]);
    const ctlKey = await ctl.waitForLine(new RegExp(`^${lock}/[0-9a-f]+$`));

    expect(await dlock.tryAcquire(lock)).toBeNull();
    const holder = await dlock.holder(lock);
    expect(holder?.identity).toBe(ctlKey);

    let acquired: Lease | undefined;
    const waiting = dlock.acquire(lock, { waitMs: 10_000 }).then((lease) => {
      acquired = lease;
      return lease;
    });
    await within('dlock is in line', 5_000, async () => (await raw.keys(`${lock}/`)).length === 2);
    await sleep(300);
    expect(acquired).toBeUndefined();
    expect(await raw.keys(`${lock}/`)).toHaveLength(2);

    await ctl.stop();
    const lease = await waiting;
    expect(lease.token > (holder?.token ?? 0n)).toBe(true);
    await lease.release();
    expect(await raw.keys(`${lock}/`)).toEqual([]);
  });

  it('a dlock holder excludes etcdctl lock, which gets the lock once dlock releases', async () => {
    const lock = freshName('dlock-holds');
    const lease = await dlock.acquire(lock);
    expect(await raw.keys(`${lock}/`)).toEqual([`${lock}/${dlock.sessionLeaseId}`]);

    const ctl = new Etcdctl(server.endpoint, ['lock', '--ttl', '5', lock]);
    // Queued (its key is there) and still waiting: not a child process that has not started yet.
    await within('etcdctl is in line', 10_000, async () => (await raw.keys(`${lock}/`)).length === 2);
    await sleep(300);
    expect(ctl.lines).toEqual([]);

    await lease.release();
    await ctl.waitForLine(new RegExp(`^${lock}/[0-9a-f]+$`), 5_000);
    expect(await dlock.tryAcquire(lock)).toBeNull();
    await ctl.stop();
  });

  it('dlock and etcdctl waiters are served in arrival order', async () => {
    const lock = freshName('fifo');
    const first = await dlock.acquire(lock);
    // etcdctl queues second, runs its command once it holds the lock, and unlocks when it exits.
    const ctl = new Etcdctl(server.endpoint, [
      'lock',
      '--ttl',
      '5',
      lock,
      '--',
      'sh',
      '-c',
      'echo ctl-holds; sleep 0.3',
    ]);
    // A child process that connects first: awaited (a busy machine can take seconds), not assumed.
    await within('etcdctl is in line', 10_000, async () => (await raw.keys(`${lock}/`)).length === 2);
    const order: string[] = [];
    const third = dlock.acquire(lock, { waitMs: 10_000 }).then((lease) => {
      order.push(ctl.lines.includes('ctl-holds') ? 'dlock after etcdctl' : 'dlock before etcdctl');
      return lease;
    });
    await within(
      'dlock is in line behind etcdctl',
      5_000,
      async () => (await raw.keys(`${lock}/`)).length === 3,
    );
    await first.release();
    await ctl.waitForLine(/^ctl-holds$/, 5_000);
    const lease = await third;
    expect(order).toEqual(['dlock after etcdctl']);
    await lease.release();
    await ctl.exited;
  });

  it('etcdctl elect observes a dlock leader and its proclaimed values, and campaigns behind it', async () => {
    const election = freshName('elect');
    const leadership = await dlock.election.acquire(election, { identity: 'dlock-candidate' });
    const observer = new Etcdctl(server.endpoint, ['elect', '--listen', election]);
    await observer.waitForLine(/^dlock-candidate$/);

    await dlock.election.proclaim(leadership, 'dlock-proclaimed');
    await observer.waitForLine(/^dlock-proclaimed$/);

    const candidate = new Etcdctl(server.endpoint, ['elect', election, 'ctl-candidate']);
    // Campaigning (its key is there) and not leading: not a child process that has not started yet.
    await within('etcdctl campaigns', 10_000, async () => (await raw.keys(`${election}/`)).length === 2);
    await sleep(300);
    expect(candidate.lines).toEqual([]);

    const seen: string[] = [];
    const watching = new AbortController();
    let firstSeen: () => void = () => {};
    const started = new Promise<void>((resolve) => {
      firstSeen = resolve;
    });
    const watched = (async () => {
      for await (const leader of dlock.election.watchHolder(election, watching.signal)) {
        seen.push(leader?.identity ?? '(none)');
        firstSeen();
        if (leader?.identity === 'ctl-candidate') watching.abort();
      }
    })();
    await started;
    await leadership.release();
    await candidate.waitForLine(/^ctl-candidate$/, 5_000);
    await observer.waitForLine(/^ctl-candidate$/, 5_000);
    await watched;
    expect(seen[0]).toBe('dlock-proclaimed');
    expect(seen.at(-1)).toBe('ctl-candidate');
    await candidate.stop();
    await observer.stop();
  });
});
