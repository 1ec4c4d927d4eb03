import { afterEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  LeaderElector,
  LockLostError,
  type LockProvider,
  MemoryLockStore,
  type ScheduleHandle,
  type ScheduleOptions,
  type ScheduledJob,
  type ScheduledTick,
  createMemoryProvider,
  scheduleExclusive,
} from '../src/index.js';
import { invalidField, sleep, until } from './recipes-support.js';

const handles: ScheduleHandle[] = [];
const providers: LockProvider[] = [];
const electors: Array<{ controller: AbortController; running: Promise<void> }> = [];

afterEach(async () => {
  await Promise.all(handles.splice(0).map((handle) => handle.stop()));
  for (const { controller, running } of electors.splice(0)) {
    controller.abort();
    await running;
  }
  await Promise.all(providers.splice(0).map((provider) => provider.close()));
});

function memoryInstances(count: number, store = new MemoryLockStore()): LockProvider[] {
  const made = Array.from({ length: count }, () => createMemoryProvider({ store }));
  providers.push(...made);
  return made;
}

function schedule(provider: LockProvider, options: ScheduleOptions, job: ScheduledJob): ScheduleHandle {
  const handle = scheduleExclusive(provider, options, job);
  handles.push(handle);
  return handle;
}

function runElector(elector: LeaderElector): void {
  const controller = new AbortController();
  electors.push({ controller, running: elector.run(controller.signal) });
}

interface Run {
  readonly instance: number;
  readonly tick: ScheduledTick;
}

/**
 * The instances that ran each tick, in tick order, leaving out the first and the last tick seen: the
 * start and the end of the observation may fall between two instances' runs of the same tick.
 */
function instancesByTick(runs: Run[]): number[][] {
  const byTick = new Map<number, number[]>();
  for (const run of runs) {
    const at = run.tick.scheduledAt.getTime();
    byTick.set(at, [...(byTick.get(at) ?? []), run.instance]);
  }
  return [...byTick.entries()]
    .sort(([a], [b]) => a - b)
    .slice(1, -1)
    .map(([, instances]) => instances.sort());
}

/** `provider`, recording in `releasedAt` (by fencing token) when each lease it grants is released. */
function recordingReleases(provider: LockProvider, releasedAt: Map<bigint, number>): LockProvider {
  const acquire = provider.acquire.bind(provider);
  provider.acquire = async (key, options) => {
    const lease = await acquire(key, options);
    const release = lease.release.bind(lease);
    lease.release = async () => {
      await release();
      releasedAt.set(lease.token, Date.now());
    };
    return lease;
  };
  return provider;
}

