// The weekly @Scheduled job that guarded itself with SETNX + GETSET on an expiry timestamp (which breaks
// when clocks differ and when the holder dies between the two commands). Here: a cron expression read by
// croner, in an explicit time zone; lockAtMostForMs frees the job if its runner crashes; lockAtLeastForMs
// keeps the lock long enough that an instance whose clock is behind (by less than that) finds the week's
// run already taken when its own timer fires.
import { type ScheduleOptions, scheduleExclusive } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

/** The production schedule: Mondays at 03:00 Berlin time. */
export const weeklyReport: ScheduleOptions = {
  name: 'weekly-report',
  cron: '0 0 3 * * MON',
  timezone: 'Europe/Berlin',
  lockAtMostForMs: 30 * 60_000,
  lockAtLeastForMs: 5 * 60_000,
};

export interface WeeklyReportResult {
  /** When the production schedule fires next, as scheduleExclusive computed it. */
  readonly nextWeeklyRun: Date | null;
  /** The demo's runs (a per-second cron): the tick's time → the instances that ran it. */
  readonly runsPerTick: ReadonlyMap<number, readonly string[]>;
}

export async function main(log: (line: string) => void = console.log): Promise<WeeklyReportResult> {
  const providers = await instanceProviders(3);
  const production = providers.map((provider) => scheduleExclusive(provider, weeklyReport, () => {}));
  const nextWeeklyRun = production[0]?.nextRunAt() ?? null;
  log(`weekly report: next run ${nextWeeklyRun?.toISOString()} (Monday 03:00 Europe/Berlin)`);
  await Promise.all(production.map((handle) => handle.stop()));

  // The same job on a per-second cron, so the example shows three instances sharing it in seconds.
  const runsPerTick = new Map<number, string[]>();
  const demo = providers.map((provider, i) =>
    scheduleExclusive(
      provider,
      { ...weeklyReport, cron: '* * * * * *', lockAtMostForMs: 5_000, lockAtLeastForMs: 300 },
      (_signal, tick) => {
        const at = tick.scheduledAt.getTime();
        runsPerTick.set(at, [...(runsPerTick.get(at) ?? []), `reporter-${i + 1}`]);
        log(`reporter-${i + 1}: report for the tick of ${tick.scheduledAt.toISOString()}`);
      },
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, 2_300));
  await Promise.all(demo.map((handle) => handle.stop()));
  await Promise.all(providers.map((provider) => provider.close()));
  return { nextWeeklyRun, runsPerTick };
}
