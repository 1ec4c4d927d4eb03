import { createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  FaultCancelledError,
  type FaultProxy,
  FaultProxyClosedError,
  InvalidArgumentError,
  ProxyRebindError,
  type RedisServer,
  startFaultProxy,
  startRedis,
  stopAll,
} from '../src/index.js';
import { pollUntil, sleep } from '../src/wait.js';
import { redis, refusesConnections } from './probes.js';
import { type WireClient, wireClient } from './wire.js';

/** Generous upper bound for anything that should be prompt, on a busy 2-core machine. */
const PROMPTLY_MS = 5_000;
/** How long "nothing happens" is watched for. */
const QUIET_MS = 400;

let server: RedisServer;
const clients: Redis[] = [];

beforeAll(async () => {
  server = await startRedis();
});
afterEach(() => {
  for (const client of clients.splice(0)) client.disconnect();
});
afterAll(stopAll);

/** An ioredis client through the proxy that fails fast instead of queueing, as a lock client would. */
async function redisThrough(proxy: FaultProxy, options: RedisOptions = {}): Promise<Redis> {
  const client = new Redis(proxy.url('redis'), {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    lazyConnect: true,
    ...options,
  });
  client.on('error', () => {
    // Connection errors are what these tests provoke; assertions read them from command results.
  });
  clients.push(client);
  await client.connect();
  return client;
}

function proxyToRedis(): Promise<FaultProxy> {
  return startFaultProxy({ target: { host: '127.0.0.1', port: server.port } });
}

/** A bare RESP client through the proxy whose PING was answered. */
async function pingedWire(port: number): Promise<WireClient> {
  const client = wireClient(port);
  client.send('PING');
  await client.waitFor('+PONG');
  return client;
}

function elapsedSince(start: number): number {
  return performance.now() - start;
}

describe('startFaultProxy', () => {
  it('rejects a non-loopback or malformed target with an InvalidArgumentError naming the field', async () => {
    const cases: [unknown, string][] = [
      [{ host: '192.0.2.10', port: 6379 }, 'target.host'],
      [{ host: 'redis.internal', port: 6379 }, 'target.host'],
      ['192.0.2.10:6379', 'target'],
      ['127.0.0.1', 'target'],
      [{ host: '127.0.0.1', port: 0 }, 'target.port'],
      [{ host: '127.0.0.1', port: 1.5 }, 'target.port'],
      [undefined, 'target'],
    ];
    for (const [target, field] of cases) {
      const error = await startFaultProxy({ target: target as string }).catch((caught: unknown) => caught);
      expect(error, JSON.stringify(target)).toBeInstanceOf(InvalidArgumentError);
      expect(error).toMatchObject({ field, value: field === 'target' ? target : expect.anything() });
      expect((error as Error).message).toContain(field);
    }
    const error = await startFaultProxy({ target: '192.0.2.10:6379' }).catch((caught: unknown) => caught);
    expect((error as Error).message).toMatch(/loopback/);
  });

  it('accepts loopback targets in either form and validates every fault argument', async () => {
    const local = await startFaultProxy({ target: `localhost:${server.port}` });
    expect(local.target).toEqual({ host: '127.0.0.1', port: server.port });
    expect((await startFaultProxy({ target: '[::1]:6379' })).target).toEqual({ host: '::1', port: 6379 });
    expect(local.address).toBe(`127.0.0.1:${local.port}`);
    expect(local.url('redis')).toBe(`redis://127.0.0.1:${local.port}`);

    const invalid: [() => unknown, string][] = [
      [() => local.delay(-1, 'both'), 'ms'],
      [() => local.delay(10, 'sideways' as 'both'), 'direction'],
      [() => local.refuseConnections(Number.NaN), 'ms'],
      [() => local.outage(Number.POSITIVE_INFINITY), 'ms'],
      [() => local.dropNextReply({ thenReset: 'yes' as unknown as boolean }), 'options.thenReset'],
      [() => local.url('re dis'), 'scheme'],
    ];
    for (const [call, field] of invalid) {
      expect(call).toThrow(InvalidArgumentError);
      expect(call).toThrow(new RegExp(`^${field} must be`));
    }
    await expect(startFaultProxy({ target: local.address, rebindTimeoutMs: -5 })).rejects.toMatchObject({
      field: 'rebindTimeoutMs',
    });
  });

  it('passes redis traffic through unchanged and counts open client connections', async () => {
    const proxy = await proxyToRedis();
    expect(proxy.host).toBe('127.0.0.1');
    expect(proxy.connections).toBe(0);
    const client = await redisThrough(proxy);
    const big = 'x'.repeat(256 * 1024);
    expect(await client.set('through-proxy', big)).toBe('OK');
    expect(await client.get('through-proxy')).toBe(big);
    expect(await redis(server.port, ['STRLEN', 'through-proxy'])).toBe(big.length);
    expect(proxy.connections).toBe(1);

    await client.quit();
    await pollUntil('the connection to close', async () => (proxy.connections === 0 ? true : undefined), {
      timeoutMs: PROMPTLY_MS,
      intervalMs: 10,
    });
  });
});

