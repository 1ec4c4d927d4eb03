import { createHash } from 'node:crypto';
import { BackendUnavailableError, InvalidArgumentError, LockError, type LockProvider } from '@dlock/core';
import { freePort, startZooKeeper } from '@dlock/testkit';
import { describe, expect, it } from 'vitest';
import { type ZooKeeperProviderOptions, createZooKeeperProvider } from '../src/index.js';
import { sleep, until, useStandaloneZooKeeper } from './support.js';

const zk = useStandaloneZooKeeper('/dlock-errors', { connectTimeoutMs: 1_000, callTimeoutMs: 1_000 });
const { providers } = zk;

async function outcomeWithin<T>(work: Promise<T>): Promise<{ error: unknown; elapsedMs: number }> {
  const started = performance.now();
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, elapsedMs: performance.now() - started };
}

describe('bad options', () => {
  const valid: ZooKeeperProviderOptions = { connectString: '127.0.0.1:2181' };
  const table: Array<[string, Partial<Record<keyof ZooKeeperProviderOptions, unknown>>]> = [
    ['connectString', { connectString: '' }],
    ['connectString', { connectString: 42 }],
    ['connectString', { connectString: '127.0.0.1:99999' }],
    ['connectString', { connectString: '127.0.0.1:0' }],
    ['connectString', { connectString: 'a b:2181' }],
    ['connectString', { connectString: '127.0.0.1:2181,' }],
    ['connectString', { connectString: '127.0.0.1:2181/app//locks' }],
    ['root', { root: '/' }],
    ['root', { root: 'dlock' }],
    ['root', { root: '/dlock/' }],
    ['root', { root: '/a//b' }],
    ['root', { root: '/a/../b' }],
    ['root', { root: '/zookeeper/locks' }],
    ['root', { root: '/bad\u0001char' }],
    ['sessionTimeoutMs', { sessionTimeoutMs: 0 }],
    ['sessionTimeoutMs', { sessionTimeoutMs: Number.NaN }],
    ['connectTimeoutMs', { connectTimeoutMs: -1 }],
    ['callTimeoutMs', { callTimeoutMs: Number.POSITIVE_INFINITY }],
    ['onDisconnect', { onDisconnect: 'sometimes' }],
    ['auth', { auth: [{ scheme: '', auth: 'u:p' }] }],
    ['auth', { auth: 'user:password' }],
    ['acl', { acl: [] }],
    ['acl', { acl: [{ scheme: 'world', id: 'anyone', perms: 64 }] }],
    ['onWatchEvent', { onWatchEvent: 'log' }],
    ['defaultTtlMs', { defaultTtlMs: 0 }],
    ['identity', { identity: '' }],
  ];
  for (const [field, options] of table) {
    const value = Object.values(options)[0];
    const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
    it(`rejects ${field}=${shown} with InvalidArgumentError naming it`, () => {
      let error: unknown;
      try {
        createZooKeeperProvider({ ...valid, ...options } as ZooKeeperProviderOptions);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toBe(field);
      expect((error as Error).message).toContain(field);
    });
  }

  it('rejects options that are not an object, and keys with a lone surrogate', async () => {
    expect(() => createZooKeeperProvider(null as unknown as ZooKeeperProviderOptions)).toThrow(
      InvalidArgumentError,
    );
    const provider = providers.open();
    await expect(provider.acquire('half-\ud800-pair')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'key',
    });
  });
});

