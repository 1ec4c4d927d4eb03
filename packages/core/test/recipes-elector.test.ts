import { afterEach, describe, expect, it } from 'vitest';
import {
  BackendUnavailableError,
  type HolderInfo,
  InvalidArgumentError,
  LeaderElector,
  type LeaderElectorOptions,
  type Lease,
  type LockDriver,
  LockLostError,
  type LockProvider,
  MemoryLockStore,
  type MemoryTicket,
  ProviderClosedError,
  createLockProvider,
  createMemoryDriver,
  createMemoryProvider,
  leaderOf,
  roleOf,
} from '../src/index.js';
import { invalidField, sleep, until } from './recipes-support.js';

const fast = { leaseDurationMs: 600, renewDeadlineMs: 400, retryPeriodMs: 100 } as const;
/**
 * For guarantees that one term lasts: a renew deadline that outlives a 2 s stall of a busy machine
 * (the fast one ends a term at a 400 ms stall, which is the elector working, not a defect).
 */
const steady = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 100 } as const;

/** One elector per simulated instance, each over its own provider on one shared store. */
class Instance {
  readonly events: string[] = [];
  readonly leaders: string[] = [];
  readonly errors: Array<{ error: unknown; source: string }> = [];
  readonly controller = new AbortController();
  readonly elector: LeaderElector;
  termSignal: AbortSignal | undefined;
  running: Promise<void> | undefined;

  constructor(
    readonly provider: LockProvider,
    readonly name: string,
    options: Partial<LeaderElectorOptions> = {},
  ) {
    this.elector = new LeaderElector(provider, {
      key: 'service-a',
      identity: name,
      ...fast,
      onStartedLeading: (signal) => {
        this.termSignal = signal;
        this.events.push('started');
      },
      onStoppedLeading: () => {
        this.events.push('stopped');
      },
      onNewLeader: (identity) => {
        this.leaders.push(identity);
      },
      onError: (error, source) => {
        this.errors.push({ error, source });
      },
      ...options,
    });
  }

  start(): this {
    this.running = this.elector.run(this.controller.signal);
    return this;
  }

  async cancel(): Promise<void> {
    this.controller.abort();
    await this.running;
  }
}

const open: Instance[] = [];
function instances(
  count: number,
  options: Partial<LeaderElectorOptions> = {},
  store = new MemoryLockStore(),
) {
  const made = Array.from(
    { length: count },
    (_, i) => new Instance(createMemoryProvider({ store }), `instance-${i + 1}`, options),
  );
  open.push(...made);
  return made;
}
const leadersAmong = (group: Instance[]) => group.filter((instance) => instance.elector.isLeader());

afterEach(async () => {
  for (const instance of open.splice(0)) {
    await instance.cancel();
    await instance.provider.close();
  }
});