describe('reset', () => {
  it('sends every open connection an RST at once, and still accepts new connections', async () => {
    const proxy = await proxyToRedis();
    const [first, second] = await Promise.all([pingedWire(proxy.port), pingedWire(proxy.port)]);
    expect(proxy.connections).toBe(2);

    proxy.reset();

    expect(proxy.connections).toBe(0);
    expect(await first.ended).toBe('ECONNRESET');
    expect(await second.ended).toBe('ECONNRESET');
    const client = await redisThrough(proxy);
    expect(await client.ping()).toBe('PONG');
  });
});

describe('dropNextReply', () => {
  it('the server applied the write, the client never saw the reply and its connection was reset', async () => {
    const proxy = await proxyToRedis();
    const client = wireClient(proxy.port);
    await client.connected;
    const dropped = proxy.dropNextReply();

    client.send('INCR', 'drop:applied');

    await dropped;
    expect(await client.ended).toBe('ECONNRESET');
    expect(client.received()).toBe('');
    expect(await redis(server.port, ['GET', 'drop:applied'])).toBe('1');
  });

  it('an ioredis command whose reply was lost fails, although the server applied it', async () => {
    const proxy = await proxyToRedis();
    const client = await redisThrough(proxy, { retryStrategy: () => null });
    const dropped = proxy.dropNextReply();

    await expect(client.incr('drop:ioredis')).rejects.toThrow(/Connection is closed/);
    await dropped;
    expect(await redis(server.port, ['GET', 'drop:ioredis'])).toBe('1');
  });

  it('with thenReset: false, the connection stays open and the client waits in vain until heal', async () => {
    const proxy = await proxyToRedis();
    const client = wireClient(proxy.port);
    await client.connected;
    const dropped = proxy.dropNextReply({ thenReset: false });

    client.send('INCR', 'drop:silent');
    await dropped;
    client.send('PING');
    await sleep(QUIET_MS);

    expect(client.received()).toBe('');
    expect(client.endedWith).toBeUndefined();
    expect(await redis(server.port, ['GET', 'drop:silent'])).toBe('1');
    proxy.heal();
    client.send('ECHO', 'after-heal');
    await client.waitFor('after-heal');
    // The PING's reply was swallowed with the rest: nothing sent before heal() comes back.
    expect(client.received()).not.toContain('PONG');
  });

  it('arms one drop per call, and heal cancels the drops still pending with FaultCancelledError', async () => {
    const proxy = await proxyToRedis();
    const first = proxy.dropNextReply();
    const second = proxy.dropNextReply();
    const a = wireClient(proxy.port);
    a.send('INCR', 'drop:twice');
    await first;
    expect(await a.ended).toBe('ECONNRESET');

    proxy.heal();

    await expect(second).rejects.toBeInstanceOf(FaultCancelledError);
    const b = wireClient(proxy.port);
    b.send('INCR', 'drop:twice');
    await b.waitFor(':2');
    // Cancelled and never awaited: must not surface as an unhandled rejection.
    proxy.dropNextReply();
    proxy.heal();
  });
});