describe("scheduleExclusive in mode 'leader' (ShedLock semantics)", () => {
  // Every instance fires the same ticks and tries the job's lock once per tick; the winner holds it at
  // least lockAtLeastForMs. So no tick runs twice. A tick is skipped, not queued, when the run of the
  // tick before it has not released its lock yet as the tick falls: still holding it, or started late
  // because the event loop was blocked (the late timer runs its own tick and skips those it slept
  // through). Whether that happens depends on the machine's load, so skips are not counted but
  // explained: each one must fall before the release of the previous run.
  it('runs no tick twice across three instances over 24 ticks, and skips one only before the previous run released its lock', async () => {
    const every = 150;
    const runs: Run[] = [];
    const releasedAt = new Map<bigint, number>();
    const errors: unknown[] = [];
    memoryInstances(3).forEach((provider, instance) =>
      schedule(
        recordingReleases(provider, releasedAt),
        {
          name: 'report',
          every,
          lockAtMostForMs: 5_000,
          lockAtLeastForMs: 60,
          onError: (error) => errors.push(error),
        },
        async (_signal, tick) => {
          runs.push({ instance, tick });
          await sleep(5);
        },
      ),
    );
    await until(
      () => new Set(runs.map((run) => run.tick.scheduledAt.getTime())).size >= 25,
      15_000,
      '25 ticks',
    );
    await Promise.all(handles.splice(0).map((handle) => handle.stop()));
    expect(errors).toEqual([]);
    expect(runs.every((run) => typeof run.tick.token === 'bigint')).toBe(true);
    const ran = runs
      .map((run) => ({
        at: run.tick.scheduledAt.getTime(),
        releasedAt: releasedAt.get(run.tick.token ?? -1n),
      }))
      .sort((a, b) => a.at - b.at);
    const ticks = ran.map((run) => run.at);
    expect(new Set(ticks).size, `a tick ran twice: ${ticks.join(' ')}`).toBe(ticks.length);
    expect(ticks.every((at) => at % every === 0)).toBe(true);
    expect(ran.filter((run) => run.releasedAt === undefined)).toEqual([]);
    let previous = ran[0];
    for (let at = (previous?.at ?? 0) + every; at < (ran.at(-1)?.at ?? 0); at += every) {
      const run = ran.find((candidate) => candidate.at === at);
      if (run) {
        previous = run;
        continue;
      }
      expect(
        previous?.releasedAt,
        `tick ${at} was skipped, but the run of tick ${previous?.at} had released its lock before it`,
      ).toBeGreaterThan(at);
    }
  });

  it('skips a tick whose lock is still held by a slow run elsewhere, and renews that lock past lockAtMostForMs', async () => {
    const [a, b] = memoryInstances(2);
    if (!a || !b) throw new Error('unreachable');
    let active = 0;
    let maxActive = 0;
    const runs: Run[] = [];
    let slowSignal: AbortSignal | undefined;
    const job =
      (instance: number): ScheduledJob =>
      async (signal, tick) => {
        runs.push({ instance, tick });
        active++;
        maxActive = Math.max(maxActive, active);
        slowSignal ??= signal;
        // The first run outlasts lockAtMostForMs three times over: only renewal keeps others out.
        await sleep(runs.length === 1 ? 3_000 : 5);
        active--;
      };
    // lockAtMostForMs long enough that a renewal survives a busy machine's stall of half a second.
    const options = { name: 'slow', every: 100, lockAtMostForMs: 1_000, lockAtLeastForMs: 20 };
    schedule(a, options, job(0));
    schedule(b, options, job(1));
    await until(() => runs.length >= 3, 10_000, 'runs after the slow one');
    expect(maxActive).toBe(1);
    expect(slowSignal?.aborted).toBe(false);
    const [slow, next] = runs;
    expect(
      (next?.tick.scheduledAt.getTime() ?? 0) - (slow?.tick.scheduledAt.getTime() ?? 0),
    ).toBeGreaterThanOrEqual(3_000);
  });

  it('aborts the job signal and reports LockLostError when its lock is lost mid-run — never silently', async () => {
    const store = new MemoryLockStore();
    const [provider] = memoryInstances(1, store);
    if (!provider) throw new Error('unreachable');
    const errors: Array<{ error: unknown; tick: ScheduledTick | undefined }> = [];
    let seen: AbortSignal | undefined;
    schedule(
      provider,
      {
        name: 'lossy',
        every: 100,
        lockAtMostForMs: 150,
        lockAtLeastForMs: 0,
        onError: (error, tick) => errors.push({ error, tick }),
      },
      async (signal) => {
        if (seen) return;
        seen = signal;
        await sleep(30);
        store.forceRelease('lossy');
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      },
    );
    await until(() => errors.length > 0, 5_000, 'the loss to be reported');
    expect(seen?.aborted).toBe(true);
    expect(seen?.reason).toBeInstanceOf(LockLostError);
    expect(errors[0]?.error).toBeInstanceOf(LockLostError);
    expect(errors[0]?.tick?.name).toBe('lossy');
  });

  it('only the elected leader runs when given an elector', async () => {
    const store = new MemoryLockStore();
    const runs: Run[] = [];
    // A leader that outlives a 2 s stall: a new leader would be the elector working, not a defect.
    const timings = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 100 };
    const instances = memoryInstances(3, store).map((provider, instance) => {
      const elector = new LeaderElector(provider, { key: 'election', identity: `i${instance}`, ...timings });
      runElector(elector);
      schedule(
        provider,
        { name: 'leader-only', every: 100, lockAtMostForMs: 1_000, lockAtLeastForMs: 30, elector },
        (_signal, tick) => {
          runs.push({ instance, tick });
        },
      );
      return elector;
    });
    await until(() => instances.some((elector) => elector.isLeader()));
    const leader = instances.findIndex((elector) => elector.isLeader());
    runs.length = 0;
    await until(() => runs.length >= 5, 5_000, 'five runs');
    expect(new Set(runs.map((run) => run.instance))).toEqual(new Set([leader]));
  });
});

