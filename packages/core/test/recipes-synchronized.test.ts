import { afterEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  LeaderElector,
  LockLostError,
  type LockProvider,
  LockTimeoutError,
  MemoryLockStore,
  createMemoryProvider,
  currentLease,
  schedulerLock,
  synchronized,
  synchronizedLock,
} from '../src/index.js';
import { invalidField, sleep } from './recipes-support.js';

const providers: LockProvider[] = [];
afterEach(async () => {
  await Promise.all(providers.splice(0).map((provider) => provider.close()));
});
function memoryInstances(count: number, store = new MemoryLockStore()): LockProvider[] {
  const made = Array.from({ length: count }, () => createMemoryProvider({ store }));
  providers.push(...made);
  return made;
}

/** Counts bodies running at once; a cluster-wide synchronized body must never see more than one. */
class Overlap {
  active = 0;
  max = 0;
  async body<T>(value: T, ms = 10): Promise<T> {
    this.active++;
    this.max = Math.max(this.max, this.active);
    await sleep(ms);
    this.active--;
    return value;
  }
}

describe('synchronized()', () => {
  it('never runs two bodies at once across instances, and every caller runs', async () => {
    const overlap = new Overlap();
    const perInstance = memoryInstances(3).map((provider) =>
      synchronized(provider, 'ledger', (n: number) => overlap.body(n, 8), { holdDurationMs: 2_000 }),
    );
    const calls = Array.from({ length: 24 }, (_, n) => perInstance[n % 3]?.(n));
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 24 }, (_, n) => n));
    expect(overlap.max).toBe(1);
  });

  it('keeps the lock past holdDurationMs while the body runs (watchdog), so waiters stay out', async () => {
    // The watchdog renews every holdDurationMs / 3, so the lock survives a process that falls up to two
    // thirds of holdDurationMs behind: 400 ms here, generous for a busy machine (a 120 ms hold, lost to
    // an 80 ms stall, failed under a CPU hog). The body outlasts the hold three times over.
    const holdDurationMs = 600;
    const overlap = new Overlap();
    const [a, b] = memoryInstances(2).map((provider) =>
      synchronized(provider, 'slow', (ms: number) => overlap.body(ms, ms), { holdDurationMs }),
    );
    await Promise.all([a?.(holdDurationMs * 3), sleep(20).then(() => b?.(5))]);
    expect(overlap.max).toBe(1);
  });

  it('gives up after waitMs with LockTimeoutError', async () => {
    const [a, b] = memoryInstances(2);
    if (!a || !b) throw new Error('unreachable');
    const hold = synchronized(a, 'busy', () => sleep(300), { holdDurationMs: 1_000 });
    const attempt = synchronized(b, 'busy', () => 'ran', { holdDurationMs: 1_000, waitMs: 50 });
    const holding = hold();
    await sleep(10);
    await expect(attempt()).rejects.toBeInstanceOf(LockTimeoutError);
    await holding;
    expect(await attempt()).toBe('ran');
  });

  it('exposes the lease through currentLease() and rejects with LockLostError when the lock was lost', async () => {
    const store = new MemoryLockStore();
    const [provider] = memoryInstances(1, store);
    if (!provider) throw new Error('unreachable');
    let signal: AbortSignal | undefined;
    const guarded = synchronized(
      provider,
      'fenced',
      async () => {
        const lease = currentLease('fenced');
        signal = lease?.signal;
        expect(typeof lease?.token).toBe('bigint');
        store.forceRelease('fenced');
        await new Promise((resolve) => lease?.signal.addEventListener('abort', resolve, { once: true }));
        return 'done without the lock';
      },
      { holdDurationMs: 90 },
    );
    await expect(guarded()).rejects.toBeInstanceOf(LockLostError);
    expect(signal?.aborted).toBe(true);
    expect(currentLease()).toBeUndefined();
  });

  it('is reentrant: a body calling itself runs under the lock it already holds', async () => {
    const [provider] = memoryInstances(1);
    if (!provider) throw new Error('unreachable');
    const factorial: (n: number) => Promise<number> = synchronized(
      provider,
      'recursive',
      async (n: number): Promise<number> => (n <= 1 ? 1 : n * (await factorial(n - 1))),
      { holdDurationMs: 1_000, waitMs: 500 },
    );
    expect(await factorial(5)).toBe(120);
  });

  it('rejects bad arguments with typed errors naming the field', () => {
    const provider = createMemoryProvider();
    const fn = () => 1;
    expect(invalidField(() => synchronized(provider, 'k', fn, {} as never))).toBe('holdDurationMs');
    expect(invalidField(() => synchronized(provider, 'k', fn, { holdDurationMs: 0 }))).toBe('holdDurationMs');
    expect(invalidField(() => synchronized(provider, 'k', fn, { holdDurationMs: 100, waitMs: -1 }))).toBe(
      'waitMs',
    );
    expect(
      invalidField(() => synchronized(provider, 'k', fn, { holdDurationMs: 100, renewIntervalMs: 100 })),
    ).toBe('renewIntervalMs');
    expect(invalidField(() => synchronized(provider, '', fn, { holdDurationMs: 100 }))).toBe('key');
    expect(invalidField(() => synchronized(provider, 'k', 'fn' as never, { holdDurationMs: 100 }))).toBe(
      'fn',
    );
    expect(invalidField(() => synchronized({} as LockProvider, 'k', fn, { holdDurationMs: 100 }))).toBe(
      'provider',
    );
  });
});

