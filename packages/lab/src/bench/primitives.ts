import type { AcquireOptions, Lease, LockProvider } from '@dlock/core';
import type { DeclaredCapabilities } from '../discovery.js';
import type { PermitContentionRecord, ReadWriteRecord, SemaphoreRecord } from '../results.js';
import type { ServerSet } from '../servers.js';
import { serversLabel } from '../words.js';
import { figureOf, interleave } from './blocks.js';
import { MAX_PROVIDERS, MIN_BLOCK_MS } from './contention.js';
import { type Floor, openSemaphoreFloor } from './floor.js';
import { measureHandoff } from './handoff.js';
import type { LatencyRecorder } from './histogram.js';
import { type SemaphorePeer, openSemaphorePeers } from './peers.js';
import { type ReadWriteBlock, type ReadWriteTaker, measureReadWriteMix } from './read-write.js';
import { errorText, guarded, latencySummary, perContenderTotals } from './records.js';
import { type PermitContentionBlock, type PermitTaker, measurePermitContention } from './semaphore.js';
import type { Member } from './suite.js';
import { type LatencySubject, timeInterleaved } from './uncontended.js';

/** The limit of every semaphore figure: the issue's "32 contenders and limit 4". */
export const SEMAPHORE_LIMIT = 4;
/** Contenders of the contended semaphore figure and of the read-write mix. */
export const PRIMITIVE_CONTENDERS = 32;
/** How long a contender holds a permit or a read or write lease: long enough for holders to meet. */
const HOLD_MS = 1;
/** One operation in ten takes the write lock: 90 % reads, 10 % writes. */
const WRITE_EVERY = 10;
const BENCH_TTL_MS = 10_000;
/**
 * How much of a backend's budget the semaphore and read-write figures take (fractions of
 * `durationMs`, per backend, floor or peer), on top of the lock figures' share: they add a few
 * seconds per backend at the default --duration, most of it the blocks' minimum length.
 */
const SHARE = {
  uncontended: 0.05,
  floor: 0.03,
  peers: 0.03,
  contention: 0.1,
  handoff: 0.05,
  readWrite: 0.1,
} as const;
/**
 * The shortest contended block (ms), longer than a lock's: a FIFO waiter waits behind the 28 others in
 * line — a few hundred ms on a busy machine — and a wait longer than its block cannot show.
 */
const MIN_CONTENDED_BLOCK_MS = 600;

export interface PrimitivePlan {
  readonly durationMs: number;
  readonly rounds: number;
  /** Key prefix of this group's run. */
  readonly prefix: string;
  readonly capabilities: ReadonlyMap<string, DeclaredCapabilities | null>;
}

type Progress = (subject: string, detail: string) => void;

/** A dlock lease source (a semaphore, a read-write lock's side) as the measurements take it. */
function dlockTaker(source: { acquire(options: AcquireOptions): Promise<Lease> }): PermitTaker {
  return async (signal) => {
    const lease = await source.acquire({ ttlMs: BENCH_TTL_MS, signal });
    return () => lease.release();
  };
}

/** Something whose semaphore is measured: a backend (its providers) or a peer library. */
interface SemaphoreSubject {
  readonly kind: 'backend' | 'peer';
  readonly name: string;
  /** One taker per client, on the semaphore `key`. */
  takersFor(key: string): readonly PermitTaker[];
  /** Where this subject's problems go: the backend's errors, or the run's notes. */
  readonly errors: string[];
}

/** How long each contended block of a figure with this budget share runs (ms). */
const contendedBlockMs = (plan: PrimitivePlan, share: number) =>
  Math.max(MIN_CONTENDED_BLOCK_MS, (plan.durationMs * share) / plan.rounds);