describe("scheduleExclusive in modes 'followers' and 'all'", () => {
  it("'followers' runs every tick on the two instances that are not the leader", async () => {
    const store = new MemoryLockStore();
    const runs: Run[] = [];
    // A new leader would change which instances follow: a lease that outlives a 2 s stall keeps it.
    const timings = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 100 };
    const electorsByInstance = memoryInstances(3, store).map((provider, instance) => {
      const elector = new LeaderElector(provider, {
        key: 'followers-election',
        identity: `i${instance}`,
        ...timings,
      });
      runElector(elector);
      schedule(
        provider,
        { name: 'replica-sync', every: 100, mode: 'followers', elector },
        (_signal, tick) => {
          runs.push({ instance, tick });
        },
      );
      return elector;
    });
    await until(() => electorsByInstance.filter((elector) => elector.isFollower()).length === 2);
    const leader = electorsByInstance.findIndex((elector) => elector.isLeader());
    runs.length = 0;
    // Eight whole ticks, however long a busy machine takes (an instance blocked past a tick skips it:
    // counting the ticks of a fixed 1 s window failed under a CPU hog).
    await until(() => instancesByTick(runs).length >= 8, 10_000, 'eight ticks');
    for (const instances of instancesByTick(runs)) {
      expect(instances).toEqual([0, 1, 2].filter((i) => i !== leader));
    }
  });

  it("'followers' creates and stops its own elector when given elector options", async () => {
    const store = new MemoryLockStore();
    const runs: number[] = [];
    // A lease that outlives a 2 s stall keeps the same leader, so the same instance follows throughout.
    const timings = {
      key: 'own-election',
      leaseDurationMs: 3_000,
      renewDeadlineMs: 2_000,
      retryPeriodMs: 100,
    };
    memoryInstances(2, store).forEach((provider, instance) =>
      schedule(provider, { name: 'own', every: 100, mode: 'followers', elector: timings }, () => {
        runs.push(instance);
      }),
    );
    await until(() => store.residue('own-election').length > 0);
    await sleep(300);
    runs.length = 0;
    await until(() => runs.length >= 3, 10_000, 'three runs');
    expect(new Set(runs).size).toBe(1);
    await Promise.all(handles.splice(0).map((handle) => handle.stop()));
    expect(store.residue('own-election')).toEqual([]);
  });

  it("'all' runs every tick on every instance", async () => {
    const runs: Run[] = [];
    memoryInstances(3).forEach((provider, instance) =>
      schedule(provider, { name: 'cache-warm', every: 100, mode: 'all' }, (_signal, tick) => {
        runs.push({ instance, tick });
      }),
    );
    // Four whole ticks, however long a busy machine takes, rather than the runs of a fixed window.
    await until(() => instancesByTick(runs).length >= 4, 10_000, 'four ticks');
    for (const instances of instancesByTick(runs)) expect(instances).toEqual([0, 1, 2]);
  });
});

