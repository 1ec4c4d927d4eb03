import { randomBytes } from 'node:crypto';
import type { LabBackend } from '../discovery.js';
import { type Contender, nextLine, spawnContender } from '../faults/contenders.js';
import { SharedResource } from '../resource.js';
import type { FailoverRecord } from '../results.js';
import { figureOf } from './blocks.js';
import { pause } from './histogram.js';

/** Longest wait for a waiter after the holder is killed: a ttl or a session timeout, with room. */
const TAKEOVER_TIMEOUT_MS = 60_000;
/** Time for the waiters' acquires to reach the backend before the holder dies. */
const WAITER_SETTLE_MS = 150;

/**
 * Holder SIGKILLed → next holder, `samples` times: `samples + 1` contender processes queue on one key;
 * the holder is killed, and the time from the kill to another process's "acquired" line is one sample.
 * That process now holds, and is the next one killed. Each sample is about one ttl (or session
 * timeout) for every backend: a crashed holder releases nothing, so the lock has to lapse.
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
  if (module === null) return null;
  const resource = new SharedResource();
  await resource.start();
  const key = `lab-failover-${randomBytes(3).toString('hex')}`;
  const started: Contender[] = [];
  const takeovers: number[] = [];
  try {
    started.push(
      ...(await Promise.all(
        Array.from({ length: samples + 1 }, (_, index) =>
          spawnContender({
            module,
            endpoints,
            key,
            ttlMs,
            resourceUrl: resource.url,
            name: `failover-${index + 1}`,
            // Holds until killed: each process holds once, for far longer than the measurement.
            writesPerHold: 100_000,
            workMs: 50,
            maxHolds: 1,
            clockSkewMs: 0,
            connectTimeoutMs: 2_000,
            sessionTimeoutMs,
            primitive: { kind: 'lock' },
          }),
        ),
      )),
    );
    const [first, ...rest] = started as [Contender, ...Contender[]];
    const holding = nextLine([first], /^acquired /, 15_000, signal);
    first.go();
    let holder = await holding;
    for (const waiter of rest) {
      const waiting = nextLine([waiter], /^waiting$/, 15_000, signal, true);
      waiter.go();
      await waiting;
    }
    for (let sample = 0; sample < samples; sample++) {
      await pause(WAITER_SETTLE_MS, signal);
      const waiters = started.filter((contender) => contender !== holder && contender.running);
      const takeover = nextLine(waiters, /^acquired /, TAKEOVER_TIMEOUT_MS, signal);
      const killedAt = performance.now();
      await holder.kill();
      holder = await takeover;
      takeovers.push(performance.now() - killedAt);
    }
  } finally {
    await Promise.allSettled(started.map((contender) => contender.finish()));
    await resource.close();
  }
  return { takeoverMs: figureOf(takeovers), expiryMs: expiry.session ? sessionTimeoutMs : ttlMs };
}
