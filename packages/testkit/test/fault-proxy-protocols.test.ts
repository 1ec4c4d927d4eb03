import { Etcd3, GRPCUnavailableError, type IOptions, type Watcher } from 'etcd3';
import zookeeper from 'node-zookeeper-client';
import { afterAll, describe, expect, it } from 'vitest';
import { startEtcd, startFaultProxy, startZooKeeper, stopAll } from '../src/index.js';
import { pollUntil } from '../src/wait.js';

// One smoke test per server kind: the proxy carries the protocol byte for byte, and its faults reach
// the real client library. Redis has a test per fault in fault-proxy.test.ts.

/** Generous upper bound for a client to notice a fault or recover from it, on a busy 2-core machine. */
const PROMPTLY_MS = 15_000;

afterAll(stopAll);

function once<T>(
  emitter: { once(event: string, listener: (value: T) => void): unknown },
  event: string,
): Promise<T> {
  return new Promise((resolve) => emitter.once(event, resolve));
}

describe('etcd (gRPC over HTTP/2) through the fault proxy', () => {
  type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
  // etcd3's default policies retry and open a circuit breaker; the test wants each call's own outcome.
  const noRetries = {
    execute: async (fn: (context: { signal: AbortSignal }) => unknown) =>
      fn({ signal: new AbortController().signal }),
  } as unknown as FaultPolicy;

  it('puts and gets through the proxy; a watch sees the reset and resumes; calls fail during an outage', async () => {
    const server = await startEtcd();
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: server.port } });
    const client = new Etcd3({
      hosts: proxy.url('http'),
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + 5_000 }),
      faultHandling: { host: () => noRetries, global: noRetries },
    });
    try {
      await client.put('proxied').value('v1');
      expect(await client.get('proxied').string()).toBe('v1');
      const watcher: Watcher = await client.watch().key('proxied').create();
      watcher.on('error', () => {
        // A broken stream is reported through 'disconnected', which this test awaits.
      });

      const disconnected = once(watcher, 'disconnected');
      const reconnected = disconnected.then(() => once(watcher, 'connected'));
      proxy.reset();
      await disconnected;
      await reconnected;
      const put = once<{ value: Buffer }>(watcher, 'put');
      await client.put('proxied').value('v2');
      expect((await put).value.toString()).toBe('v2');

      proxy.outage(2_000);
      const duringOutage = await client
        .get('proxied')
        .string()
        .catch((error: unknown) => error);
      expect(duringOutage).toBeInstanceOf(GRPCUnavailableError);
      await proxy.whenListening();
      const value = await pollUntil(
        'etcd to answer through the proxy again',
        () => client.get('proxied').string(),
        {
          timeoutMs: PROMPTLY_MS,
          intervalMs: 100,
        },
      );
      expect(value).toBe('v2');
      await watcher.cancel();
    } finally {
      client.close();
    }
  });
});

describe('ZooKeeper through the fault proxy', () => {
  it('creates and reads a node through the proxy; an outage shorter than the session disconnects without losing it', async () => {
    const server = await startZooKeeper();
    const proxy = await startFaultProxy({ target: server.connectString });
    const client = zookeeper.createClient(proxy.address, {
      sessionTimeout: 10_000,
      spinDelay: 100,
      retries: 0,
    });
    const call = <T>(
      fn: (callback: (error: Error | zookeeper.Exception | null, result: T) => void) => void,
    ) =>
      new Promise<T>((resolve, reject) => fn((error, result) => (error ? reject(error) : resolve(result))));
    try {
      const connected = once(client, 'connected');
      client.connect();
      await connected;
      const sessionId = client.getSessionId().toString('hex');
      await call<string>((done) => client.create('/proxied', Buffer.from('v1'), done));
      const data = await call<Buffer>((done) => client.getData('/proxied', done));
      expect(data.toString()).toBe('v1');

      const disconnected = once(client, 'disconnected');
      const reconnected = disconnected.then(() => once(client, 'connected'));
      proxy.outage(1_000);
      await disconnected;
      expect(proxy.listening).toBe(false);
      await reconnected;

      expect(client.getSessionId().toString('hex')).toBe(sessionId);
      await call<zookeeper.Stat>((done) => client.setData('/proxied', Buffer.from('v2'), -1, done));
      expect((await call<Buffer>((done) => client.getData('/proxied', done))).toString()).toBe('v2');
    } finally {
      client.close();
    }
  });
});