function permitContentionRecord(
  blocks: readonly PermitContentionBlock[],
  blockMs: number,
): PermitContentionRecord {
  const perContender = perContenderTotals(blocks, PRIMITIVE_CONTENDERS);
  const operations = perContender.reduce((sum, count) => sum + count, 0);
  return {
    contenders: PRIMITIVE_CONTENDERS,
    holdMs: HOLD_MS,
    blockMs,
    operations,
    seconds: Math.round(blocks.reduce((sum, block) => sum + block.seconds, 0) * 1000) / 1000,
    opsPerSecond: figureOf(
      blocks.map((block) => block.perContender.reduce((sum, count) => sum + count, 0) / block.seconds),
    ),
    waitMs: latencySummary(blocks.map((block) => block.waits)),
    slowestShare: operations === 0 ? 0 : Math.round((Math.min(...perContender) / operations) * 1000) / 1000,
    mostInside: Math.max(0, ...blocks.map((block) => block.mostInside)),
  };
}

function readWriteRecord(
  backend: string,
  blocks: readonly ReadWriteBlock[],
  blockMs: number,
): ReadWriteRecord {
  const total = (count: (block: ReadWriteBlock) => number) =>
    blocks.reduce((sum, block) => sum + count(block), 0);
  return {
    backend,
    contenders: PRIMITIVE_CONTENDERS,
    writeShare: 1 / WRITE_EVERY,
    holdMs: HOLD_MS,
    blockMs,
    reads: total((block) => block.reads),
    writes: total((block) => block.writes),
    seconds: Math.round(total((block) => block.seconds) * 1000) / 1000,
    opsPerSecond: figureOf(blocks.map((block) => (block.reads + block.writes) / block.seconds)),
    readWaitMs: latencySummary(blocks.map((block) => block.readWaits)),
    writeWaitMs: latencySummary(blocks.map((block) => block.writeWaits)),
    mostReadersTogether: Math.max(0, ...blocks.map((block) => block.mostReaders)),
    conflicts: total((block) => block.conflicts),
  };
}

/**
 * Permit hand-off on a semaphore of SEMAPHORE_LIMIT: one lease holds limit − 1 permits throughout, so
 * the last permit goes back and forth between two clients, each release handed to the other's waiting
 * acquire (see measureHandoff). A semaphore's wake-up path, not the lock's, is what is timed.
 */
async function measurePermitHandoff(
  providers: readonly LockProvider[],
  key: string,
  budgetMs: number,
  signal: AbortSignal,
): Promise<LatencyRecorder> {
  const [first, second] = providers;
  if (!first || !second) throw new Error('a permit hand-off needs two clients');
  const semaphoreOf = (provider: LockProvider) => provider.semaphore(key, { limit: SEMAPHORE_LIMIT });
  const others = await semaphoreOf(first).acquire({
    ttlMs: BENCH_TTL_MS,
    waitMs: 5_000,
    permits: SEMAPHORE_LIMIT - 1,
  });
  try {
    return await measureHandoff(first, second, key, budgetMs, signal, (provider, _key, options) =>
      semaphoreOf(provider).acquire(options),
    );
  } finally {
    await others.release().catch(() => {});
  }
}