describe('LeaderElector: configuration', () => {
  const provider = createMemoryProvider();
  const make = (options: Partial<LeaderElectorOptions>) => () =>
    new LeaderElector(provider, { key: 'k', ...fast, ...options });

  it('requires leaseDurationMs > renewDeadlineMs, naming leaseDurationMs', () => {
    expect(make({ leaseDurationMs: 400 })).toThrow(InvalidArgumentError);
    expect(make({ leaseDurationMs: 400 })).toThrow(/leaseDurationMs: 400.*renewDeadlineMs \(400\)/);
  });

  it('requires renewDeadlineMs > 1.2 × retryPeriodMs, naming renewDeadlineMs', () => {
    expect(make({ renewDeadlineMs: 120 })).toThrow(/renewDeadlineMs: 120.*1\.2 × retryPeriodMs \(120\)/);
    expect(make({ renewDeadlineMs: 121 })).not.toThrow();
  });

  it('rejects non-durations, bad keys, identities and callbacks with the field named', () => {
    expect(invalidField(make({ retryPeriodMs: Number.NaN }))).toBe('retryPeriodMs');
    expect(invalidField(make({ leaseDurationMs: -1 }))).toBe('leaseDurationMs');
    expect(invalidField(make({ key: '' }))).toBe('key');
    expect(invalidField(make({ identity: '' }))).toBe('identity');
    expect(invalidField(make({ releaseOnCancel: 'yes' as unknown as boolean }))).toBe('releaseOnCancel');
    expect(invalidField(make({ onNewLeader: 42 as unknown as () => void }))).toBe('onNewLeader');
    expect(invalidField(() => new LeaderElector({} as LockProvider, { key: 'k' }))).toBe('provider');
  });

  it('derives renewDeadline and retryPeriod from leaseDuration: 45 s / 30 s / 15 s by default', () => {
    const elector = new LeaderElector(provider, { key: 'k' });
    expect([elector.leaseDurationMs, elector.renewDeadlineMs, elector.retryPeriodMs]).toEqual([
      45_000, 30_000, 15_000,
    ]);
    const scaled = new LeaderElector(provider, { key: 'k', leaseDurationMs: 3_000 });
    expect([scaled.renewDeadlineMs, scaled.retryPeriodMs]).toEqual([2_000, 1_000]);
  });

  it('run() and observe() end with ProviderClosedError on a closed provider instead of retrying forever', async () => {
    const closed = createMemoryProvider();
    await closed.close();
    const errors: string[] = [];
    const elector = new LeaderElector(closed, {
      key: 'k',
      ...fast,
      onError: (_e, source) => errors.push(source),
    });
    await expect(elector.run()).rejects.toBeInstanceOf(ProviderClosedError);
    await expect(elector.observe().next()).rejects.toBeInstanceOf(ProviderClosedError);
    expect(errors.filter((source) => source !== 'observe')).toEqual([]);
  });

  it('refuses a second concurrent run of one elector', async () => {
    const [only] = instances(1);
    only?.start();
    await expect(only?.elector.run()).rejects.toThrow(InvalidArgumentError);
  });
});

