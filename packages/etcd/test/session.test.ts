import { LockLostError } from '@dlock/core';
import { type EtcdServer, startEtcd } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdLockProvider } from '../src/index.js';
import { RawEtcd, openProvider, sleep, within } from './etcd.js';

let server: EtcdServer;
let raw: RawEtcd;
const providers: EtcdLockProvider[] = [];
let nameCounter = 0;
const freshName = (label: string) => `session-${label}-${process.pid}-${nameCounter++}`;
const open = (identity?: string) => {
  const provider = openProvider(server.endpoint, identity ? { identity } : {});
  providers.push(provider);
  return provider;
};
const decimal = (hex: string | undefined) => BigInt(`0x${hex}`).toString();

beforeAll(async () => {
  server = await startEtcd();
  raw = new RawEtcd(server.endpoint);
});

afterAll(async () => {
  await Promise.allSettled(providers.map((provider) => provider.close()));
  raw?.close();
  await server?.stop();
});

describe('key layout and the session lease', () => {
  it('a lock is the key <namespace><name>/<session lease id in hex>, on the session lease, valued with the identity', async () => {
    const provider = open('worker-7');
    const name = freshName('layout');
    const lease = await provider.acquire(name);
    const hex = provider.sessionLeaseId;
    expect(hex).toMatch(/^[0-9a-f]+$/);
    expect(await raw.keys(`dlock/${name}/`)).toEqual([`dlock/${name}/${hex}`]);
    const { kvs } = await raw.client.kv.range({ key: Buffer.from(`dlock/${name}/${hex}`) });
    expect(kvs[0]?.lease).toBe(decimal(hex));
    expect(kvs[0]?.value.toString()).toBe('worker-7');
    expect(BigInt(kvs[0]?.create_revision ?? 0)).toBe(lease.token);
    await lease.release();
    expect(await raw.keys(`dlock/${name}/`)).toEqual([]);
  });

  it('every lock of a provider shares one session lease, granted once', async () => {
    const provider = open();
    const names = [freshName('shared'), freshName('shared'), freshName('shared')];
    const leases = await Promise.all(names.map((name) => provider.acquire(name)));
    const { kvs } = await raw.client.kv.range({
      key: Buffer.from(`dlock/${names[0]}/${provider.sessionLeaseId}`),
    });
    const session = kvs[0]?.lease;
    for (const name of names) {
      const entry = await raw.client.kv.range({
        key: Buffer.from(`dlock/${name}/${provider.sessionLeaseId}`),
      });
      expect(entry.kvs[0]?.lease).toBe(session);
    }
    await Promise.all(leases.map((lease) => lease.release()));
  });

  it('two requests of one provider for the same name exclude each other', async () => {
    const provider = open();
    const name = freshName('same-session');
    const first = await provider.acquire(name);
    let secondHeld = false;
    const second = provider.acquire(name, { waitMs: 10_000 }).then((lease) => {
      secondHeld = true;
      return lease;
    });
    await sleep(300);
    expect(secondHeld).toBe(false);
    const hex = provider.sessionLeaseId;
    expect((await raw.keys(`dlock/${name}/`)).sort()).toEqual([
      `dlock/${name}/${hex}`,
      `dlock/${name}/${hex}-1`,
    ]);
    await first.release();
    const lease = await second;
    expect(lease.token > first.token).toBe(true);
    await lease.release();
    expect(await raw.keys(`dlock/${name}/`)).toEqual([]);
  });

  it('per-lock ttlMs is not used: a lock lives as long as its session', async () => {
    const provider = open();
    const lease = await provider.acquire(freshName('ttl'), { ttlMs: 100 });
    await sleep(600);
    expect(lease.signal.aborted).toBe(false);
    expect(await open().tryAcquire(lease.key)).toBeNull();
    await lease.release();
  });

  it('a session lease revoked by an operator aborts its leases, and the next acquire starts a new session', async () => {
    const provider = open();
    const lease = await provider.acquire(freshName('revoked'));
    const revoked = provider.sessionLeaseId;
    await raw.client.leaseClient.leaseRevoke({ ID: decimal(revoked) });
    await new Promise<void>((resolve) => lease.signal.addEventListener('abort', () => resolve()));
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    await expect(lease.extend()).rejects.toBeInstanceOf(LockLostError);
    const next = await provider.acquire(lease.key, { waitMs: 5_000 });
    expect(provider.sessionLeaseId).not.toBe(revoked);
    expect(next.token > lease.token).toBe(true);
    await next.release();
  });

  it('close() revokes the session lease, so its keys go at once', async () => {
    const provider = open();
    const name = freshName('close');
    await provider.acquire(name);
    const hex = provider.sessionLeaseId ?? '';
    await provider.close();
    expect(await raw.keys(`dlock/${name}/`)).toEqual([]);
    await raw.leaseGone(hex, 1_000);
  });
});

describe('watchHolder and the native election (Go concurrency.Election)', () => {
  it('watchHolder yields the current holder first, then each change it observes', async () => {
    const [a, b] = [open('holder-a'), open('holder-b')];
    const name = freshName('watch');
    const first = await a.acquire(name);
    const seen: Array<string | null> = [];
    const stop = new AbortController();
    const watching = (async () => {
      for await (const holder of a.watchHolder(name, stop.signal)) seen.push(holder?.identity ?? null);
    })();
    try {
      await within('the current holder is reported', 5_000, async () => seen.length >= 1);
      const second = b.acquire(name, { waitMs: 5_000 });
      await within('b is in line', 5_000, async () => (await raw.keys(`dlock/${name}/`)).length === 2);
      await first.release();
      const next = await second;
      // Changes closer together than one read may coalesce (the contract), so each state is awaited
      // before the next change is made.
      await within('the hand-off is reported', 5_000, async () => seen.length >= 2);
      await next.release();
      await within('the release is reported', 5_000, async () => seen.length >= 3);
    } finally {
      stop.abort();
      await watching;
    }
    expect(seen).toEqual(['holder-a', 'holder-b', null]);
  });

  it('campaign, leader, proclaim, observe and resign map onto the election provider', async () => {
    const [a, b] = [open('a'), open('b')];
    const election = freshName('election');
    const leadership = await a.election.acquire(election, { identity: 'candidate-a' });
    expect(await b.election.holder(election)).toEqual({ identity: 'candidate-a', token: leadership.token });
    expect(await raw.keys(`dlock-election/${election}/`)).toEqual([
      `dlock-election/${election}/${a.sessionLeaseId}`,
    ]);

    await a.election.proclaim(leadership, 'candidate-a, term 2');
    expect((await b.election.holder(election))?.identity).toBe('candidate-a, term 2');

    const campaign = b.election.acquire(election, { identity: 'candidate-b', waitMs: 5_000 });
    await sleep(100);
    await leadership.release();
    const next = await campaign;
    expect((await a.election.holder(election))?.identity).toBe('candidate-b');
    await expect(a.election.proclaim(leadership, 'stale')).rejects.toBeInstanceOf(LockLostError);
    expect((await a.election.holder(election))?.identity).toBe('candidate-b');
    await next.release();
  });

  it('locks and elections of the same name are separate queues', async () => {
    const [a, b] = [open(), open()];
    const name = freshName('separate');
    const lock = await a.acquire(name);
    const leadership = await b.election.tryAcquire(name);
    expect(leadership).not.toBeNull();
    await leadership?.release();
    await lock.release();
  });
});