/** Semaphores of one server set: uncontended against the floor and the peers, then contended. */
async function benchmarkSemaphores(
  members: readonly Member[],
  set: ServerSet | null,
  plan: PrimitivePlan,
  signal: AbortSignal,
  progress: Progress,
  notes: string[],
): Promise<SemaphoreRecord[]> {
  const label = set ? serversLabel(set.kind, set.endpoints.length) : 'in-process';
  const budget = plan.durationMs;
  let floor: Floor | undefined;
  let peers: { peers: SemaphorePeer[]; close(): void } = { peers: [], close: () => {} };
  try {
    if (set) {
      progress(label, `semaphore floor: ${set.kind} raw round trips`);
      try {
        floor = await openSemaphoreFloor(set, `${plan.prefix}:semaphore-floor`, SEMAPHORE_LIMIT);
        if (!floor)
          notes.push(`${label}: no semaphore floor (its client library is not reachable from the lab)`);
      } catch (error) {
        signal.throwIfAborted();
        notes.push(`${label}: semaphore floor failed: ${errorText(error)}`);
      }
      peers = openSemaphorePeers(set, SEMAPHORE_LIMIT, MAX_PROVIDERS);
    }
    const subjects: SemaphoreSubject[] = [
      ...peers.peers.map((peer) => ({
        kind: 'peer' as const,
        name: peer.name,
        takersFor: (key: string) => peer.takersFor(key),
        errors: notes,
      })),
      ...members.map((member) => ({
        kind: 'backend' as const,
        name: member.backend.name,
        takersFor: (key: string) =>
          member.providers.map((provider) => dlockTaker(provider.semaphore(key, { limit: SEMAPHORE_LIMIT }))),
        errors: member.errors,
      })),
    ];

    const solo = (subject: SemaphoreSubject): LatencySubject => {
      const [take] = subject.takersFor(`${plan.prefix}:${subject.kind}:${subject.name}:semaphore-solo`);
      return {
        kind: subject.kind,
        name: subject.name,
        budgetMs: budget * (subject.kind === 'peer' ? SHARE.peers : SHARE.uncontended),
        operation: async () => {
          const release = await (take as PermitTaker)(signal);
          await release();
        },
      };
    };
    const timed = await timeInterleaved(
      [
        ...(floor
          ? [
              {
                kind: 'floor' as const,
                name: floor.protocol,
                budgetMs: budget * SHARE.floor,
                operation: floor.operation,
              },
            ]
          : []),
        ...subjects.map(solo),
      ],
      plan.rounds,
      signal,
      {
        onBlock: (subject, round) =>
          progress(
            subject.kind === 'backend' ? subject.name : label,
            `semaphore uncontended: ${subject.kind === 'floor' ? 'floor' : subject.name} (round ${round + 1}/${plan.rounds})`,
          ),
        failed: (subject, error) =>
          (
            subjects.find((entry) => entry.kind === subject.kind && entry.name === subject.name)?.errors ??
            notes
          ).push(
            `semaphore uncontended${subject.kind === 'backend' ? '' : ` (${label} ${subject.kind} ${subject.name})`}: ${errorText(error)}`,
          ),
        notes,
        label,
        figure: 'semaphore uncontended',
      },
    );

    const contention = await interleave(
      subjects,
      plan.rounds,
      async (subject, round) => {
        progress(
          subject.kind === 'backend' ? subject.name : label,
          `semaphore: ${PRIMITIVE_CONTENDERS} contenders, limit ${SEMAPHORE_LIMIT} (${subject.name}, round ${round + 1}/${plan.rounds})`,
        );
        // A fresh semaphore per block: waiters a previous block gave up on cannot be in this one's way.
        const block = await measurePermitContention(
          subject.takersFor(`${plan.prefix}:${subject.kind}:${subject.name}:semaphore-r${round}`),
          PRIMITIVE_CONTENDERS,
          HOLD_MS,
          contendedBlockMs(plan, SHARE.contention),
          signal,
        );
        if (block.errors > 0)
          subject.errors.push(`semaphore contention (${subject.name}): ${block.errors} failed acquires`);
        return block;
      },
      signal,
    );

    const handoff = await interleave(
      members,
      plan.rounds,
      async (member, round) => {
        progress(
          member.backend.name,
          `semaphore permit hand-off, limit ${SEMAPHORE_LIMIT} (round ${round + 1}/${plan.rounds})`,
        );
        return measurePermitHandoff(
          member.providers,
          `${plan.prefix}:${member.backend.name}:semaphore-handoff-r${round}`,
          Math.max(MIN_BLOCK_MS.handoff, (budget * SHARE.handoff) / plan.rounds),
          signal,
        );
      },
      signal,
    );

    return subjects.map((subject) => {
      const member =
        subject.kind === 'backend' ? members.find((m) => m.backend.name === subject.name) : undefined;
      const handoffFailure = member ? handoff.failures.get(member) : undefined;
      if (handoffFailure) subject.errors.push(`semaphore hand-off: ${errorText(handoffFailure)}`);
      const failure = contention.failures.get(subject);
      if (failure) subject.errors.push(`semaphore contention (${subject.name}): ${errorText(failure)}`);
      const latency = timed.latency(subject.kind, subject.name, subject.errors);
      let uncontended: SemaphoreRecord['uncontended'] = null;
      if (latency) {
        const { pooled: _, ...summary } = latency;
        uncontended = summary;
      }
      return {
        subject: subject.kind === 'peer' ? `${subject.name} · ${label}` : subject.name,
        origin: subject.kind,
        placement: set?.kind ?? 'in-process',
        serverCount: set?.endpoints.length ?? 0,
        limit: SEMAPHORE_LIMIT,
        uncontended,
        floor: timed.floor,
        ratioToFloorP50: latency ? timed.ratio(subject.kind, subject.name, subject.errors) : null,
        contention: guarded(`semaphore contention (${subject.name})`, subject.errors, () =>
          permitContentionRecord(
            contention.results.get(subject) ?? [],
            contendedBlockMs(plan, SHARE.contention),
          ),
        ),
        handoff: member
          ? guarded('semaphore hand-off', subject.errors, () =>
              latencySummary(handoff.results.get(member) ?? []),
            )
          : null,
      };
    });
  } finally {
    await floor?.close().catch(() => {});
    peers.close();
  }
}

