import { eventually } from '@dlock/conformance';
import { BackendUnavailableError, LockTimeoutError } from '@dlock/core';
import { type RedisNodes, startRedisNodes } from '@dlock/testkit';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedlockProvider } from '../src/index.js';
import { closeRawClients, connected, listenersOn, rawClients, recordingClients, sleep } from './support.js';

/**
 * Issue 12 #6 (the measurement, for RedLock; the shared soak helper comes later): waiters that time
 * out must not leave subscriptions on the nodes or listeners on the clients. 2000 acquires with
 * waitMs 10 against a held key, 20 at a time, bounded to 60 s.
 */
const ACQUIRES = 2_000;
const AT_ONCE = 20;
const TIME_BUDGET_MS = 60_000;

let cluster: RedisNodes;
let operator: Redis[];

beforeAll(async () => {
  cluster = await startRedisNodes(3);
  operator = rawClients(cluster.urls);
});

afterAll(async () => {
  await closeRawClients(operator);
  await cluster.stop();
});

describe('timed-out waiters leave nothing behind (issue 12 #6)', () => {
  it(`${ACQUIRES} acquires with waitMs 10 against a held key: subscriptions, listeners and handles return to baseline`, async () => {
    const key = `churn-${process.pid}`;
    const channel = `${key}:released`;
    // The provider's own connections (caller clients), and the subscriber connections it opens from them.
    const { clients, subscribers } = recordingClients(cluster.urls);
    const listenersBeforeProvider = clients.map(listenersOn);
    const holder = createRedlockProvider({ urls: cluster.urls });
    const waiter = createRedlockProvider({ clients });
    await Promise.all([connected(holder), connected(waiter)]);
    try {
      const lease = await holder.acquire(key, { ttlMs: 120_000 });
      const measure = async () => {
        const numsub = await Promise.all(
          operator.map(async (client) => Number((await client.pubsub('NUMSUB', channel))[1])),
        );
        return {
          numsub: numsub.reduce((sum, count) => sum + count, 0),
          channels: (await Promise.all(operator.map((client) => client.pubsub('CHANNELS', `${key}*`)))).flat()
            .length,
          // The waiting line's keys on every node: withdrawn waiters leave it (and it lapses by itself).
          inLine: (
            await Promise.all(operator.map((client) => client.zcard(`${key}:lock-queue:queue`)))
          ).reduce((sum, count) => sum + count, 0),
          lineKeys: (
            await Promise.all(
              operator.map((client) =>
                client.exists(`${key}:lock-queue`, `${key}:lock-queue:expiry`, `${key}:lock-queue:queue`),
              ),
            )
          ).reduce((sum, count) => sum + count, 0),
          commandListeners: clients.reduce((sum, client) => sum + listenersOn(client), 0),
          subscriberListeners: subscribers.reduce((sum, client) => sum + listenersOn(client), 0),
          timers: process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length,
        };
      };
      // One waiter first, long enough to subscribe, so the subscriber connections exist in the baseline.
      await expect(waiter.acquire(key, { waitMs: 300 })).rejects.toBeInstanceOf(LockTimeoutError);
      expect(subscribers.length).toBe(3);
      // Its unsubscribe follows the subscribe on connections that are still being opened: wait for both.
      expect(await eventually(async () => (await measure()).numsub === 0, 10_000)).toBe(true);
      const before = await measure();

      const started = performance.now();
      let done = 0;
      let timedOut = 0;
      let unavailable = 0;
      let peakInLine = 0;
      while (done < ACQUIRES && performance.now() - started < TIME_BUDGET_MS) {
        const batch = Array.from({ length: AT_ONCE }, () =>
          waiter.acquire(key, { waitMs: 10 }).then(
            () => {
              throw new Error('acquired a held lock');
            },
            (error: unknown) => {
              // On a starved machine a node may miss its command timeout: the waiter gives up either way.
              if (error instanceof LockTimeoutError) timedOut++;
              else if (error instanceof BackendUnavailableError) unavailable++;
              else throw error;
            },
          ),
        );
        // Sampled while a batch waits, for the report (test/library.test.ts shows waiters wait in line).
        if (done % 200 === 0) {
          await sleep(3);
          peakInLine = Math.max(peakInLine, (await measure()).inLine);
        }
        await Promise.all(batch);
        done += AT_ONCE;
      }
      const churnMs = performance.now() - started;
      expect(done).toBe(ACQUIRES);
      expect(timedOut + unavailable).toBe(ACQUIRES);
      // Unsubscribes are sent when the last waiter of a channel leaves; give the nodes a moment.
      expect(await eventually(async () => (await measure()).numsub === 0, 10_000)).toBe(true);
      const after = await measure();
      console.log(
        `[redlock] ${ACQUIRES} acquires gave up in ${Math.round(churnMs)} ms (${timedOut} timed out, ${unavailable} unavailable; places in line summed over the nodes ` +
          `peaked at ${peakInLine}): before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
      );
      expect(after.numsub).toBe(before.numsub);
      expect(before.lineKeys).toBe(0);
      expect(after.lineKeys).toBe(0);
      expect(after.channels).toBe(before.channels);
      expect(after.commandListeners).toBe(before.commandListeners);
      expect(after.subscriberListeners).toBe(before.subscriberListeners);
      expect(after.timers).toBeLessThanOrEqual(before.timers + 2);
      await lease.release();
      // The caller's clients outlive the provider, without its listeners.
      await waiter.close();
      expect(clients.map(listenersOn)).toEqual(listenersBeforeProvider);
    } finally {
      await Promise.allSettled([waiter.close(), holder.close()]);
      await closeRawClients(clients);
    }
  });
});