describe('@synchronizedLock (TC39 standard decorator)', () => {
  it('serialises a method across instances under ClassName.methodName, subclasses included', async () => {
    const overlap = new Overlap();
    const store = new MemoryLockStore();
    const seenKeys: string[] = [];
    class Ledger {
      constructor(readonly locks: LockProvider) {}
      @synchronizedLock((self: Ledger) => self.locks, { holdDurationMs: 2_000 })
      async post(amount: number): Promise<number> {
        seenKeys.push(currentLease()?.key ?? 'none');
        return overlap.body(amount, 5);
      }
    }
    class AuditedLedger extends Ledger {}
    const ledgers = memoryInstances(3, store).map((provider, i) =>
      i === 2 ? new AuditedLedger(provider) : new Ledger(provider),
    );
    const totals = await Promise.all(Array.from({ length: 12 }, (_, n) => ledgers[n % 3]?.post(n)));
    expect(totals).toEqual(Array.from({ length: 12 }, (_, n) => n));
    expect(overlap.max).toBe(1);
    expect(new Set(seenKeys)).toEqual(new Set(['Ledger.post']));
  });

  it('uses an explicit key and a static provider, and works on static methods', async () => {
    const provider = createMemoryProvider();
    providers.push(provider);
    class Billing {
      @synchronizedLock(provider, { key: 'billing:invoice', holdDurationMs: 1_000 })
      async invoice(): Promise<string | undefined> {
        return currentLease()?.key;
      }
      @synchronizedLock(provider, { holdDurationMs: 1_000 })
      static async closeMonth(): Promise<string | undefined> {
        return currentLease()?.key;
      }
    }
    expect(await new Billing().invoice()).toBe('billing:invoice');
    expect(await Billing.closeMonth()).toBe('Billing.closeMonth');
  });

  it('refuses a private method without an explicit key, at class definition', () => {
    const provider = createMemoryProvider();
    expect(() => {
      class Hidden {
        @synchronizedLock(provider, { holdDurationMs: 1_000 })
        async #secret(): Promise<void> {}
        run() {
          return this.#secret();
        }
      }
      return Hidden;
    }).toThrow(InvalidArgumentError);
  });

  it('validates its options where the decorator is written', () => {
    const provider = createMemoryProvider();
    expect(() => synchronizedLock(provider, { holdDurationMs: -5 })).toThrow(/holdDurationMs/);
    expect(() => synchronizedLock('redis' as never, { holdDurationMs: 5 })).toThrow(/provider/);
  });
});