describe('an unreachable backend', () => {
  it('a provider that never reached its server fails acquire, tryAcquire and holder with BackendUnavailableError within the connect timeout', async () => {
    const connectString = `127.0.0.1:${await freePort()}`;
    const provider = providers.open({ connectString, connectTimeoutMs: 1_000 });
    for (const call of [
      () => provider.acquire('k', { waitMs: 60_000 }),
      () => provider.tryAcquire('k'),
      () => provider.holder('k'),
    ]) {
      const { error, elapsedMs } = await outcomeWithin(call());
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect((error as BackendUnavailableError).address).toBe(connectString);
      expect((error as Error).message).toContain(connectString);
      expect(elapsedMs).toBeLessThan(1_000 + 500);
    }
  });

  it('a smaller waitMs wins over the connect timeout: a dead port fails acquire({ waitMs: 500 }) within waitMs + settleGraceMs', async () => {
    // Issue 16: this took 5005 ms (the connect timeout) before core bounded an attempt in flight.
    const connectString = `127.0.0.1:${await freePort()}`;
    const provider = providers.open({ connectString, connectTimeoutMs: 5_000 });
    const { error, elapsedMs } = await outcomeWithin(provider.acquire('k', { waitMs: 500 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toContain(connectString);
    // waitMs 500 + settleGraceMs 500 (core's default), with slack for a busy machine.
    expect(elapsedMs).toBeLessThan(1_000 + 1_000);
  });

  it('close() after a failed acquire, or during one, settles at once instead of waiting out the connect timeout', async () => {
    // close() waited for the connect still in flight: 4 s (connectTimeoutMs) against 0-5 ms elsewhere.
    const connectTimeoutMs = 4_000;
    const connectString = `127.0.0.1:${await freePort()}`;
    const failed = providers.open({ connectString, connectTimeoutMs });
    const acquired = await outcomeWithin(failed.acquire('k', { waitMs: 500 }));
    expect(acquired.error).toBeInstanceOf(BackendUnavailableError);
    const closed = await outcomeWithin(failed.close());
    expect(closed.error).toBeUndefined();
    expect(closed.elapsedMs).toBeLessThan(1_500);
    // Closed while the first connect is still trying: the acquire ends typed, as promptly.
    const busy = providers.open({ connectString, connectTimeoutMs });
    const pending = outcomeWithin(busy.acquire('k'));
    await sleep(100);
    const closedEarly = await outcomeWithin(busy.close());
    expect(closedEarly.error).toBeUndefined();
    expect(closedEarly.elapsedMs).toBeLessThan(1_500);
    const ended = await pending;
    expect(ended.error).toBeInstanceOf(LockError);
    expect(ended.elapsedMs).toBeLessThan(100 + 1_500);
  });

  it('names a missing chroot instead of hanging', async () => {
    const provider = providers.open({ connectString: `${zk.server.connectString}/no-such-chroot` });
    const { error } = await outcomeWithin(provider.acquire('k', { waitMs: 5_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as Error).message).toMatch(/chroot/);
  });

  it('a server that stops while a lease is held: the lease aborts, release settles, a waiting acquire retries for retry.outageMs and then fails typed', async () => {
    const own = await startZooKeeper();
    const outageMs = 2_000;
    try {
      const provider = providers.open({ connectString: own.connectString, retry: { outageMs } });
      const lease = await provider.acquire('outage');
      await own.stop();
      await until(() => lease.signal.aborted, 1_000, 'the lease aborted');
      // The session is lost with the connection ('abort'): its node goes with it, nothing to send.
      const release = await outcomeWithin(lease.release());
      expect(release.error).toBeUndefined();
      expect(release.elapsedMs).toBeLessThan(1_500);
      const next = await outcomeWithin(provider.acquire('outage', { waitMs: 60_000 }));
      expect(next.error).toBeInstanceOf(BackendUnavailableError);
      expect((next.error as BackendUnavailableError).tries).toBeGreaterThan(1);
      expect((next.error as Error).message).toMatch(/gave up after \d+ tries/);
      // The documented bound: the first failure (one connect timeout), outageMs of retries, the try in
      // flight when it ran out (another connect timeout) and one back-off (retry.maxDelayMs, 1 s).
      expect(next.elapsedMs).toBeGreaterThanOrEqual(outageMs);
      expect(next.elapsedMs).toBeLessThan(outageMs + 2 * 1_000 + 1_000 + 1_500);
    } finally {
      await own.stop();
    }
  });
});

describe('digest auth and ACLs', () => {
  it('pass through: nodes carry the ACL, and a client without the credentials is refused', async () => {
    const digest = createHash('sha1').update('alice:secret').digest('base64');
    const root = '/dlock-acl';
    const alice: LockProvider = providers.open({
      root,
      auth: [{ scheme: 'digest', auth: 'alice:secret' }],
      acl: [{ scheme: 'digest', id: `alice:${digest}`, perms: 31 }],
    });
    const stranger = providers.open({ root });
    const lease = await alice.acquire('guarded');
    expect((await alice.holder('guarded'))?.token).toBe(lease.token);
    const refused = await outcomeWithin(stranger.tryAcquire('guarded'));
    expect(refused.error).toBeInstanceOf(BackendUnavailableError);
    expect((refused.error as Error).message).toMatch(/NO_AUTH/);
    await lease.release();
  });
});
