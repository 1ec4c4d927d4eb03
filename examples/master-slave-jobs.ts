// The master/slave framework: a role key per service holding the master's instance id (heartbeat 15 s,
// expiry 45 s — here 200 ms / 900 ms so the example finishes quickly), isMaster() for this instance and
// isMaster(appName, instanceId) for any instance, and @SchedulerLock(model = master | slave) jobs.
import { type InstanceRole, LeaderElector, roleOf, scheduleExclusive } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

export interface MasterSlaveResult {
  readonly master: string;
  /** roleOf(instanceId) for every instance, asked from the last one. */
  readonly roles: Readonly<Record<string, InstanceRole>>;
  /** Which instance ran each master-only job tick. */
  readonly masterRuns: readonly string[];
  /** Which instances ran slave jobs. */
  readonly slaveRuns: readonly string[];
}

const appName = 'billing';

export async function main(log: (line: string) => void = console.log): Promise<MasterSlaveResult> {
  const providers = await instanceProviders(3);
  const stop = new AbortController();
  const masterRuns: string[] = [];
  const slaveRuns: string[] = [];

  const instances = providers.map((provider, i) => {
    const instanceId = `${appName}-${i + 1}`;
    const elector = new LeaderElector(provider, {
      key: `${appName}/master`,
      identity: instanceId,
      retryPeriodMs: 200, // the heartbeat
      leaseDurationMs: 900, // the expiry
      renewDeadlineMs: 600,
      releaseOnCancel: true,
    });
    const running = elector.run(stop.signal);
    const masterJob = scheduleExclusive(
      provider,
      { name: `${appName}/close-books`, every: 200, elector, lockAtMostForMs: 2_000, lockAtLeastForMs: 50 },
      () => {
        masterRuns.push(instanceId);
      },
    );
    const slaveJob = scheduleExclusive(
      provider,
      { name: `${appName}/refresh-cache`, every: 200, mode: 'followers', elector },
      () => {
        slaveRuns.push(instanceId);
      },
    );
    return { instanceId, provider, elector, running, jobs: [masterJob, slaveJob] };
  });

  while (!instances.some((instance) => instance.elector.isLeader())) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  await Promise.all(instances.flatMap((instance) => instance.jobs.map((job) => job.stop())));

  const master = instances.find((instance) => instance.elector.isLeader())?.instanceId ?? 'nobody';
  const asker = instances[2];
  const roles: Record<string, InstanceRole> = {};
  for (const { instanceId } of instances) {
    // isMaster(appName, instanceId): any instance can ask about any other.
    roles[instanceId] = asker ? await roleOf(asker.provider, `${appName}/master`, instanceId) : 'follower';
    log(`${instanceId} is ${roles[instanceId] === 'leader' ? 'the master' : 'a slave'}`);
  }
  stop.abort();
  await Promise.all(instances.map((instance) => instance.running));
  await Promise.all(providers.map((provider) => provider.close()));
  log(
    `master jobs ran on ${[...new Set(masterRuns)].join(', ')}; slave jobs on ${[...new Set(slaveRuns)].join(', ')}`,
  );
  return { master, roles, masterRuns, slaveRuns };
}