describe('LeaderElector: callbacks', () => {
  it('elects exactly one leader and tells every instance who it is', async () => {
    const group = instances(3, steady).map((instance) => instance.start());
    await until(() => leadersAmong(group).length === 1, 5_000, 'a leader');
    const [leader] = leadersAmong(group);
    await until(
      () => group.every((instance) => instance.leaders.length > 0),
      5_000,
      'onNewLeader everywhere',
    );
    for (const instance of group) expect(instance.leaders).toEqual([leader?.name]);
    expect(leader?.events).toEqual(['started']);
    // Past one whole lease: only renewals keep the same leader, and nobody started or stopped a term.
    await sleep(steady.leaseDurationMs + 500);
    expect(leadersAmong(group)).toEqual([leader]);
    expect(group.flatMap((instance) => instance.events)).toEqual(['started']);
    expect(group.flatMap((instance) => instance.errors)).toEqual([]);
  });

  it('on cancel with releaseOnCancel: onStoppedLeading once, then a new leader long before the lease would expire', async () => {
    const group = instances(3, { ...steady, releaseOnCancel: true }).map((instance) => instance.start());
    await until(() => leadersAmong(group).length === 1);
    const [first] = leadersAmong(group);
    if (!first) throw new Error('no leader');
    const signal = first.termSignal;
    const cancelledAt = performance.now();
    await first.cancel();
    expect(signal?.aborted).toBe(true);
    expect(first.events).toEqual(['started', 'stopped']);
    const rest = group.filter((instance) => instance !== first);
    await until(() => leadersAmong(rest).length === 1, 5_000, 'a new leader');
    // Released: well before the lease would lapse (2.9–3 s after the cancel, the test below).
    expect(performance.now() - cancelledAt).toBeLessThan(steady.renewDeadlineMs);
    const [second] = leadersAmong(rest);
    await until(
      () => rest.every((instance) => instance.leaders.at(-1) === second?.name),
      5_000,
      'onNewLeader',
    );
  });

  it('on cancel without releaseOnCancel: the lease is left to expire before anyone else leads', async () => {
    const group = instances(2).map((instance) => instance.start());
    await until(() => leadersAmong(group).length === 1);
    const [first] = leadersAmong(group);
    const other = group.find((instance) => instance !== first);
    const cancelledAt = performance.now();
    await first?.cancel();
    expect(first?.events).toEqual(['started', 'stopped']);
    await until(() => other?.elector.isLeader() ?? false, 5_000, 'the other to lead');
    // The lease was last renewed at most one retryPeriod before the cancel.
    expect(performance.now() - cancelledAt).toBeGreaterThan(fast.leaseDurationMs - fast.retryPeriodMs - 20);
  });

  it('on cancel without releaseOnCancel, on a session-held backend: the claim ends leaseDurationMs after its last renewal (issue 12 #3)', async () => {
    const store = new MemoryLockStore();
    const group = [new Instance(sessionHeld(store), 'a'), new Instance(sessionHeld(store), 'b')];
    open.push(...group);
    for (const instance of group) instance.start();
    await until(() => leadersAmong(group).length === 1);
    const [first] = leadersAmong(group);
    const other = group.find((instance) => instance !== first);
    const cancelledAt = performance.now();
    await first?.cancel();
    await until(() => other?.elector.isLeader() ?? false, 5_000, 'the other to lead');
    const tookMs = performance.now() - cancelledAt;
    // Not at once (the cancelled leader's work may still drain), and not later than a ttl lease's expiry.
    expect(tookMs).toBeGreaterThan(fast.leaseDurationMs - fast.retryPeriodMs - 20);
    expect(tookMs).toBeLessThan(fast.leaseDurationMs + 1_000);
  });

  it('a cancelled elector that runs again on the same session-held provider leads once its abandoned claim has ended', async () => {
    const instance = new Instance(sessionHeld(new MemoryLockStore()), 'alone');
    open.push(instance);
    instance.start();
    await until(() => instance.elector.isLeader());
    await instance.cancel();
    const again = new AbortController();
    const restartedAt = performance.now();
    const running = instance.elector.run(again.signal);
    await until(() => instance.elector.isLeader(), 5_000, 'the elector to lead again');
    expect(performance.now() - restartedAt).toBeLessThan(fast.leaseDurationMs + 1_000);
    again.abort();
    await running;
  });

  it('aborts the leader signal at the renew deadline, before its lease can expire, when the backend is cut off', async () => {
    const store = new MemoryLockStore();
    const flaky = new FlakyProvider(createMemoryProvider({ store }));
    const leader = new Instance(flaky, 'flaky');
    open.push(leader);
    const [other] = instances(1, {}, store);
    leader.start();
    await until(() => leader.elector.isLeader());
    other?.start();
    const underlying = flaky.leases[0];
    const timeline: string[] = [];
    let abortedAt = 0;
    leader.termSignal?.addEventListener('abort', () => {
      abortedAt = performance.now();
      timeline.push(`term aborted, lease ${underlying?.signal.aborted ? 'expired' : 'still valid'}`);
    });
    underlying?.signal.addEventListener('abort', () => timeline.push('lease expired'));
    flaky.broken = true;
    await until(() => other?.elector.isLeader() ?? false, 5_000, 'the other instance to take over');
    timeline.push('other leads');
    expect(timeline).toEqual(['term aborted, lease still valid', 'lease expired', 'other leads']);
    // The deadline is renewDeadlineMs after the last renewal that succeeded was sent: never sooner. (50
    // ms: the elector stamps the send just before FlakyProvider does, and a busy machine may preempt it
    // in between; a deadline counted from the renewal before would come retryPeriodMs = 100 ms sooner.)
    // How late after it the deadline timer fires depends on the machine's load (a stalled process fires
    // both timers late, and renewals start late too, so the break is no fixed time after the last
    // success); what is promised is the order above: the term ends while the lease is still valid.
    expect(abortedAt - flaky.lastRenewalSentAt).toBeGreaterThan(fast.renewDeadlineMs - 50);
    expect(leader.termSignal?.reason).toBeInstanceOf(LockLostError);
    expect(String(leader.termSignal?.reason)).toMatch(/renewDeadlineMs=400/);
    expect(leader.events).toEqual(['started', 'stopped']);
    const failedSources = new Set(leader.errors.map(({ source }) => source));
    expect(failedSources).toEqual(new Set(['renew', 'release']));
    expect(leader.errors.every(({ error }) => error instanceof BackendUnavailableError)).toBe(true);
  });

  it('isLeader() checks the deadline against the clock, so a process that was stalled steps down before acting', async () => {
    const [leader] = instances(1).map((instance) => instance.start());
    await until(() => leader?.elector.isLeader() ?? false);
    // Block the event loop past the renew deadline, as SIGSTOP or a long GC pause would.
    const stalledUntil = performance.now() + fast.renewDeadlineMs + 50;
    while (performance.now() < stalledUntil) {
      // busy: no timer can run
    }
    expect(leader?.termSignal?.aborted).toBe(false);
    expect(leader?.elector.isLeader()).toBe(false);
    expect(leader?.termSignal?.aborted).toBe(true);
    await until(() => leader?.events.includes('stopped') ?? false);
  });

  it('ends the term at once when the lease is lost, and campaigns again', async () => {
    const store = new MemoryLockStore();
    const [leader] = instances(1, {}, store).map((instance) => instance.start());
    await until(() => leader?.elector.isLeader() ?? false);
    const firstTerm = leader?.termSignal;
    store.forceRelease('service-a');
    await until(() => firstTerm?.aborted ?? false, 1_000, 'the term to end on the next renewal');
    expect(firstTerm?.reason).toBeInstanceOf(LockLostError);
    await until(() => leader?.events.length === 3, 5_000, 'a second term');
    expect(leader?.events).toEqual(['started', 'stopped', 'started']);
  });

  it('resign() hands over to a waiting instance and campaigns again only after retryPeriod', async () => {
    // A retry period long against a busy machine's stall: the waiting instance, woken by the release,
    // must lead before the resigned one campaigns again.
    const slowRetry = { retryPeriodMs: 1_000, renewDeadlineMs: 1_500, leaseDurationMs: 2_000 };
    const group = instances(2, slowRetry).map((instance) => instance.start());
    await until(() => leadersAmong(group).length === 1);
    const [first] = leadersAmong(group);
    const second = group.find((instance) => instance !== first);
    const resignedAt = performance.now();
    await first?.elector.resign();
    expect(first?.events).toEqual(['started', 'stopped']);
    expect(first?.elector.isLeader()).toBe(false);
    await until(() => second?.elector.isLeader() ?? false, slowRetry.retryPeriodMs, 'the waiting instance');
    // Woken by the release: before the resigned instance campaigns again (1 s) and before the waiter's
    // own 1 s fallback re-check.
    expect(performance.now() - resignedAt).toBeLessThan(700);
    await second?.elector.resign();
    await until(() => first?.elector.isLeader() ?? false, 5_000, 'the first instance again');
    expect(first?.events).toEqual(['started', 'stopped', 'started']);
    await first?.elector.resign();
    expect(await new Instance(createMemoryProvider(), 'idle').elector.resign()).toBeUndefined();
  });

  it('a throwing onStartedLeading goes to onError and the leader resigns; nothing escapes unhandled', async () => {
    const failure = new Error('leader work crashed');
    let calls = 0;
    const [leader] = instances(1, {
      onStartedLeading: async () => {
        calls++;
        throw failure;
      },
    }).map((instance) => instance.start());
    await until(() => (leader?.errors.length ?? 0) > 0);
    expect(leader?.errors[0]).toEqual({ error: failure, source: 'onStartedLeading' });
    await until(() => leader?.events.includes('stopped') ?? false);
    await until(() => calls >= 2, 2_000, 'a new campaign after retryPeriod');
  });

  it('callback errors without onError are logged, not thrown', async () => {
    const logged: unknown[][] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => logged.push(args);
    try {
      const [leader] = instances(1, {
        onError: undefined,
        onNewLeader: () => {
          throw new Error('observer broke');
        },
      }).map((instance) => instance.start());
      await until(() => logged.length > 0);
      expect(String(logged[0]?.[0])).toMatch(/LeaderElector "service-a": onNewLeader failed/);
      expect(leader?.elector.isLeader()).toBe(true);
    } finally {
      console.error = original;
    }
  });
});

