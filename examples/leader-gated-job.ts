// The Spring aspect, done right. The original re-took a Redis lock every 10 s to decide who was
// "leader", held a latch until the first election, ran sync jobs only on the leader, and extended the
// lock every second from a separate thread while a job ran — with no way to tell the job when an
// extension failed. Here: a LeaderElector decides (and steps down before its lease can expire), the
// latch is the first onNewLeader, the job runs through scheduleExclusive on the leader only, and the
// watchdog that renews the job's lock aborts the job's signal if a renewal fails.
import { LeaderElector, LockLostError, scheduleExclusive } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

export interface LeaderGatedJobResult {
  /** Who was elected. */
  readonly leader: string;
  /** Which instance ran each sync, in order. */
  readonly runs: readonly string[];
  /** Most syncs running at once anywhere (must be 1). */
  readonly maxConcurrent: number;
  /** Syncs whose signal aborted because their lock was lost (a failed renewal; must be 0). */
  readonly lostLocks: number;
}

export async function main(log: (line: string) => void = console.log): Promise<LeaderGatedJobResult> {
  const providers = await instanceProviders(3);
  const stop = new AbortController();
  const runs: string[] = [];
  let active = 0;
  let maxConcurrent = 0;
  let lostLocks = 0;

  const instances = providers.map((provider, i) => {
    const identity = `orders-service-${i + 1}`;
    let electionDone: () => void = () => {};
    const firstElection = new Promise<void>((resolve) => {
      electionDone = resolve;
    });
    const elector = new LeaderElector(provider, {
      key: 'orders-service/leader',
      identity,
      // Short for a demo, with room for a busy machine: a term survives a stall of up to 2 s.
      leaseDurationMs: 3_000,
      renewDeadlineMs: 2_000,
      retryPeriodMs: 200,
      releaseOnCancel: true,
      onNewLeader: (leader) => {
        log(`${identity}: the leader is ${leader}`);
        electionDone();
      },
    });
    const running = elector.run(stop.signal);
    // The sync takes 1 s — longer than lockAtMostForMs: only the watchdog's renewals (every 200 ms)
    // keep the lock.
    const job = scheduleExclusive(
      provider,
      { name: 'orders-sync', every: 300, elector, lockAtMostForMs: 600, lockAtLeastForMs: 50 },
      async (signal, tick) => {
        runs.push(identity);
        active++;
        maxConcurrent = Math.max(maxConcurrent, active);
        log(`${identity}: sync of ${tick.scheduledAt.toISOString()} (fencing token ${tick.token})`);
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        // stop() also aborts a running sync; only a lost lock counts as a failure here.
        if (signal.aborted && signal.reason instanceof LockLostError) lostLocks++;
        active--;
      },
    );
    return { identity, elector, firstElection, running, job };
  });

  // The latch: nothing starts until the first election is known everywhere.
  await Promise.all(instances.map((instance) => instance.firstElection));
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  await Promise.all(instances.map((instance) => instance.job.stop()));
  const leader = instances.find((instance) => instance.elector.isLeader())?.identity ?? 'nobody';
  stop.abort();
  await Promise.all(instances.map((instance) => instance.running));
  await Promise.all(providers.map((provider) => provider.close()));
  log(`${runs.length} syncs, all on ${[...new Set(runs)].join(', ')}`);
  return { leader, runs, maxConcurrent, lostLocks };
}