describe('refuseConnections', () => {
  it('refuses connects for the window and accepts them afterwards on the same port; open connections are untouched', async () => {
    const proxy = await proxyToRedis();
    const open = await redisThrough(proxy);
    const port = proxy.port;
    const windowMs = 1_000;
    const start = performance.now();

    proxy.refuseConnections(windowMs);

    expect(proxy.listening).toBe(false);
    expect(await refusesConnections(port)).toBe(true);
    expect(await open.ping()).toBe('PONG');
    expect(proxy.connections).toBe(1);
    await proxy.whenListening();
    expect(elapsedSince(start)).toBeGreaterThanOrEqual(windowMs - 5);
    expect(elapsedSince(start)).toBeLessThan(windowMs + PROMPTLY_MS);
    expect(proxy.port).toBe(port);
    expect(await refusesConnections(port)).toBe(false);
    expect(await (await redisThrough(proxy)).ping()).toBe('PONG');
  });

  it('retries the rebind while another socket holds the port, and listens once it is free', async () => {
    const proxy = await proxyToRedis();
    proxy.refuseConnections(100);
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: proxy.port }, resolve));

    await sleep(QUIET_MS);
    expect(proxy.listening).toBe(false);
    await new Promise((resolve) => squatter.close(resolve));

    await proxy.whenListening();
    expect(await (await redisThrough(proxy)).ping()).toBe('PONG');
  });

  it('rejects whenListening with ProxyRebindError past rebindTimeoutMs, and heal tries again', async () => {
    const proxy = await startFaultProxy({
      target: { host: '127.0.0.1', port: server.port },
      rebindTimeoutMs: 300,
    });
    proxy.refuseConnections(50);
    const squatter = createServer();
    await new Promise<void>((resolve) => squatter.listen({ host: '127.0.0.1', port: proxy.port }, resolve));

    await expect(proxy.whenListening()).rejects.toBeInstanceOf(ProxyRebindError);
    await expect(proxy.whenListening()).rejects.toThrow(/EADDRINUSE/);
    await new Promise((resolve) => squatter.close(resolve));
    proxy.heal();

    await proxy.whenListening();
    expect(await (await redisThrough(proxy)).ping()).toBe('PONG');
  });
});

describe('outage', () => {
  it('resets open connections and refuses reconnects for the window; the client then reconnects by itself', async () => {
    const proxy = await proxyToRedis();
    const client = await redisThrough(proxy, { retryStrategy: () => 50 });
    const errors: string[] = [];
    client.on('error', (error: NodeJS.ErrnoException) => errors.push(error.code ?? error.message));
    const windowMs = 1_000;
    const start = performance.now();

    proxy.outage(windowMs);

    await new Promise((resolve) => client.once('ready', resolve));
    expect(elapsedSince(start)).toBeGreaterThanOrEqual(windowMs - 5);
    expect(elapsedSince(start)).toBeLessThan(windowMs + PROMPTLY_MS);
    expect(errors).toContain('ECONNRESET');
    expect(errors).toContain('ECONNREFUSED');
    expect(await client.ping()).toBe('PONG');
  });
});

describe('blackhole', () => {
  it('forwards no bytes either way and sends no RST until heal; heal delivers what was held', async () => {
    const proxy = await proxyToRedis();
    const before = await pingedWire(proxy.port);

    proxy.blackhole();
    before.send('SET', 'blackhole:held', 'yes');
    const during = wireClient(proxy.port);
    await during.connected;
    during.send('ECHO', 'accepted-in-the-dark');
    await sleep(QUIET_MS);

    expect(before.received()).toBe('+PONG\r\n');
    expect(during.received()).toBe('');
    expect(before.endedWith).toBeUndefined();
    expect(during.endedWith).toBeUndefined();
    expect(await redis(server.port, ['GET', 'blackhole:held'])).toBeNull();
    expect(proxy.connections).toBe(2);

    proxy.heal();

    await before.waitFor('+OK');
    await during.waitFor('accepted-in-the-dark');
    expect(await redis(server.port, ['GET', 'blackhole:held'])).toBe('yes');
  });
});

