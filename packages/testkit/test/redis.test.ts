import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ServerStartError, startRedis, startRedisNodes, stopAll } from '../src/index.js';
import { RedisReplyError } from '../src/resp.js';
import { redis, refusesConnections } from './probes.js';

afterAll(stopAll);

describe('startRedis', () => {
  it('serves PING on loopback, refuses connections once killed, and restarts empty without persistence', async () => {
    const server = await startRedis();
    expect(server.host).toBe('127.0.0.1');
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);
    expect(await redis(server.port, ['PING'])).toBe('PONG');
    expect(await redis(server.port, ['SET', 'fencing', '41'])).toBe('OK');

    await server.kill();
    expect(server.running).toBe(false);
    expect(await refusesConnections(server.port)).toBe(true);

    const pidBefore = server.pid;
    await server.restart();
    expect(server.pid).not.toBe(pidBefore);
    expect(await redis(server.port, ['PING'])).toBe('PONG');
    expect(await redis(server.port, ['GET', 'fencing'])).toBeNull();
  });

  it('keeps acknowledged writes across a SIGKILL when persistence is on', async () => {
    const server = await startRedis({ persistence: true });
    await redis(server.port, ['SET', 'fencing', '42']);
    await server.kill();
    await server.restart();
    expect(await redis(server.port, ['GET', 'fencing'])).toBe('42');
  });

  it('requires the password when one is set, and puts it in the url', async () => {
    const server = await startRedis({ password: 's3cret/pw' });
    expect(server.url).toBe(`redis://:s3cret%2Fpw@127.0.0.1:${server.port}`);
    expect(await redis(server.port, ['PING'])).toBeInstanceOf(RedisReplyError);
  });

  it('stops answering while paused and answers again once resumed', async () => {
    const server = await startRedis();
    server.pause();
    await expect(redis(server.port, ['PING'], 300)).rejects.toThrow(/within 300 ms/);
    expect(server.running).toBe(true);
    server.resume();
    expect(await redis(server.port, ['PING'])).toBe('PONG');
  });

  it('fails fast with the server log when redis rejects its configuration', async () => {
    const failure = startRedis({ extraArgs: ['--no-such-directive', 'yes'] });
    await expect(failure).rejects.toThrow(ServerStartError);
    await expect(failure).rejects.toThrow(/no-such-directive/);
  });
});

describe('startRedisNodes', () => {
  it('starts independent nodes and removes them all on stop', async () => {
    const cluster = await startRedisNodes(3);
    expect(new Set(cluster.urls).size).toBe(3);
    await redis(cluster.nodes[0]!.port, ['SET', 'only-here', '1']);
    for (const node of cluster.nodes) expect(await redis(node.port, ['PING'])).toBe('PONG');
    expect(await redis(cluster.nodes[1]!.port, ['GET', 'only-here'])).toBeNull();

    await cluster.stop();
    for (const node of cluster.nodes) {
      expect(node.running).toBe(false);
      expect(existsSync(node.dataDir)).toBe(false);
    }
  });
});
