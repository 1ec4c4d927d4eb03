import type { LabBackend } from '../discovery.js';
import { type FaultScenario, countLines, crossProcess, serverKindOf } from './scenario.js';

/** How far the skewed contender's wall clock runs ahead, in multiples of the lease ttl. */
const SKEW_TTLS = 3;

/**
 * One client's wall clock runs ahead of the others. Backends that let the server decide expiry do not
 * care; a lock that compares expiry timestamps written by clients (the SETNX+GETSET pattern) breaks.
 */
export const clockSkew: FaultScenario = {
  id: 'clock-skew',
  title: "One client's wall clock runs ahead",
  appliesTo: crossProcess,
  claim: (backend: LabBackend) => (backend.wallClockExpiry ? 'unsafe' : 'safe'),

  async run(context) {
    const set = await context.startServers(serverKindOf(context.backend), context.backend.serverCount);
    const skewMs = SKEW_TTLS * context.timing.ttlMs;
    context.observe('skewMs', skewMs);
    context.step(`contenders run, one with its clock ${skewMs} ms ahead`);
    const hold = { writesPerHold: 4, workMs: 40 };
    const contenders = [
      ...(await context.spawnAndGo(2, set.endpoints, hold)),
      ...(await context.spawnAndGo(1, set.endpoints, { ...hold, clockSkewMs: skewMs })),
    ];
    await context.sleep(Math.max(context.timing.windowMs * 2, 3_000));
    context.observe('holds', countLines(contenders, /^acquired /));
  },

  explain({ backend, verdict, metrics, observations, findings }) {
    const skew = `One of three contenders had its wall clock ${observations.skewMs} ms ahead.`;
    if (backend.wallClockExpiry) {
      return verdict === 'known-unsafe'
        ? `${skew} It read every holder's expiry timestamp as already past and took live locks over with GETSET: ${findings}; its plain-DEL release then deleted other holders' locks as well. The pattern is only as safe as every client's clock is right.`
        : `${skew} This run happened not to catch the skewed client stealing a live lock (${findings}), but nothing in the pattern prevents it.`;
    }
    return verdict === 'held'
      ? `${skew} ${backend.name} decides expiry on the server, never by comparing client clocks, so the skewed client simply waited its turn: ${metrics.holds} holds, ${findings}.`
      : `${skew} The checker saw ${findings}: ${backend.name} depends on client clocks somewhere, which its claim does not allow.`;
  },
};