describe('scheduleExclusive: lifecycle and cron', () => {
  it('stop() aborts a running job, waits for it, releases its lock and fires no more ticks', async () => {
    const store = new MemoryLockStore();
    const [provider] = memoryInstances(1, store);
    if (!provider) throw new Error('unreachable');
    let runs = 0;
    let finished = false;
    let seen: AbortSignal | undefined;
    const handle = schedule(
      provider,
      { name: 'stoppable', every: 50, lockAtMostForMs: 5_000, lockAtLeastForMs: 10 },
      async (signal) => {
        runs++;
        seen = signal;
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        finished = true;
        throw signal.reason;
      },
    );
    expect(handle.nextRunAt()?.getTime()).toBeGreaterThan(Date.now() - 1);
    await until(() => runs === 1);
    await handle.stop();
    expect(seen?.aborted).toBe(true);
    expect(finished).toBe(true);
    expect(store.residue('stoppable')).toEqual([]);
    expect(handle.nextRunAt()).toBeNull();
    await sleep(150);
    expect(runs).toBe(1);
  });

  it('runs a 6-field cron expression once per tick across instances, on whole seconds', async () => {
    const runs: Run[] = [];
    memoryInstances(2).forEach((provider, instance) =>
      schedule(
        provider,
        { name: 'every-second', cron: '* * * * * *', lockAtMostForMs: 5_000, lockAtLeastForMs: 200 },
        (_signal, tick) => {
          runs.push({ instance, tick });
        },
      ),
    );
    await until(() => runs.length >= 2, 5_000, 'two cron ticks');
    await sleep(300);
    const ticks = runs.map((run) => run.tick.scheduledAt.getTime());
    expect(new Set(ticks).size).toBe(ticks.length);
    expect(ticks.every((at) => at % 1_000 === 0)).toBe(true);
  });

  it('reads a cron expression in the given time zone', () => {
    const [provider] = memoryInstances(1);
    if (!provider) throw new Error('unreachable');
    const handle = schedule(
      provider,
      {
        name: 'weekly',
        cron: '0 0 3 * * MON',
        timezone: 'Asia/Tokyo',
        lockAtMostForMs: 60_000,
        lockAtLeastForMs: 10_000,
      },
      () => {},
    );
    const next = handle.nextRunAt();
    expect(next?.getUTCDay()).toBe(0); // Monday 03:00 in Tokyo is Sunday 18:00 UTC
    expect(next?.getUTCHours()).toBe(18);
  });
});

describe('scheduleExclusive: invalid options are typed errors naming the field', () => {
  const provider = createMemoryProvider();
  const leader = { name: 'job', every: 1_000, lockAtMostForMs: 5_000, lockAtLeastForMs: 100 };
  const fieldOf = (options: unknown, job: unknown = () => {}): string =>
    invalidField(() => scheduleExclusive(provider, options as ScheduleOptions, job as ScheduledJob).stop());

  it.each([
    ['no schedule', { ...leader, every: undefined }, 'every'],
    ['both every and cron', { ...leader, cron: '* * * * *' }, 'cron'],
    ['a zero period', { ...leader, every: 0 }, 'every'],
    ['a malformed cron', { ...leader, every: undefined, cron: 'every monday' }, 'cron'],
    ['an out-of-range cron field', { ...leader, every: undefined, cron: '61 * * * *' }, 'cron'],
    [
      'an unknown time zone',
      { ...leader, every: undefined, cron: '0 3 * * MON', timezone: 'Mars/Olympus' },
      'timezone',
    ],
    ['an unknown mode', { ...leader, mode: 'master' }, 'mode'],
    ['no lockAtMostForMs in leader mode', { ...leader, lockAtMostForMs: undefined }, 'lockAtMostForMs'],
    ['no lockAtLeastForMs in leader mode', { ...leader, lockAtLeastForMs: undefined }, 'lockAtLeastForMs'],
    [
      'lockAtLeastForMs above lockAtMostForMs',
      { ...leader, lockAtLeastForMs: 6_000, every: 10_000 },
      'lockAtLeastForMs',
    ],
    ['lockAtLeastForMs not below the period', { ...leader, lockAtLeastForMs: 1_000 }, 'lockAtLeastForMs'],
    [
      'lockAtLeastForMs not below a cron period',
      { ...leader, every: undefined, cron: '*/2 * * * * *', lockAtLeastForMs: 2_000 },
      'lockAtLeastForMs',
    ],
    ['lock timings in mode all', { ...leader, mode: 'all' }, 'lockAtMostForMs'],
    ['followers without an elector', { name: 'job', every: 1_000, mode: 'followers' }, 'elector'],
    ['an empty name', { ...leader, name: '' }, 'key'],
    ['a non-function onError', { ...leader, onError: 'log' }, 'onError'],
    [
      'bad elector options',
      {
        name: 'job',
        every: 1_000,
        mode: 'followers',
        elector: { key: 'e', leaseDurationMs: 10, retryPeriodMs: 9 },
      },
      'renewDeadlineMs',
    ],
  ])('rejects %s', (_what, options, field) => {
    expect(fieldOf(options)).toBe(field);
  });

  it('rejects a job that is not a function', () => {
    expect(fieldOf(leader, 'not a job')).toBe('job');
  });
});