describe('LeaderElector: instance roles and observation', () => {
  it('answers isLeader / isFollower / leader / roleOf for this and any other instance', async () => {
    const group = instances(3).map((instance) => instance.start());
    await until(() => leadersAmong(group).length === 1);
    const [leader] = leadersAmong(group);
    const follower = group.find((instance) => instance !== leader);
    if (!leader || !follower) throw new Error('no roles');
    await until(() => follower.elector.isFollower(), 2_000, 'the follower to observe the leader');
    expect(leader.elector.isFollower()).toBe(false);
    expect(await follower.elector.leader()).toBe(leader.name);
    expect(await follower.elector.roleOf(leader.name)).toBe('leader');
    expect(await leader.elector.roleOf(follower.name)).toBe('follower');
    expect(await leaderOf(follower.provider, 'service-a')).toBe(leader.name);
    expect(await roleOf(follower.provider, 'service-a', follower.name)).toBe('follower');
  });

  it('observe() yields the current leader first and each change it observes after', async () => {
    const group = instances(2, { releaseOnCancel: true });
    const [first, second] = group;
    if (!first || !second) throw new Error('unreachable');
    const seen: Array<HolderInfo | null> = [];
    const stop = new AbortController();
    const observing = (async () => {
      for await (const holder of first.elector.observe(stop.signal)) seen.push(holder);
    })();
    await until(() => seen.length === 1);
    expect(seen[0]).toBeNull();
    first.start();
    await until(() => seen.length === 2);
    second.start();
    await first.cancel();
    await until(() => seen.at(-1)?.identity === second.name, 5_000, 'the hand-over');
    stop.abort();
    await observing;
    expect(seen.filter(Boolean).map((holder) => holder?.identity)).toEqual([first.name, second.name]);
  });

  it('campaigns on provider.election and reads leaders from it when the backend has a native election', async () => {
    const election = createMemoryProvider();
    const locks = createMemoryProvider();
    const provider = new NativeElectionProvider(locks, election);
    const [leader] = [new Instance(provider, 'native')];
    if (!leader) throw new Error('unreachable');
    open.push(leader);
    leader.start();
    await until(() => leader.elector.isLeader());
    expect((await election.holder('service-a'))?.identity).toBe('native');
    expect(await locks.holder('service-a')).toBeNull();
    expect(await leaderOf(provider, 'service-a')).toBe('native');
    await leader.cancel();
    await election.close();
  });

  it('uses watchHolder pushes instead of polling when the provider has them', async () => {
    const store = new MemoryLockStore();
    const slowPoll = { leaseDurationMs: 6_000, renewDeadlineMs: 4_000, retryPeriodMs: 2_000 };
    const pushing = new PushingProvider(createMemoryProvider({ store }));
    const watcher = new Instance(pushing, 'watcher', slowPoll);
    open.push(watcher);
    const [leader] = instances(1, slowPoll, store);
    watcher.start();
    await until(() => watcher.elector.isLeader());
    leader?.start();
    await watcher.elector.resign();
    // With polling this would take up to retryPeriod (2 s); the push arrives within milliseconds.
    await until(() => watcher.leaders.at(-1) === leader?.name, 1_000, 'a pushed leader change');
  });
});

