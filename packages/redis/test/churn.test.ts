import { eventually, sleep } from '@dlock/conformance';
import { LockTimeoutError } from '@dlock/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { createRedisProvider, redisKeyLayout } from '../src/index.js';
import { PLACE_MS } from '../src/queue-lua.js';
import { listenerCount, redisFixture } from './servers.js';

// Issue 12 #5/#6 on Redis: waiters that come and go must not leave subscriptions, listeners or
// handles behind. (The shared churn soak for every backend lives in the conformance kit.)

const redis = redisFixture();
beforeAll(() => redis.start());

const ACQUIRES = 2_000;
const AT_ONCE = 20;

function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const resource of process.getActiveResourcesInfo()) counts[resource] = (counts[resource] ?? 0) + 1;
  return counts;
}

describe('waiters that time out', () => {
  it(`${ACQUIRES} timed-out acquires (waitMs 10) leave no subscription, place in line, client listener, connection or handle behind`, async () => {
    const key = 'churn';
    const { releaseChannel, scriptKeys } = redisKeyLayout(key, 'dlock:');
    const holder = await redis.provider().acquire(key, { ttlMs: 120_000 });
    const client = redis.raw();
    const provider = createRedisProvider({ client });
    const observer = redis.raw();
    const numsub = async () =>
      Number(((await observer.pubsub('NUMSUB', releaseChannel)) as [string, number])[1]);
    const connections = async () => ((await observer.client('LIST')) as string).trim().split('\n').length;
    const inboxes = async () => ((await observer.pubsub('CHANNELS', 'dlock:wake:*')) as string[]).length;
    const lineKeys = async () => observer.exists(...scriptKeys.slice(0, 3));
    const snapshot = async () => ({
      numsub: await numsub(),
      inboxes: await inboxes(),
      lineKeys: await lineKeys(),
      listeners: listenerCount(client),
      connections: await connections(),
      resources: activeResources(),
    });
    const subscribeCalls = async () =>
      Number(/cmdstat_subscribe:calls=(\d+)/.exec(await observer.info('commandstats'))?.[1] ?? 0);
    const timedOut = (waitMs = 10) =>
      provider.acquire(key, { ttlMs: 10_000, waitMs }).then(
        () => expect.unreachable('the key is held'),
        (error: unknown) => expect(error).toBeInstanceOf(LockTimeoutError),
      );
    try {
      // One long enough wait first: the provider's subscriber connection exists from then on.
      await timedOut(300);
      // Its SUBSCRIBE and the withdrawal of its place are sent, not awaited: both settle first. A place
      // left behind would lapse by itself within PLACE_MS, so "settled" must come well before that.
      const settled = async () =>
        (await inboxes()) === 1 && (await lineKeys()) === 0 && (await numsub()) === 0;
      const settles = async (what: string) => {
        const startedAt = performance.now();
        expect(await eventually(settled, PLACE_MS), what).toBe(true);
        expect(performance.now() - startedAt, `${what}: withdrawn, not lapsed`).toBeLessThan(PLACE_MS / 2);
      };
      await settles('after the first wait');
      const before = await snapshot();
      const subscribesBefore = await subscribeCalls();
      const started = performance.now();
      for (let done = 0; done < ACQUIRES; done += AT_ONCE) {
        await Promise.all(Array.from({ length: AT_ONCE }, () => timedOut()));
      }
      const churnMs = performance.now() - started;
      await settles('after the churn');
      await sleep(100);
      const after = await snapshot();
      const subscribes = (await subscribeCalls()) - subscribesBefore;
      console.info(
        `[redis churn] ${ACQUIRES} timed-out acquires in ${Math.round(churnMs)} ms, ${subscribes} SUBSCRIBEs: ` +
          JSON.stringify({ before, after }),
      );
      // Lock waiters listen on their provider's inbox, subscribed by the first wait and kept from then
      // on: the churn subscribed nothing more, nothing listens on the key's release channel, and every
      // timed-out waiter left the key's waiting line (its keys are gone).
      expect(subscribes).toBe(0);
      expect(before.inboxes).toBe(1);
      expect(after.inboxes).toBe(1);
      expect(after.numsub).toBe(0);
      expect(before.numsub).toBe(0);
      expect(before.lineKeys).toBe(0);
      expect(after.lineKeys).toBe(0);
      expect(after.listeners).toBe(before.listeners);
      expect(after.connections).toBe(before.connections);
      expect(after.resources.TCPSocketWrap ?? 0).toBe(before.resources.TCPSocketWrap ?? 0);
      // Timers come and go with the test runner itself; a leak would be one per acquire.
      expect(after.resources.Timeout ?? 0).toBeLessThanOrEqual((before.resources.Timeout ?? 0) + 5);
    } finally {
      await holder.release();
      await provider.close();
    }
  });
});
