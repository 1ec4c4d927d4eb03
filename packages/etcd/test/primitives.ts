import { join } from 'node:path';
import { type AcquireOptions, type Lease, LockError } from '@dlock/core';
import {
  type EtcdServer,
  type FaultProxy,
  type NodeProcess,
  startEtcd,
  startFaultProxy,
  startNodeProcess,
} from '@dlock/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdLockProvider, EtcdProviderOptions } from '../src/index.js';
import { RawEtcd, openProvider, settle, sleep, within } from './etcd.js';

/*
 * What the semaphore and read-write tests share: one etcd per file, providers, fault proxies and
 * child processes closed after each test, etcd's own metrics, and the checks that every primitive
 * must pass at the edges (paused holders, waiters that leave, lost replies).
 */

/**
 * etcd's Prometheus metrics, served on its client URL: what the server actually received and keeps,
 * for tests that count requests (no herd) and watches (none left behind).
 */
export async function etcdMetric(
  endpoint: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(([, key, value]) => [key, value]),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) total += Number(match[3]);
  }
  return total;
}

/** Txn requests the server has started to handle (every enqueue, touch, release and withdraw is one). */
export const txnsStarted = (endpoint: string) =>
  etcdMetric(endpoint, 'grpc_server_started_total', { grpc_method: 'Txn' });

/** Watches registered at the server, on every stream. */
export const serverWatchers = (endpoint: string) => etcdMetric(endpoint, 'etcd_debugging_mvcc_watcher_total');

const holderFixture = join(import.meta.dirname, 'fixtures', 'holder.mjs');

/** One etcd for the test file, and everything a test opens, closed after it. */
export interface Harness {
  readonly server: EtcdServer;
  readonly raw: RawEtcd;
  /** A new provider on the server (session ttl 2 s unless `options` say otherwise). */
  open(options?: Partial<EtcdProviderOptions>): EtcdLockProvider;
  /**
   * A provider whose every connection goes through a new fault proxy, in service: it has reached
   * etcd, holds a session and has used `warmUp`'s primitive once, and its connection is quiet, so the
   * next request on it is the one under test.
   */
  proxied(
    options: Partial<EtcdProviderOptions>,
    warmUp: (provider: EtcdLockProvider) => Promise<Lease>,
  ): Promise<{ provider: EtcdLockProvider; proxy: FaultProxy }>;
  /** test/fixtures/holder.mjs holding `kind` of `name` in a process of its own (session ttl 2 s). */
  holderProcess(name: string, kind: string): NodeProcess;
}

export function etcdHarness(): Harness {
  let server: EtcdServer | undefined;
  let raw: RawEtcd | undefined;
  const providers: EtcdLockProvider[] = [];
  const proxies: FaultProxy[] = [];
  const children: NodeProcess[] = [];
  const started = () => {
    if (!server || !raw) throw new Error('etcd is not started yet (use the harness inside tests)');
    return { server, raw };
  };

  beforeAll(async () => {
    server = await startEtcd();
    raw = new RawEtcd(server.endpoint);
  });
  afterEach(async () => {
    await Promise.all(children.splice(0).map((child) => child.kill()));
    for (const proxy of proxies) proxy.heal();
    await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
    await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  });
  afterAll(async () => {
    raw?.close();
    await server?.stop();
  });

  const harness: Harness = {
    get server() {
      return started().server;
    },
    get raw() {
      return started().raw;
    },
    open(options = {}) {
      const provider = openProvider(started().server.endpoint, options);
      providers.push(provider);
      return provider;
    },
    async proxied(options, warmUp) {
      const { host, port } = started().server;
      const proxy = await startFaultProxy({ target: { host, port } });
      proxies.push(proxy);
      const provider = openProvider(proxy.url('http'), {
        sessionTtlSec: 10,
        callTimeoutMs: 1_000,
        ...options,
      });
      providers.push(provider);
      await (await warmUp(provider)).release();
      await sleep(100);
      return { provider, proxy };
    },
    holderProcess(name, kind) {
      const child = startNodeProcess(holderFixture, [started().server.endpoint, name, '2', kind]);
      children.push(child);
      return child;
    },
  };
  return harness;
}

/** One primitive, as the shared edge checks drive it (providers opened with default namespaces). */
export interface PrimitiveUnderTest {
  /** What it is called in test titles ("permit", "write lease"). */
  readonly lease: string;
  /** holder.mjs's argument for a holder that blocks `contend`. */
  readonly fixtureKind: string;
  /** Takes a lease of `name` that blocks `contend`. */
  hold(provider: EtcdLockProvider, name: string): Promise<Lease>;
  /** A request that `hold` blocks. */
  contend(provider: EtcdLockProvider, name: string, options: AcquireOptions): Promise<Lease>;
  /** The tokens of the current holders of `name`. */
  holderTokens(provider: EtcdLockProvider, name: string): Promise<bigint[]>;
  /** Every etcd key of `name`. */
  keysOf(raw: RawEtcd, name: string): Promise<string[]>;
}