/** A provider whose leases' extensions and releases fail with BackendUnavailableError while `broken` is set. */
/**
 * A memory provider whose locks are session-held, as on etcd and ZooKeeper: a grant has no expiry of
 * its own (validUntil Infinity) and lives until it is released.
 */
function sessionHeld(store: MemoryLockStore): LockProvider {
  const inner = createMemoryDriver(store);
  const forever = 3_600_000;
  const driver: LockDriver<MemoryTicket, MemoryTicket> = {
    backend: inner.backend,
    address: inner.address,
    capabilities: { ...inner.capabilities, expiry: 'session' },
    limits: inner.limits,
    attempt: async (request, ticket) => {
      const result = await inner.attempt({ ...request, ttlMs: forever }, ticket);
      if (result.outcome !== 'granted') return result;
      return { outcome: 'granted', grant: { ...result.grant, validUntil: Number.POSITIVE_INFINITY } };
    },
    waitForChange: (request, ticket, maxWaitMs) =>
      inner.waitForChange({ ...request, ttlMs: forever }, ticket, maxWaitMs),
    withdraw: (request, ticket) => inner.withdraw({ ...request, ttlMs: forever }, ticket),
    extend: async (key, grant) => {
      await inner.extend(key, grant, forever);
      return Number.POSITIVE_INFINITY;
    },
    release: (key, grant) => inner.release(key, grant),
    holder: (key) => inner.holder(key),
    close: () => inner.close(),
  };
  return createLockProvider(driver);
}

