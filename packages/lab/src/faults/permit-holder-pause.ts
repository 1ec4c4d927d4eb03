import { untilHolding } from './contenders.js';
import { VICTIM_WORK_MS } from './holder-pause.js';
import {
  type FaultScenario,
  crossProcess,
  frozenPhrase,
  holderMidWrite,
  pauseHolderUntil,
  plural,
} from './scenario.js';

/** Two permits, four contenders: with the paused holder's permit taken over, three are inside. */
const LIMIT = 2;

/**
 * The process pause, for a semaphore: a permit holder is frozen past its ttl or session, the others
 * take both permits, and the holder wakes up to write as if it still held one — three holders inside
 * a limit of two. A resource that keeps only the newest `limit` tokens inside turns it away.
 */
export const permitHolderPause: FaultScenario = {
  id: 'semaphore-holder-pause',
  title: `Semaphore (limit ${LIMIT}): a permit holder paused past its ttl/session`,
  checks: { kind: 'semaphore', limit: LIMIT },
  appliesTo: (backend) => crossProcess(backend) && !backend.locksOnly,
  claim: () => 'fenced',

  async run(context) {
    const { holder, others } = await holderMidWrite(context, { writesPerHold: 8, workMs: VICTIM_WORK_MS }, [
      {},
      {},
      {},
    ]);
    // Resumed while the others hold both permits: its late write lands with them inside.
    await pauseHolderUntil(context, holder, others, (timeoutMs) =>
      untilHolding(others, LIMIT, timeoutMs, context.signal),
    );
  },

  explain({ backend, capabilities, verdict, metrics, observations, findings }) {
    const frozen = frozenPhrase(capabilities, observations, 'the other contenders held both permits');
    if (observations.takeoverMs === undefined) {
      return `${frozen} The limit held this time (${findings}), but a longer pause would have let a third holder in, as in the other backends.`;
    }
    const over = plural(metrics.overlaps, 'time', 'times');
    if (capabilities.fencing === 'monotonic') {
      return `${frozen} When it woke up it wrote anyway: more than ${LIMIT} holders were inside ${over} on an unprotected resource (at most ${metrics.mostInside ?? '?'} at once) — no semaphore can stop a paused process. But its token was older than the ${LIMIT} newest: a resource that keeps only the newest ${LIMIT} tokens inside refuses ${plural(metrics.staleWrites, 'late write')} and is over its limit ${plural(metrics.overlapsWithFencing ?? 0, 'time', 'times')}. ${verdict === 'held' ? `Pass ${backend.name}'s permit token to the resource and the limit holds there too.` : 'Here fencing did not keep the resource within the limit: a claimed guarantee failed.'}`;
    }
    return `${frozen} When it woke up it wrote anyway: ${findings}. ${backend.name}'s semaphore issues no fencing tokens (all permits carry the same token), so the resource cannot tell the stale holder from the current ones and is over its limit as often with fencing as without.`;
  },
};
