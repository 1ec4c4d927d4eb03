// Every example runs as a test, so the README's examples cannot rot. They run on the memory provider,
// or on a real backend when DLOCK_BACKEND and DLOCK_URL are set. DLOCK_EXAMPLE_LOG=1 prints their logs.
import { describe, expect, it } from 'vitest';
import { main as goStyleElector } from '../go-style-elector.js';
import { main as leaderGatedJob } from '../leader-gated-job.js';
import { main as masterSlaveJobs } from '../master-slave-jobs.js';
import { main as rateLimitedPool } from '../rate-limited-pool.js';
import { main as readWriteCache } from '../read-write-cache.js';
import { main as synchronizedMethod } from '../synchronized-method.js';
import { main as weeklyReport } from '../weekly-report.js';

const log = (line: string) => {
  if (process.env.DLOCK_EXAMPLE_LOG) console.log(line);
};

describe(`examples on ${process.env.DLOCK_BACKEND ?? 'memory'}`, () => {
  it('leader-gated-job: syncs run only on the elected leader, one at a time, kept alive by the watchdog', async () => {
    const result = await leaderGatedJob(log);
    expect(result.runs.length).toBeGreaterThanOrEqual(2);
    expect(new Set(result.runs)).toEqual(new Set([result.leader]));
    expect(result.maxConcurrent).toBe(1);
    expect(result.lostLocks).toBe(0);
  });

  it('go-style-elector: callbacks in order, and a prompt hand-over on cancel with ReleaseOnCancel', async () => {
    const result = await goStyleElector(log);
    expect(result.leaders).toHaveLength(2);
    const [first, second] = result.leaders;
    expect(result.events[first ?? '']).toEqual([
      `OnNewLeader(${first})`,
      expect.stringMatching(/^OnStartedLeading/),
      'OnStoppedLeading',
    ]);
    expect(result.events[second ?? '']).toEqual([
      `OnNewLeader(${first})`,
      `OnNewLeader(${second})`,
      expect.stringMatching(/^OnStartedLeading/),
      'OnStoppedLeading',
    ]);
    // Released on cancel: far sooner than the 900 ms lease would take to expire.
    expect(result.handoverMs).toBeLessThan(600);
  });

  it('master-slave-jobs: roles answer for any instance; master jobs on the master, slave jobs elsewhere', async () => {
    const result = await masterSlaveJobs(log);
    const slaves = Object.keys(result.roles).filter((id) => id !== result.master);
    expect(result.roles[result.master]).toBe('leader');
    for (const slave of slaves) expect(result.roles[slave]).toBe('follower');
    expect(result.masterRuns.length).toBeGreaterThanOrEqual(3);
    expect(new Set(result.masterRuns)).toEqual(new Set([result.master]));
    expect(new Set(result.slaveRuns)).toEqual(new Set(slaves));
  });

  it('synchronized-method: no lost update from three instances, under the ClassName.methodName key', async () => {
    const result = await synchronizedMethod(log);
    expect(result.finalStock).toBe(result.expectedStock);
    expect(result.maxConcurrent).toBe(1);
    expect(result.lockKey).toBe('InventoryService.reserve');
  });

  it('weekly-report: the cron runs on Mondays 03:00 Berlin time, and each tick on exactly one instance', async () => {
    const result = await weeklyReport(log);
    const next = result.nextWeeklyRun;
    const berlin = new Intl.DateTimeFormat('en-GB', {
      timeZone: 'Europe/Berlin',
      weekday: 'long',
      hour: '2-digit',
      minute: '2-digit',
    }).format(next ?? 0);
    expect(berlin).toBe('Monday 03:00');
    expect(result.runsPerTick.size).toBeGreaterThanOrEqual(2);
    for (const instances of result.runsPerTick.values()) expect(instances).toHaveLength(1);
  });

  it('rate-limited-pool: twelve workers on three instances never have more than the limit in flight', async () => {
    const result = await rateLimitedPool(log);
    expect(result.refused).toBe(0);
    expect(result.served).toBe(result.expectedCalls);
    expect(result.mostInFlight).toBeLessThanOrEqual(result.limit);
    // The permits are shared, not serialised: more than one call was in flight at some point.
    expect(result.mostInFlight).toBeGreaterThan(1);
    for (const holders of result.holdersSeen) {
      expect(holders.reduce((sum, holder) => sum + holder.permits, 0)).toBeLessThanOrEqual(result.limit);
      for (const holder of holders) expect(typeof holder.token).toBe('bigint');
    }
  });

  it('read-write-cache: readers share the lock, never see a half-built cache, and every rebuild gets its turn', async () => {
    const result = await readWriteCache(log);
    expect(result.rebuilds).toBe(result.expectedRebuilds);
    expect(result.inconsistentReads).toBe(0);
    expect(result.writesBesideReaders).toBe(0);
    expect(result.mostWritersTogether).toBe(1);
    expect(result.mostReadersTogether).toBeGreaterThan(1);
    expect(result.reads).toBeGreaterThan(0);
    // Readers never see an older rebuild after a newer one.
    expect(result.versionsSeen).toEqual([...result.versionsSeen].sort((a, b) => a - b));
  });
});