class FlakyProvider implements LockProvider {
  broken = false;
  readonly leases: Lease[] = [];
  /** When the last renewal that succeeded was sent (performance.now()). */
  lastRenewalSentAt = 0;
  constructor(readonly inner: LockProvider) {}
  get backend() {
    return this.inner.backend;
  }
  get capabilities() {
    return this.inner.capabilities;
  }
  async acquire(key: string, options?: Parameters<LockProvider['acquire']>[1]): Promise<Lease> {
    const lease = await this.inner.acquire(key, options);
    this.leases.push(lease);
    const flaky = this;
    const wrapped: Lease = {
      key: lease.key,
      identity: lease.identity,
      token: lease.token,
      ttlMs: lease.ttlMs,
      get signal() {
        return lease.signal;
      },
      extend(ttlMs?: number) {
        if (flaky.broken) return Promise.reject(new BackendUnavailableError('memory', 'test', 'partitioned'));
        const sentAt = performance.now();
        return lease.extend(ttlMs).then(() => {
          flaky.lastRenewalSentAt = sentAt;
        });
      },
      release() {
        if (flaky.broken) return Promise.reject(new BackendUnavailableError('memory', 'test', 'partitioned'));
        return lease.release();
      },
      [Symbol.asyncDispose]: () => lease.release(),
    };
    return wrapped;
  }
  tryAcquire(key: string, options?: Parameters<LockProvider['tryAcquire']>[1]) {
    return this.inner.tryAcquire(key, options);
  }
  holder(key: string) {
    return this.inner.holder(key);
  }
  semaphore(name: string, options: Parameters<LockProvider['semaphore']>[1]) {
    return this.inner.semaphore(name, options);
  }
  readWriteLock(name: string) {
    return this.inner.readWriteLock(name);
  }
  close() {
    return this.inner.close();
  }
  [Symbol.asyncDispose]() {
    return this.inner.close();
  }
}

class NativeElectionProvider extends FlakyProvider {
  constructor(
    inner: LockProvider,
    readonly election: LockProvider,
  ) {
    super(inner);
  }
}

/** The memory provider plus a watchHolder that pushes changes within a few ms (standing in for a watch). */
class PushingProvider extends FlakyProvider {
  async *watchHolder(key: string, signal: AbortSignal): AsyncIterable<HolderInfo | null> {
    while (!signal.aborted) {
      yield await this.inner.holder(key);
      await sleep(5);
    }
  }
}
