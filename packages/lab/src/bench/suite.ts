import { randomBytes } from 'node:crypto';
import type { LockProvider } from '@dlock/core';
import { type DeclaredCapabilities, type LabBackend, declaredCapabilities } from '../discovery.js';
import type {
  BenchmarkRecord,
  ContentionRecord,
  FailoverRecord,
  LatencyRecord,
  PeerRecord,
  ReadWriteRecord,
  SemaphoreRecord,
  UncontendedRecord,
} from '../results.js';
import type { ServerSet } from '../servers.js';
import { contentionLevel, serversLabel } from '../words.js';
import { MIN_BLOCKS, figureOf, interleave } from './blocks.js';
import {
  type ContentionBlock,
  type LockTaker,
  MAX_PROVIDERS,
  MIN_BLOCK_MS,
  measureContention,
  providerTaker,
} from './contention.js';
import { measureFailover } from './failover.js';
import { type Floor, openFloor } from './floor.js';
import { measureHandoff } from './handoff.js';
import { type ContentionPeer, type Peer, openContentionPeers, openPeers } from './peers.js';
import { benchmarkPrimitives } from './primitives.js';
import { errorText, guarded, latencySummary, perContenderTotals } from './records.js';
import { type LatencySubject, acquireAndRelease, timeInterleaved } from './uncontended.js';

export interface BenchPlan {
  /** Time budget per backend (ms), split across the measurements below. */
  readonly durationMs: number;
  /** Interleaved blocks per figure (at least MIN_BLOCKS). */
  readonly rounds: number;
  /** Contender counts on one key; the largest also runs on as many keys. */
  readonly contenders: readonly number[];
  /** Lease ttl (ttl backends) or session timeout (session backends) of the holders killed in the failover measurement. */
  readonly failoverTtlMs: number;
  readonly failoverSessionTimeoutMs: number;
}

/**
 * How a backend's budget is spent: these fractions of `durationMs` per backend, and per server set the
 * floor and the peer libraries. Each is split evenly over the rounds (and the levels or peers).
 */
const SHARE = { uncontended: 0.2, contention: 0.45, handoff: 0.2, floor: 0.1, peers: 0.15 } as const;
const CONNECT_TIMEOUT_MS = 5_000;

export type StepReporter = (subject: string, detail: string, fraction: number) => void;

export interface GroupResults {
  readonly benchmarks: BenchmarkRecord[];
  readonly peers: PeerRecord[];
  readonly semaphores: SemaphoreRecord[];
  readonly readWriteLocks: ReadWriteRecord[];
  readonly capabilities: Map<string, DeclaredCapabilities | null>;
  readonly notes: string[];
}

/** One backend of the group, connected. */
export interface Member {
  readonly backend: LabBackend;
  readonly providers: LockProvider[];
  readonly errors: string[];
}

function contentionRecord(
  contenders: number,
  keys: number,
  blocks: readonly ContentionBlock[],
): ContentionRecord {
  const perContender = perContenderTotals(blocks, contenders);
  const operations = perContender.reduce((sum, count) => sum + count, 0);
  const seconds = blocks.reduce((sum, block) => sum + block.seconds, 0);
  return {
    contenders,
    keys,
    operations,
    seconds: Math.round(seconds * 1000) / 1000,
    opsPerSecond: figureOf(
      blocks.map((block) => block.perContender.reduce((sum, count) => sum + count, 0) / block.seconds),
    ),
    busiestShare: operations === 0 ? 0 : Math.round((Math.max(...perContender) / operations) * 1000) / 1000,
    slowestShare: operations === 0 ? 0 : Math.round((Math.min(...perContender) / operations) * 1000) / 1000,
    waitMs: latencySummary(blocks.map((block) => block.waits)),
  };
}

/** Who runs a contention block: a backend (its providers) or a peer library (its clients). */
type ContentionSubject =
  | { readonly kind: 'backend'; readonly member: Member; readonly takers: readonly LockTaker[] }
  | { readonly kind: 'peer'; readonly peer: ContentionPeer; readonly takers: readonly LockTaker[] };

const subjectName = (subject: ContentionSubject) =>
  subject.kind === 'backend' ? subject.member.backend.name : subject.peer.name;

/**
 * Every benchmark for the backends sharing one server set (or the in-process memory provider), on
 * servers already running. Each figure is measured as `plan.rounds` blocks, interleaved across the
 * backends, the floor and the peer libraries of the set, so they are compared under the same load.
 * Failures become errors on the record, not exceptions (an abort still rejects).
 */