describe('@schedulerLock (TC39 standard decorator)', () => {
  it("mode 'leader': one call per tick runs; a call within lockAtLeastForMs (clock skew) is skipped", async () => {
    const store = new MemoryLockStore();
    const runs: string[] = [];
    class Reports {
      constructor(
        readonly locks: LockProvider,
        readonly name: string,
      ) {}
      @schedulerLock((self: Reports) => self.locks, { lockAtMostForMs: 5_000, lockAtLeastForMs: 150 })
      async weekly(): Promise<void> {
        runs.push(this.name);
      }
    }
    const [early, late] = memoryInstances(2, store).map(
      (provider, i) => new Reports(provider, `instance-${i}`),
    );
    // The same tick fired 60 ms apart, as by two instances whose clocks differ by 60 ms.
    const startedAt = performance.now();
    const earlyRun = early?.weekly();
    await sleep(60);
    await late?.weekly();
    expect(runs).toEqual(['instance-0']);
    expect((await providers[0]?.holder('Reports.weekly'))?.identity).toBeDefined();
    // A call returns once the lock is released: after lockAtLeastForMs, however fast the method.
    await earlyRun;
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(149);
    expect(await providers[0]?.holder('Reports.weekly')).toBeNull();
    await late?.weekly();
    expect(runs).toEqual(['instance-0', 'instance-1']);
  });

  it("mode 'followers' runs only where the elector is not the leader; 'all' everywhere", async () => {
    const store = new MemoryLockStore();
    const runs: string[] = [];
    const timings = { leaseDurationMs: 600, renewDeadlineMs: 400, retryPeriodMs: 100 };
    class Replica {
      readonly elector: LeaderElector;
      constructor(
        provider: LockProvider,
        readonly name: string,
      ) {
        this.elector = new LeaderElector(provider, { key: 'replicas', identity: name, ...timings });
      }
      @schedulerLock(createMemoryProvider(), { mode: 'followers', elector: (self: Replica) => self.elector })
      async pull(): Promise<void> {
        runs.push(`pull:${this.name}`);
      }
      @schedulerLock(createMemoryProvider(), { mode: 'all' })
      async heartbeat(): Promise<void> {
        runs.push(`beat:${this.name}`);
      }
    }
    const replicas = memoryInstances(2, store).map((provider, i) => new Replica(provider, `r${i}`));
    const stop = new AbortController();
    const running = replicas.map((replica) => replica.elector.run(stop.signal));
    const follower = replicas[1];
    // Before it has seen a leader, no instance counts as a follower: the first call would be skipped.
    expect(follower?.elector.isFollower()).toBe(false);
    while (!replicas.some((replica) => replica.elector.isFollower())) await sleep(5);
    const leader = replicas.find((replica) => replica.elector.isLeader());
    const followerNow = replicas.find((replica) => replica.elector.isFollower());
    expect(leader).toBeDefined();
    expect(followerNow).not.toBe(leader);
    for (const replica of replicas) {
      await replica.pull();
      await replica.heartbeat();
    }
    expect(runs.filter((run) => run.startsWith('pull'))).toEqual([`pull:${followerNow?.name}`]);
    expect(runs.filter((run) => run.startsWith('beat'))).toEqual(['beat:r0', 'beat:r1']);
    stop.abort();
    await Promise.all(running);
  });

  it('rejects invalid options at the decorator', () => {
    const provider = createMemoryProvider();
    expect(() => schedulerLock(provider, { lockAtMostForMs: 100 })).toThrow(/lockAtLeastForMs/);
    expect(() => schedulerLock(provider, { mode: 'followers' })).toThrow(/elector/);
    expect(() => schedulerLock(provider, { mode: 'all', lockAtLeastForMs: 5 })).toThrow(/lockAtLeastForMs/);
    expect(() => schedulerLock(provider, { mode: 'slave' as never })).toThrow(/mode/);
  });
});