describe('delay', () => {
  it('downstream: replies arrive no earlier than the delay, in order', async () => {
    const proxy = await proxyToRedis();
    const client = await redisThrough(proxy);
    const delayMs = 300;
    proxy.delay(delayMs, 'downstream');
    const start = performance.now();

    const replies = await client
      .pipeline()
      .incr('delay:order')
      .incr('delay:order')
      .incr('delay:order')
      .exec();

    expect(elapsedSince(start)).toBeGreaterThanOrEqual(delayMs - 5);
    expect(replies?.map(([, value]) => value)).toEqual([1, 2, 3]);
  });

  it('upstream: the server sees the request no earlier than the delay', async () => {
    const proxy = await proxyToRedis();
    const client = await redisThrough(proxy);
    const delayMs = 1_000;
    proxy.delay(delayMs, 'upstream');
    const start = performance.now();

    const set = client.set('delay:upstream', 'arrived');
    expect(await redis(server.port, ['GET', 'delay:upstream'])).toBeNull();

    expect(await set).toBe('OK');
    expect(elapsedSince(start)).toBeGreaterThanOrEqual(delayMs - 5);
  });

  it('both: a round trip takes at least twice the delay; heal releases held bytes at once', async () => {
    const proxy = await proxyToRedis();
    const client = await redisThrough(proxy);
    proxy.delay(250, 'both');
    let start = performance.now();
    expect(await client.ping()).toBe('PONG');
    expect(elapsedSince(start)).toBeGreaterThanOrEqual(2 * 250 - 5);

    proxy.delay(60_000, 'downstream');
    start = performance.now();
    const ping = client.ping();
    await sleep(100);
    proxy.heal();
    expect(await ping).toBe('PONG');
    expect(elapsedSince(start)).toBeLessThan(30_000);
  });
});

describe('a target that is down', () => {
  it('shows up to the client as a reset connection, and the proxy carries on once it is back', async () => {
    const target = await startRedis();
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: target.port } });
    await target.kill();

    const client = wireClient(proxy.port);
    await client.connected;
    expect(await client.ended).toBe('ECONNRESET');
    expect(proxy.connections).toBe(0);

    await target.restart();
    const again = await pingedWire(proxy.port);
  });
});

describe('close and stopAll', () => {
  it('close() frees the port, cancels pending drops and makes every fault throw FaultProxyClosedError', async () => {
    const proxy = await proxyToRedis();
    const client = await pingedWire(proxy.port);
    const pending = proxy.dropNextReply();
    proxy.delay(60_000, 'both');
    proxy.refuseConnections(60_000);

    await proxy.close();

    await expect(pending).rejects.toBeInstanceOf(FaultProxyClosedError);
    await expect(proxy.whenListening()).rejects.toBeInstanceOf(FaultProxyClosedError);
    expect(await client.ended).toBeDefined();
    expect(await refusesConnections(proxy.port)).toBe(true);
    expect(() => proxy.reset()).toThrow(FaultProxyClosedError);
    expect(() => proxy.blackhole()).toThrow(FaultProxyClosedError);
    expect(() => proxy.heal()).toThrow(FaultProxyClosedError);
    await proxy.close();
  });

  it('stopAll() closes every proxy it did not close yet', async () => {
    const proxy = await proxyToRedis();
    const client = wireClient(proxy.port);
    await client.connected;

    await stopAll();

    expect(await refusesConnections(proxy.port)).toBe(true);
    expect(await client.ended).toBeDefined();
    expect(() => proxy.outage(10)).toThrow(FaultProxyClosedError);
  });
});
