import { fileURLToPath } from 'node:url';
import { type Lease, type LockProvider, LockTimeoutError } from '@dlock/core';
import {
  type ZooKeeperEnsemble,
  type ZooKeeperServer,
  startNodeProcess,
  startZooKeeperEnsemble,
} from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DisconnectPolicy } from '../src/index.js';
import { Providers, sleep, until } from './support.js';

const ROOT = '/dlock-ensemble';
const SESSION_TIMEOUT_MS = 4_000;
const HOLDER_FIXTURE = fileURLToPath(new URL('./fixtures/holder.mjs', import.meta.url));
let ensemble: ZooKeeperEnsemble;
const providers = new Providers(() => ({
  connectString: ensemble.connectString,
  root: ROOT,
  sessionTimeoutMs: SESSION_TIMEOUT_MS,
  // A leader election takes a few seconds: calls and reconnects may wait that long.
  connectTimeoutMs: 10_000,
  callTimeoutMs: 10_000,
}));

beforeAll(async () => {
  ensemble = await startZooKeeperEnsemble(3);
});

afterAll(async () => {
  await providers.closeAll();
  await ensemble?.stop();
});

interface Hold {
  readonly contender: number;
  readonly token: bigint;
  readonly start: number;
  /** When the holder released, or when its lease's signal aborted — whichever came first. */
  end: number;
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function holdFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

describe('on a 3-node ensemble', () => {
  for (const onDisconnect of ['abort', 'session-timeout'] as DisconnectPolicy[]) {
    it(`never has two holders when the leader is killed while the lock is held and others wait (onDisconnect '${onDisconnect}')`, async () => {
      const key = `leader-kill-${onDisconnect}`;
      const contenders: LockProvider[] = Array.from({ length: 4 }, () => providers.open({ onDisconnect }));
      const holds: Hold[] = [];
      const failures: string[] = [];
      let killedAt = Number.POSITIVE_INFINITY;
      const deadline = performance.now() + 40_000;
      const grantsAfterKill = () => holds.filter((hold) => hold.start > killedAt).length;
      const run = async (provider: LockProvider, contender: number) => {
        while (grantsAfterKill() < 6 && performance.now() < deadline) {
          let lease: Lease;
          try {
            lease = await provider.acquire(key, { waitMs: 15_000 });
          } catch (error) {
            // During the election a session may be lost or a call time out: try again, as an app would.
            if (!(error instanceof LockTimeoutError)) failures.push(String(error));
            await sleep(100);
            continue;
          }
          const hold: Hold = { contender, token: lease.token, start: performance.now(), end: Number.NaN };
          holds.push(hold);
          const onLost = () => {
            if (Number.isNaN(hold.end)) hold.end = performance.now();
          };
          lease.signal.addEventListener('abort', onLost, { once: true });
          await holdFor(150, lease.signal);
          onLost();
          await lease.release().catch(() => {});
        }
      };
      const running = contenders.map((provider, index) => run(provider, index));
      await until(() => holds.length >= 3, 20_000, 'the lock being handed around');
      const leader: ZooKeeperServer = await ensemble.leader();
      await until(() => holds.some((hold) => Number.isNaN(hold.end)), 5_000, 'a hold in progress');
      await leader.kill();
      killedAt = performance.now();
      await Promise.all(running);
      await leader.restart();

      expect(grantsAfterKill(), `failures: ${failures.join('; ')}`).toBeGreaterThanOrEqual(6);
      const ordered = [...holds].sort((a, b) => a.start - b.start);
      for (let i = 1; i < ordered.length; i++) {
        const previous = ordered[i - 1]!;
        const current = ordered[i]!;
        // The next holder is granted only after the previous one released or was told it lost the lock.
        expect(current.start, `hold ${i} of contender ${current.contender} overlaps`).toBeGreaterThanOrEqual(
          previous.end,
        );
        expect(current.token > previous.token, `token of hold ${i} is not larger`).toBe(true);
      }
    });
  }

  it('a holder paused past its session timeout loses the lock to a higher token, and learns it on resume', async () => {
    const key = 'paused-holder';
    const child = startNodeProcess(HOLDER_FIXTURE, [ensemble.connectString, ROOT, key, '2000', 'abort']);
    try {
      const acquired = await child.waitForLine(/^acquired \d+$/, 20_000);
      const pausedToken = BigInt(acquired.split(' ')[1]!);
      const provider = providers.open();
      expect((await provider.holder(key))?.identity).toBe(`fixture-${child.pid}`);
      child.pause();
      const pausedAt = performance.now();
      const next = await provider.acquire(key, { waitMs: 20_000 });
      // Only the server's expiry of the paused session lets the next contender in.
      expect(performance.now() - pausedAt).toBeGreaterThan(1_000);
      expect(next.token > pausedToken).toBe(true);
      child.resume();
      const resumedAt = performance.now();
      await child.waitForLine(/^lost /, 5_000);
      expect(performance.now() - resumedAt).toBeLessThan(1_000);
      expect((await provider.holder(key))?.token).toBe(next.token);
      await next.release();
      child.send('exit');
      await child.exited;
    } finally {
      if (child.running) await child.kill();
    }
  });
});