/** Waiters that must be woken by a push: the fallback re-check comes far too late to pass for one. */
export const PUSHED_WAITER = { fallbackRecheckMs: 60_000, sessionTtlSec: 6 };

/** The edge checks every etcd primitive passes: a paused holder, waiters that leave, lost replies. */
export function describeWaiterEdges(harness: Harness, primitive: PrimitiveUnderTest): void {
  let counter = 0;
  const freshName = (label: string) => `edge-${primitive.fixtureKind}-${label}-${process.pid}-${counter++}`;
  const keysOf = (name: string) => primitive.keysOf(harness.raw, name);
  const proxied = () => harness.proxied({}, (provider) => primitive.hold(provider, freshName('warm-up')));

  describe(`${primitive.lease}: holders paused, waiters that leave, lost replies`, () => {
    it(`a ${primitive.lease} holder stopped (SIGSTOP) past its session ttl: the next one gets in, its signal aborts on resuming`, async () => {
      const name = freshName('sigstop');
      const child = harness.holderProcess(name, primitive.fixtureKind);
      const stoppedToken = BigInt((await child.waitForLine(/^acquired \d+$/, 15_000)).split(' ')[1] ?? '0');
      const waiter = harness.open(PUSHED_WAITER);
      const waiting = settle(primitive.contend(waiter, name, { waitMs: 30_000 }));
      await sleep(200);
      child.pause();
      const next = (await waiting).value as Lease;
      expect(next.token > stoppedToken).toBe(true);

      child.resume();
      expect(await child.waitForLine(/^lost /, 5_000)).toMatch(/session lease|keepalive/);
      // The stopped holder's release after resuming cannot touch the new holder's lease.
      child.send('release');
      await child.waitForLine(/^released$/, 5_000);
      expect(await primitive.holderTokens(waiter, name)).toEqual([next.token]);
      await next.release();
    });

    it('a waiter that times out or aborts leaves no key and no watch behind', async () => {
      const name = freshName('bounded');
      const held = await primitive.hold(harness.open(), name);
      const watchersBefore = await serverWatchers(harness.server.endpoint);
      const provider = harness.open();
      const controller = new AbortController();
      // Long enough that all four are seen queued together even on a busy machine (with 300 ms, the
      // first ones could give up before the last one had enqueued, and the test waited for nothing).
      const timedOut = [1, 2, 3].map(() => settle(primitive.contend(provider, name, { waitMs: 3_000 })));
      const aborted = settle(primitive.contend(provider, name, { signal: controller.signal }));
      await within('the waiters are queued', 2_500, async () => (await keysOf(name)).length === 5);
      controller.abort(new Error('caller gave up'));
      for (const { error } of await Promise.all([...timedOut, aborted])) expect(error).toBeInstanceOf(Error);
      expect(await keysOf(name)).toHaveLength(1);
      await within(
        'no watch is left',
        5_000,
        async () => (await serverWatchers(harness.server.endpoint)) === watchersBefore,
      );
      await held.release();
    });

    it('an enqueue whose reply is lost is adopted: the waiter keeps its one key and its place', async () => {
      const name = freshName('adopt');
      const held = await primitive.hold(harness.open(), name);
      const { provider, proxy } = await proxied();
      const dropped = proxy.dropNextReply();
      const adopted = settle(primitive.contend(provider, name, { waitMs: 20_000 }));
      await dropped;
      await within('the lost enqueue is in the queue', 2_000, async () => (await keysOf(name)).length === 2);
      const later = settle(primitive.contend(harness.open(), name, { waitMs: 20_000 }));
      await within('the later waiter is queued', 2_000, async () => (await keysOf(name)).length === 3);
      await sleep(500);
      // One key per request: the re-attempt adopted the key its lost enqueue created.
      expect(await keysOf(name)).toHaveLength(3);

      await held.release();
      const lease = (await adopted).value as Lease;
      expect(lease.token > held.token).toBe(true);
      await lease.release();
      const next = (await later).value as Lease;
      expect(next.token > lease.token).toBe(true);
      await next.release();
      expect(await keysOf(name)).toEqual([]);
    });

    it('a request that gives up after its reply was lost deletes its key', async () => {
      const name = freshName('undo');
      const held = await primitive.hold(harness.open(), name);
      const { provider, proxy } = await proxied();
      const dropped = proxy.dropNextReply();
      const gaveUp = settle(primitive.contend(provider, name, { waitMs: 300 }));
      await dropped;
      expect((await gaveUp).error).toBeInstanceOf(LockError);
      await within('the given-up key is gone', 5_000, async () => (await keysOf(name)).length === 1);
      await held.release();
    });
  });
}