export async function benchmarkGroup(
  backends: readonly LabBackend[],
  set: ServerSet | null,
  plan: BenchPlan,
  signal: AbortSignal,
  step: StepReporter,
): Promise<GroupResults> {
  const label = set ? serversLabel(set.kind, set.endpoints.length) : 'in-process';
  const prefix = `lab-bench-${randomBytes(3).toString('hex')}`;
  const maxContenders = Math.max(...plan.contenders, 2);
  const levels = [
    ...plan.contenders.map((count) => ({ contenders: count, keys: 1 })),
    { contenders: maxContenders, keys: maxContenders },
  ];
  const notes: string[] = [];
  const members: Member[] = [];
  let floor: Floor | undefined;
  let peers: { peers: Peer[]; close(): void } = { peers: [], close: () => {} };
  let contentionPeers: { peers: ContentionPeer[]; close(): void } = { peers: [], close: () => {} };
  const budget = plan.durationMs;
  // Progress: blocks planned and done across the whole group.
  const plannedBlocks =
    plan.rounds * (backends.length * (2 + levels.length) + 1 + 2 + 1) + backends.length * 3;
  let doneBlocks = 0;
  const progress = (subject: string, detail: string) =>
    step(subject, detail, Math.min(1, doneBlocks / plannedBlocks));

  try {
    if (set) {
      progress(label, `floor: ${set.kind} raw round trips`);
      try {
        floor = await openFloor(set, `${prefix}:floor`);
        if (!floor)
          notes.push(`${label}: no floor measured (its client library is not reachable from the lab)`);
      } catch (error) {
        signal.throwIfAborted();
        notes.push(`${label}: floor measurement failed: ${errorText(error)}`);
      }
      peers = openPeers(set, `${prefix}:peer`);
      contentionPeers = openContentionPeers(set, Math.min(MAX_PROVIDERS, maxContenders));
    }
    for (const backend of backends) {
      const member: Member = { backend, providers: [], errors: [] };
      members.push(member);
      progress(backend.name, 'connecting');
      try {
        for (let i = 0; i < Math.min(MAX_PROVIDERS, maxContenders); i++) {
          member.providers.push(
            await backend.createProvider(set?.endpoints ?? [], { connectTimeoutMs: CONNECT_TIMEOUT_MS }),
          );
        }
      } catch (error) {
        signal.throwIfAborted();
        member.errors.push(`connect: ${errorText(error)}`);
      }
    }
    const ready = members.filter((member) => member.providers.length >= 2);

    // Uncontended latency: the backends, the floor and the peers, interleaved round by round.
    const subjects: LatencySubject[] = [
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
      ...peers.peers.map((peer) => ({
        kind: 'peer' as const,
        name: peer.name,
        budgetMs: (budget * SHARE.peers) / peers.peers.length,
        operation: () => peer.operation(),
      })),
      ...ready.map((member) => {
        const provider = member.providers[0] as LockProvider;
        const key = `${prefix}:${member.backend.name}:solo`;
        return {
          kind: 'backend' as const,
          name: member.backend.name,
          budgetMs: budget * SHARE.uncontended,
          operation: () => acquireAndRelease(provider, key),
        };
      }),
    ];
    const latency = await timeInterleaved(subjects, plan.rounds, signal, {
      onBlock: (subject, round) => {
        doneBlocks++;
        progress(
          subject.kind === 'backend' ? subject.name : label,
          `uncontended: ${subject.kind === 'floor' ? 'floor' : subject.name} (round ${round + 1}/${plan.rounds})`,
        );
      },
      failed: (subject, error) => {
        if (subject.kind === 'backend')
          members
            .find((m) => m.backend.name === subject.name)
            ?.errors.push(`uncontended: ${errorText(error)}`);
        else
          notes.push(
            `${label} ${subject.kind === 'floor' ? 'floor' : `peer ${subject.name}`}: ${errorText(error)}`,
          );
      },
      notes,
      label,
      figure: 'uncontended',
    });
    const floorRecord = latency.floor;

    // Contention: per level, the backends interleaved round by round; at the busiest one-key level
    // the peer libraries' waiting locks too, in the same rounds.
    const contention = new Map<Member, ContentionRecord[]>(ready.map((member) => [member, []]));
    const peerContention = new Map<string, ContentionRecord>();
    for (const level of levels) {
      const withPeers = level.keys === 1 && level.contenders === maxContenders;
      const subjects: ContentionSubject[] = [
        ...ready.map((member) => ({
          kind: 'backend' as const,
          member,
          takers: member.providers.map(providerTaker),
        })),
        ...(withPeers
          ? contentionPeers.peers.map((peer) => ({ kind: 'peer' as const, peer, takers: peer.takers }))
          : []),
      ];
      const where = contentionLevel(level.contenders, level.keys);
      const blocks = await interleave(
        subjects,
        plan.rounds,
        async (subject, round) => {
          const name = subjectName(subject);
          progress(
            subject.kind === 'backend' ? name : label,
            `contention: ${subject.kind === 'peer' ? `${name}, ` : ''}${where} (round ${round + 1}/${plan.rounds})`,
          );
          const block = await measureContention(
            subject.takers,
            level.contenders,
            level.keys,
            // A fresh key per block: waiters a previous block gave up on cannot be in this one's way.
            `${prefix}:${name.replace(/\s+/g, '-')}:c${level.contenders}k${level.keys}r${round}`,
            Math.max(MIN_BLOCK_MS.contention, (budget * SHARE.contention) / levels.length / plan.rounds),
            signal,
          );
          doneBlocks++;
          if (block.errors > 0) {
            const text = `contention ${where}: ${block.errors} failed acquires`;
            if (subject.kind === 'backend') subject.member.errors.push(text);
            else notes.push(`${label} peer ${name}: ${text}`);
          }
          return block;
        },
        signal,
      );
      for (const subject of subjects) {
        const errors = subject.kind === 'backend' ? subject.member.errors : notes;
        const what =
          subject.kind === 'backend'
            ? `contention ${where}`
            : `${label} peer ${subject.peer.name}: contention ${where}`;
        const failure = blocks.failures.get(subject);
        if (failure) errors.push(`${what}: ${errorText(failure)}`);
        const record = guarded(what, errors, () =>
          contentionRecord(level.contenders, level.keys, blocks.results.get(subject) ?? []),
        );
        if (!record) continue;
        if (subject.kind === 'backend') contention.get(subject.member)?.push(record);
        else peerContention.set(subject.peer.name, record);
      }
    }

    const peerRecords: PeerRecord[] = [];
    for (const peer of peers.peers) {
      const record = latency.latency('peer', peer.name, notes);
      if (!record || !set) continue;
      const { pooled: _, ...summary } = record;
      peerRecords.push({
        name: peer.name,
        label: `${peer.name} · ${label}`,
        placement: set.kind,
        serverCount: set.endpoints.length,
        ...summary,
        floorP50Ms: floorRecord?.p50Ms.median ?? null,
        ratioToFloorP50: latency.ratio('peer', peer.name, notes),
        contention: peerContention.get(peer.name) ?? null,
      });
    }

    // Hand-off: the backends interleaved round by round.
    const handoff = await interleave(
      ready,
      plan.rounds,
      async (member, round) => {
        progress(member.backend.name, `hand-off latency (round ${round + 1}/${plan.rounds})`);
        const [first, second] = member.providers as [LockProvider, LockProvider];
        const recorder = await measureHandoff(
          first,
          second,
          `${prefix}:${member.backend.name}:handoff`,
          Math.max(MIN_BLOCK_MS.handoff, (budget * SHARE.handoff) / plan.rounds),
          signal,
        );
        doneBlocks++;
        return recorder;
      },
      signal,
    );

    const capabilities = new Map<string, DeclaredCapabilities | null>();
    for (const member of members) {
      const provider = member.providers[0];
      const declared = provider ? declaredCapabilities(member.backend, provider) : null;
      capabilities.set(member.backend.name, declared);
    }
    const primitives = await benchmarkPrimitives(
      ready,
      set,
      { ...plan, prefix, capabilities },
      signal,
      (subject, detail) => progress(subject, detail),
    );
    notes.push(...primitives.notes);

    const benchmarks: BenchmarkRecord[] = [];
    for (const member of members) {
      const { backend, errors } = member;
      const handoffFailure = handoff.failures.get(member);
      if (handoffFailure) errors.push(`hand-off: ${errorText(handoffFailure)}`);
      const solo = ready.includes(member) ? latency.latency('backend', backend.name, errors) : null;
      let uncontended: UncontendedRecord | null = null;
      if (solo) {
        const { pooled, ...summary } = solo;
        uncontended = { ...summary, distribution: pooled.distribution() };
      }
      const handoffRecord: LatencyRecord | null = ready.includes(member)
        ? guarded('hand-off', errors, () => latencySummary(handoff.results.get(member) ?? []))
        : null;
      let failover: FailoverRecord | null = null;
      if (set && backend.contenderModule) {
        progress(backend.name, 'failover: holder SIGKILLed → next holder');
        try {
          failover = await measureFailover(
            backend,
            set.endpoints,
            MIN_BLOCKS,
            {
              ttlMs: plan.failoverTtlMs,
              sessionTimeoutMs: plan.failoverSessionTimeoutMs,
              session: capabilities.get(backend.name)?.lock.expiry === 'session',
            },
            signal,
          );
        } catch (error) {
          signal.throwIfAborted();
          errors.push(`failover: ${errorText(error)}`);
        }
        doneBlocks += 3;
      }
      benchmarks.push({
        backend: backend.name,
        uncontended,
        floor: floorRecord,
        ratioToFloorP50: solo ? latency.ratio('backend', backend.name, errors) : null,
        contention: contention.get(member) ?? [],
        handoff: handoffRecord,
        failover,
        errors,
      });
    }
    return {
      benchmarks,
      peers: peerRecords,
      semaphores: primitives.semaphores,
      readWriteLocks: primitives.readWriteLocks,
      capabilities,
      notes,
    };
  } finally {
    await Promise.allSettled(
      members.flatMap((member) => member.providers.map((provider) => provider.close())),
    );
    await floor?.close().catch(() => {});
    peers.close();
    contentionPeers.close();
  }
}
