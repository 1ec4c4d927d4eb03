import { LeaderElector, type LeaderElectorOptions } from '@dlock/core';
import { type EtcdServer, startEtcd } from '@dlock/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdLockProvider } from '../src/index.js';
import { figure, openProvider, within } from './etcd.js';

/** Issue 12 #3's setting: a 3 s lease. */
const LEASE_DURATION_MS = 3_000;
/** The claim ends leaseDurationMs after the last renewal at the latest; slack for a busy machine. */
const CLAIM_ENDS_WITHIN_MS = LEASE_DURATION_MS + 1_500;

let server: EtcdServer;
const providers: EtcdLockProvider[] = [];
const runs: Array<{ stop: AbortController; running: Promise<void> }> = [];
let nameCounter = 0;
const freshName = (label: string) => `elector-${label}-${process.pid}-${nameCounter++}`;

beforeAll(async () => {
  server = await startEtcd();
});

afterEach(async () => {
  for (const run of runs.splice(0)) run.stop.abort();
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
});

afterAll(async () => {
  await server?.stop();
});

function elector(key: string, identity: string, options: Partial<LeaderElectorOptions> = {}) {
  const provider = openProvider(server.endpoint, { sessionTtlSec: 10 });
  providers.push(provider);
  const errors: unknown[] = [];
  const instance = new LeaderElector(provider, {
    key,
    identity,
    leaseDurationMs: LEASE_DURATION_MS,
    onError: (error) => errors.push(error),
    ...options,
  });
  return { provider, elector: instance, errors };
}

function run(instance: LeaderElector): { stop: AbortController; running: Promise<void> } {
  const stop = new AbortController();
  const handle = { stop, running: instance.run(stop.signal) };
  runs.push(handle);
  return handle;
}

/** Two electors on `key`: `first` leads, `second` campaigns behind it. */
async function leaderAndCandidate(key: string, firstOptions: Partial<LeaderElectorOptions> = {}) {
  const first = elector(key, 'first', firstOptions);
  const second = elector(key, 'second');
  const firstRun = run(first.elector);
  await within('first leads', 5_000, async () => first.elector.isLeader());
  run(second.elector);
  await within('second campaigns', 5_000, async () => second.elector.isFollower());
  return { first, second, firstRun };
}

describe('a cancelled leader without releaseOnCancel (issue 12 #3)', () => {
  it('another candidate leads within leaseDurationMs, and holder() stops naming the cancelled instance', async () => {
    const key = freshName('handover');
    const { first, second, firstRun } = await leaderAndCandidate(key);

    const cancelledAt = performance.now();
    firstRun.stop.abort();
    await firstRun.running;
    await within('second leads', CLAIM_ENDS_WITHIN_MS, async () => second.elector.isLeader());
    const tookMs = performance.now() - cancelledAt;
    figure('cancelled leader (releaseOnCancel false) → next candidate leads (leaseDurationMs 3000)', tookMs);
    // Left to run out like a lease, not released at once: the cancelled leader's work may still drain.
    expect(tookMs).toBeGreaterThan(LEASE_DURATION_MS / 3);
    expect((await second.provider.election.holder(key))?.identity).toBe('second');
    expect(first.errors).toEqual([]);
  });

  it('the same elector calling run() again leads once its abandoned claim has ended', async () => {
    const key = freshName('again');
    const only = elector(key, 'only');
    const firstRun = run(only.elector);
    await within('it leads', 5_000, async () => only.elector.isLeader());
    firstRun.stop.abort();
    await firstRun.running;

    const againAt = performance.now();
    run(only.elector);
    await within('it leads again', CLAIM_ENDS_WITHIN_MS, async () => only.elector.isLeader());
    figure(
      'cancelled leader → the same elector leads again after run() (leaseDurationMs 3000)',
      performance.now() - againAt,
    );
    // One claim: the abandoned key is gone.
    const holder = await only.provider.election.holder(key);
    expect(holder?.identity).toBe('only');
  });

  it('with releaseOnCancel the next candidate leads at once', async () => {
    const { second, firstRun } = await leaderAndCandidate(freshName('release'), { releaseOnCancel: true });
    const cancelledAt = performance.now();
    firstRun.stop.abort();
    await firstRun.running;
    await within('second leads', 1_500, async () => second.elector.isLeader());
    figure('cancelled leader (releaseOnCancel true) → next candidate leads', performance.now() - cancelledAt);
  });
});