/** Read-write locks of one server set: the read-mostly mix, the backends interleaved. */
async function benchmarkReadWrite(
  members: readonly Member[],
  plan: PrimitivePlan,
  signal: AbortSignal,
  progress: Progress,
): Promise<ReadWriteRecord[]> {
  const blocks = await interleave(
    members,
    plan.rounds,
    async (member, round) => {
      const name = member.backend.name;
      progress(
        name,
        `read-write: ${PRIMITIVE_CONTENDERS} contenders, 1 in ${WRITE_EVERY} writes (round ${round + 1}/${plan.rounds})`,
      );
      const key = `${plan.prefix}:${name}:rw-r${round}`;
      const takers: ReadWriteTaker[] = member.providers.map((provider) => {
        const lock = provider.readWriteLock(key);
        return { read: dlockTaker(lock.read), write: dlockTaker(lock.write) };
      });
      const block = await measureReadWriteMix(
        takers,
        PRIMITIVE_CONTENDERS,
        WRITE_EVERY,
        HOLD_MS,
        contendedBlockMs(plan, SHARE.readWrite),
        signal,
      );
      if (block.errors > 0) member.errors.push(`read-write: ${block.errors} failed acquires`);
      return block;
    },
    signal,
  );
  return members.flatMap((member) => {
    const failure = blocks.failures.get(member);
    if (failure) member.errors.push(`read-write: ${errorText(failure)}`);
    const record = guarded('read-write', member.errors, () =>
      readWriteRecord(
        member.backend.name,
        blocks.results.get(member) ?? [],
        contendedBlockMs(plan, SHARE.readWrite),
      ),
    );
    return record ? [record] : [];
  });
}

/**
 * The semaphore and read-write figures of one server set (or the in-process memory provider), for
 * the backends that have those primitives, on providers already connected. Failures become errors on
 * the backend or notes, as for the lock figures.
 */
export async function benchmarkPrimitives(
  members: readonly Member[],
  set: ServerSet | null,
  plan: PrimitivePlan,
  signal: AbortSignal,
  progress: Progress,
): Promise<{ semaphores: SemaphoreRecord[]; readWriteLocks: ReadWriteRecord[]; notes: string[] }> {
  const notes: string[] = [];
  const having = (primitive: 'semaphore' | 'readWrite') =>
    members.filter((member) => plan.capabilities.get(member.backend.name)?.[primitive]);
  const withSemaphores = having('semaphore');
  const withReadWrite = having('readWrite');
  const semaphores =
    withSemaphores.length > 0
      ? await benchmarkSemaphores(withSemaphores, set, plan, signal, progress, notes)
      : [];
  const readWriteLocks =
    withReadWrite.length > 0 ? await benchmarkReadWrite(withReadWrite, plan, signal, progress) : [];
  return { semaphores, readWriteLocks, notes };
}
