import { randomBytes } from 'node:crypto';
import type { LabBackend } from '../discovery.js';
import { type Contender, nextLine, spawnContender } from '../faults/contenders.js';
import { SharedResource } from '../resource.js';
import type { FailoverRecord } from '../results.js';
import { LatencyRecorder, pause } from './histogram.js';

/** Longest wait for the waiter after the holder is killed: a ttl or a session timeout, with room. */
const TAKEOVER_TIMEOUT_MS = 60_000;
/** Time for the waiter's acquire to reach the backend before the holder dies. */
const WAITER_SETTLE_MS = 150;

/**
 * Holder SIGKILLed → next holder: one holder process and one waiting process per sample; the time from
 * the kill to the waiter's "acquired" line. It is about one ttl (or session timeout) for every backend:
 * a crashed holder releases nothing, so the lock has to lapse.
 */
export async function measureFailover(
  backend: LabBackend,
  endpoints: readonly string[],
  samples: number,
  expiry: { readonly ttlMs: number; readonly sessionTimeoutMs: number; readonly session: boolean },
  signal: AbortSignal,
): Promise<FailoverRecord | null> {
  const { ttlMs, sessionTimeoutMs } = expiry;
  const module = backend.contenderModule;
  if (module === null || samples < 1) return null;
  const resource = new SharedResource();
  await resource.start();
  const recorder = new LatencyRecorder();
  const started: Contender[] = [];
  const spawn = async (name: string, writesPerHold: number, key: string) => {
    const contender = await spawnContender({
      module,
      endpoints,
      key,
      ttlMs,
      resourceUrl: resource.url,
      name,
      writesPerHold,
      workMs: 50,
      maxHolds: 1,
      clockSkewMs: 0,
      connectTimeoutMs: 2_000,
      sessionTimeoutMs,
    });
    started.push(contender);
    return contender;
  };
  try {
    for (let sample = 0; sample < samples; sample++) {
      const key = `lab-failover-${randomBytes(3).toString('hex')}`;
      const [holder, waiter] = await Promise.all([spawn('holder', 100_000, key), spawn('waiter', 1, key)]);
      const holding = nextLine([holder], /^acquired /, 15_000, signal);
      holder.go();
      await holding;
      const waiting = nextLine([waiter], /^waiting$/, 15_000, signal);
      waiter.go();
      await waiting;
      await pause(WAITER_SETTLE_MS, signal);
      const takeover = nextLine([waiter], /^acquired /, TAKEOVER_TIMEOUT_MS, signal);
      const killedAt = performance.now();
      await holder.kill();
      await takeover;
      recorder.recordMs(performance.now() - killedAt);
      await waiter.finish();
    }
  } finally {
    await Promise.allSettled(started.map((contender) => contender.finish()));
    await resource.close();
  }
  return {
    samples: recorder.count,
    medianMs: recorder.percentileMs(50),
    maxMs: recorder.summary().maxMs,
    expiryMs: expiry.session ? sessionTimeoutMs : ttlMs,
  };
}
