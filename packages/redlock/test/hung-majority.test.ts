import { BackendUnavailableError, type LockProvider } from '@dlock/core';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import { closeRawClients, connected, noResidueWithin, rawClients } from './support.js';

/**
 * Issue 12 #8: three nodes, two of them hung (SIGSTOP), the default 2000 ms command timeout. Before,
 * `acquire(k, { waitMs: 1000 })` rejected after 4006 ms: the `redlock` library waited for its own
 * clean-up of the half-taken lock against the hung nodes before it threw. Now the attempt ends at its
 * votes, the clean-up runs in core's background retries, and the caller is answered within about
 * waitMs + one command timeout (the provider's settleGraceMs defaults to the command timeout).
 */
const COMMAND_TIMEOUT_MS = 2_000;
/** Slack for a shared, busy machine. */
const MARGIN_MS = 1_000;

let cluster: RedisNodes;
let operator: Redis[];
const providers: LockProvider[] = [];
let keyCounter = 0;
const freshKey = (label: string) => `hung-${label}-${process.pid}-${keyCounter++}`;

async function open(): Promise<LockProvider> {
  const provider = createRedlockProvider({ urls: cluster.urls });
  providers.push(provider);
  // Connected and answered once, as a provider in service is.
  await connected(provider);
  return provider;
}

async function timed<T>(work: Promise<T>): Promise<{ error: unknown; elapsedMs: number }> {
  const started = performance.now();
  try {
    await work;
    return { error: undefined, elapsedMs: performance.now() - started };
  } catch (error) {
    return { error, elapsedMs: performance.now() - started };
  }
}

beforeAll(async () => {
  cluster = await startRedisNodes(3);
  operator = rawClients(cluster.urls);
});

afterEach(async () => {
  for (const node of cluster.nodes) node.resume();
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
});

afterAll(async () => {
  await closeRawClients(operator);
  await cluster.stop();
});

describe('a hung majority (issue 12 #8): the caller is answered within its bound, the clean-up runs in the background', () => {
  it.each([
    ['acquire({ waitMs: 1000 })', 1_000],
    ['tryAcquire', 0],
  ] as const)(
    '%s rejects within waitMs + one command timeout; nothing is left once the nodes resume',
    async (_label, waitMs) => {
      const key = freshKey(waitMs ? 'acquire' : 'try');
      const provider = await open();
      cluster.nodes[1]!.pause();
      cluster.nodes[2]!.pause();

      const { error, elapsedMs } = await timed(
        waitMs
          ? provider.acquire(key, { ttlMs: 30_000, waitMs })
          : provider.tryAcquire(key, { ttlMs: 30_000 }),
      );
      console.log(`[redlock] hung majority: ${_label} rejected after ${Math.round(elapsedMs)} ms`);
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect((error as Error).message).toContain(`no reply within commandTimeoutMs=${COMMAND_TIMEOUT_MS}`);
      expect(elapsedMs).toBeLessThan(waitMs + COMMAND_TIMEOUT_MS + MARGIN_MS);

      // The paused nodes apply the queued claim when they resume, then core's background withdrawal.
      for (const node of cluster.nodes) node.resume();
      const gone = await noResidueWithin(operator, key, 5_000);
      expect(gone).toBe(true);
    },
  );
});
