import { maybeNextLine } from './contenders.js';
import {
  type FaultScenario,
  crossProcess,
  frozenPhrase,
  holderMidWrite,
  pauseHolderUntil,
  plural,
} from './scenario.js';

/** How long the frozen holder sleeps between its read and its write: the pause lands in this window. */
export const VICTIM_WORK_MS = 400;

/**
 * The classic process pause: the holder checks its lease, is frozen (SIGSTOP — a GC pause, a VM
 * migration) past its ttl or session, and wakes up (SIGCONT) to write as if it still held the lock.
 * No lock service can prevent that write; only a resource that checks fencing tokens can refuse it.
 */
export const holderPause: FaultScenario = {
  id: 'holder-pause',
  title: 'Holder paused past its ttl/session (SIGSTOP … SIGCONT)',
  appliesTo: crossProcess,
  claim: () => 'fenced',

  async run(context) {
    const { holder, others } = await holderMidWrite(context, { writesPerHold: 8, workMs: VICTIM_WORK_MS });
    await pauseHolderUntil(context, holder, others, (timeoutMs) =>
      maybeNextLine(others, /^wrote /, timeoutMs, context.signal),
    );
  },

  explain({ backend, capabilities, verdict, metrics, observations, findings }) {
    const frozen = frozenPhrase(capabilities, observations, 'another contender took the lock');
    if (observations.takeoverMs === undefined) {
      return `${frozen} Nothing overlapped this time (${findings}), but a longer pause would have had the same effect as in the other backends.`;
    }
    if (capabilities.fencing === 'monotonic') {
      return `${frozen} When it woke up it wrote anyway (${plural(metrics.overlaps, 'overlapping hold')}, ${plural(metrics.lostUpdates, 'lost update')} on an unprotected resource — no lock can stop a paused process), but its token was lower than one the resource had already seen: a fencing resource rejects ${plural(metrics.staleWrites, 'stale write')} and loses ${plural(metrics.lostUpdatesWithFencing, 'update')}. ${verdict === 'held' ? `Pass ${backend.name}'s token to the resource and this case is covered.` : 'Here fencing did not protect the resource: a claimed guarantee failed.'}`;
    }
    return `${frozen} When it woke up it wrote anyway: ${findings}. ${backend.name} issues no fencing tokens, so the resource cannot tell the late write from a current one — use a backend with monotonic fencing when a pause must not corrupt data.`;
  },
};
