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

/** Readers hold long enough (reads × work) that a reader is inside most of the time. */
const READER = { primitive: { kind: 'read-write', mode: 'read' }, writesPerHold: 4, workMs: 100 } as const;
const WRITER = { primitive: { kind: 'read-write', mode: 'write' } } as const;

/**
 * The process pause, for a read-write lock: the writer is frozen past its ttl or session, readers
 * (and another writer) move in, and the writer wakes up to write while readers are reading — what a
 * reader must never see. A resource that refuses writes below the highest token it has seen, and
 * reads below the highest write token, turns the late write away.
 */
export const writerPause: FaultScenario = {
  id: 'read-write-writer-pause',
  title: 'Read-write lock: a writer paused past its ttl/session while readers read',
  checks: { kind: 'read-write' },
  appliesTo: (backend) => crossProcess(backend) && !backend.locksOnly,
  claim: () => 'fenced',

  async run(context) {
    const { holder, others } = await holderMidWrite(
      context,
      { ...WRITER, writesPerHold: 8, workMs: VICTIM_WORK_MS },
      [READER, READER, WRITER],
    );
    const readers = others.slice(0, 2);
    // Resumed while a reader holds: the writer's late write lands during that read.
    await pauseHolderUntil(context, holder, others, (timeoutMs) =>
      untilHolding(readers, 1, timeoutMs, context.signal),
    );
  },

  explain({ backend, capabilities, verdict, metrics, observations, findings }) {
    const frozen = frozenPhrase(capabilities, observations, 'readers held the lock');
    if (observations.takeoverMs === undefined) {
      return `${frozen} No write met a reader this time (${findings}), but a longer pause would have had the same effect as in the other backends.`;
    }
    const overReads = plural(metrics.writesOverReads ?? 0, 'write', 'writes');
    if (capabilities.fencing === 'monotonic') {
      return `${frozen} When it woke up it wrote anyway: ${overReads} landed while a reader was reading on an unprotected resource (${plural(metrics.overlaps, 'overlapping hold')} with a writer in them) — no lock can stop a paused process. But every reader admitted after it carries a larger token: a resource that refuses writes below the highest token it has seen refuses ${plural(metrics.staleWrites, 'late write')}, and ${plural(metrics.writesOverReadsWithFencing ?? 0, 'write', 'writes')} reach a reader there. ${verdict === 'held' ? `Pass ${backend.name}'s read and write tokens to the resource and readers never see a write in progress.` : 'Here fencing did not protect the readers: a claimed guarantee failed.'}`;
    }
    return `${frozen} When it woke up it wrote anyway: ${findings}. ${backend.name}'s read-write lock issues no fencing tokens, so the resource cannot tell the late writer from a current one, and readers see its write.`;
  },
};
