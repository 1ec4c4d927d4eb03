import { randomBytes } from 'node:crypto';
import type { Capabilities, LockProvider } from '@dlock/core';
import type { LabBackend } from '../discovery.js';
import type {
  BenchmarkRecord,
  ContentionRecord,
  FailoverRecord,
  FloorRecord,
  LatencySummary,
  PercentilePoint,
} from '../results.js';
import type { ServerSet } from '../servers.js';
import { measureContention } from './contention.js';
import { measureFailover } from './failover.js';
import { measureHandoff } from './handoff.js';
import { measureUncontended } from './uncontended.js';

export interface BenchPlan {
  /** Time budget for one backend's benchmarks (ms), split across the measurements below. */
  readonly durationMs: number;
  /** Contender counts on one key; the largest also runs on as many keys. */
  readonly contenders: readonly number[];
  /** Lease ttl (ttl backends) or session timeout (session backends) of the holder killed in the failover measurement. */
  readonly failoverTtlMs: number;
  readonly failoverSessionTimeoutMs: number;
}

/** Separate clients shared by the contention loops: enough to contend for real, few enough for 2 cores. */
const MAX_PROVIDERS = 8;
const CONNECT_TIMEOUT_MS = 5_000;

export type StepReporter = (detail: string, fraction: number) => void;

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** Every benchmark for one backend, on servers already running. Failures become `errors`, not exceptions. */
export async function benchmarkBackend(
  backend: LabBackend,
  set: ServerSet | null,
  floor: FloorRecord | null,
  plan: BenchPlan,
  signal: AbortSignal,
  step: StepReporter,
): Promise<{ record: BenchmarkRecord; capabilities: Capabilities | null }> {
  const endpoints = set?.endpoints ?? [];
  const prefix = `lab-bench-${backend.name}-${randomBytes(3).toString('hex')}`;
  const maxContenders = Math.max(...plan.contenders, 2);
  const errors: string[] = [];
  const providers: LockProvider[] = [];
  let uncontended: (LatencySummary & { distribution: PercentilePoint[] }) | null = null;
  const contention: ContentionRecord[] = [];
  let handoff: LatencySummary | null = null;
  let failover: FailoverRecord | null = null;
  let capabilities: Capabilities | null = null;

  const attempt = async (what: string, run: () => Promise<void>) => {
    try {
      await run();
    } catch (error) {
      signal.throwIfAborted();
      errors.push(`${what}: ${errorText(error)}`);
    }
  };

  try {
    step('connecting', 0);
    await attempt('connect', async () => {
      for (let i = 0; i < Math.min(MAX_PROVIDERS, maxContenders); i++) {
        providers.push(await backend.createProvider(endpoints, { connectTimeoutMs: CONNECT_TIMEOUT_MS }));
      }
      capabilities = providers[0]?.capabilities ?? null;
    });
    const [first, second] = providers;
    if (first && second) {
      step('uncontended acquire+release', 0.05);
      await attempt('uncontended', async () => {
        const recorder = await measureUncontended(first, `${prefix}:solo`, plan.durationMs * 0.2, signal);
        uncontended = { ...recorder.summary(), distribution: recorder.distribution() };
      });
      const levels = [
        ...plan.contenders.map((count) => ({ contenders: count, keys: 1 })),
        { contenders: maxContenders, keys: maxContenders },
      ];
      const sliceMs = (plan.durationMs * 0.45) / levels.length;
      for (const [index, level] of levels.entries()) {
        step(
          `contention: ${level.contenders} contenders on ${level.keys} key${level.keys === 1 ? '' : 's'}`,
          0.25 + (0.45 * index) / levels.length,
        );
        await attempt(`contention ${level.contenders}/${level.keys}`, async () => {
          const { errors: failed, ...record } = await measureContention(
            providers,
            level.contenders,
            level.keys,
            `${prefix}:c${level.contenders}k${level.keys}`,
            sliceMs,
            signal,
          );
          contention.push(record);
          if (failed > 0)
            errors.push(`contention ${level.contenders}/${level.keys}: ${failed} failed acquires`);
        });
      }
      step('hand-off latency', 0.7);
      await attempt('hand-off', async () => {
        handoff = (
          await measureHandoff(first, second, `${prefix}:handoff`, plan.durationMs * 0.2, signal)
        ).summary();
      });
    }
    if (set && backend.contenderModule) {
      step('failover: holder SIGKILLed → next holder', 0.9);
      await attempt('failover', async () => {
        failover = await measureFailover(
          backend,
          endpoints,
          plan.durationMs >= 20_000 ? 2 : 1,
          {
            ttlMs: plan.failoverTtlMs,
            sessionTimeoutMs: plan.failoverSessionTimeoutMs,
            session: (capabilities as Capabilities | null)?.expiry === 'session',
          },
          signal,
        );
      });
    }
  } finally {
    await Promise.allSettled(providers.map((provider) => provider.close()));
  }
  const solo = uncontended as (LatencySummary & { distribution: PercentilePoint[] }) | null;
  return {
    capabilities,
    record: {
      backend: backend.name,
      uncontended: solo,
      floor,
      ratioToFloorP50: solo && floor ? Math.round((solo.p50Ms / floor.p50Ms) * 100) / 100 : null,
      contention,
      handoff,
      failover,
      errors,
    },
  };
}
