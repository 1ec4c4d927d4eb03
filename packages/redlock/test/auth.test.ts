import { BackendUnavailableError, type LockProvider } from '@dlock/core';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedlockProvider } from '../src/index.js';

/**
 * A failure that repeats until someone changes something is not retried (issue 11: non-transient
 * errors): nodes that reject the password fail the acquire at once, whatever its waitMs, and the error
 * says so (`transient: false`) with the server's own words.
 */
let cluster: RedisNodes;
const providers: LockProvider[] = [];

beforeAll(async () => {
  cluster = await startRedisNodes(3, { password: 'right-password' });
});

afterAll(async () => {
  await Promise.allSettled(providers.map((provider) => provider.close()));
  await cluster.stop();
});

describe('nodes that reject the credentials', () => {
  it.each([
    ['a wrong password', (port: number) => `redis://:wrong-password@127.0.0.1:${port}`, /WRONGPASS/],
    ['no password', (port: number) => `redis://127.0.0.1:${port}`, /NOAUTH/],
  ] as const)(
    '%s: acquire fails at once with a non-transient BackendUnavailableError quoting the server',
    async (_label, url, reason) => {
      const provider = createRedlockProvider({
        urls: cluster.nodes.map((node) => url(node.port)),
        connectTimeoutMs: 2_000,
      });
      providers.push(provider);
      const started = performance.now();
      const error = await provider.acquire('auth-key', { waitMs: 10_000 }).catch((caught: unknown) => caught);
      expect(performance.now() - started).toBeLessThan(2_000);
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect((error as BackendUnavailableError).transient).toBe(false);
      expect((error as Error).message).toMatch(reason);
      expect((error as Error).message).not.toContain('right-password');
    },
  );
});
