import type { Capabilities } from '@dlock/core';
import { figureOf } from '../src/bench/blocks.js';
import {
  type BenchmarkRecord,
  type FaultRecord,
  type LatencyRecord,
  type PeerRecord,
  RESULTS_SCHEMA,
  type ReadWriteRecord,
  type Results,
  type SemaphoreRecord,
} from '../src/results.js';

/** A latency record around `p50Ms`, with a spread of ±10% and a tail. */
function latency(p50Ms: number, samples = 300): LatencyRecord {
  return { samples, p50Ms: figureOf([p50Ms * 0.9, p50Ms, p50Ms * 1.1]), p99Ms: p50Ms * 4, maxMs: p50Ms * 6 };
}

function capabilities(overrides: Partial<Capabilities>): Capabilities {
  return {
    fencing: 'monotonic',
    fairness: 'none',
    wakeup: 'push',
    expiry: 'ttl',
    safety: 'test',
    ...overrides,
  };
}

/** A contention level: waits as a FIFO hand-off chain gives them (p50 ≈ contenders ÷ rate). */
function contentionLevel(contenders: number, keys: number, rate: number, busiestShare: number) {
  return {
    contenders,
    keys,
    operations: Math.round(rate * 3),
    seconds: 3,
    opsPerSecond: figureOf([rate * 0.95, rate, rate * 1.05]),
    busiestShare,
    slowestShare: Math.min(busiestShare, 1 / contenders),
    waitMs: latency(((contenders / keys) * 1000) / rate),
  };
}

function bench(
  backend: string,
  p50Ms: number,
  floorMs: number | null,
  opsPerSecond: [number, number, number],
  handoffMs: number,
  busiestShare: number,
): BenchmarkRecord {
  const [one, eight, many] = opsPerSecond;
  const level = (contenders: number, keys: number, rate: number, share: number) =>
    contentionLevel(contenders, keys, rate, share);
  return {
    backend,
    uncontended: {
      ...latency(p50Ms),
      distribution: [0, 50, 99, 100].map((percentile) => ({ percentile, ms: p50Ms * (1 + percentile / 20) })),
    },
    floor:
      floorMs === null ? null : { ...latency(floorMs), protocol: 'SET NX PX + compare-and-delete script' },
    ratioToFloorP50:
      floorMs === null
        ? null
        : figureOf([(p50Ms / floorMs) * 0.95, p50Ms / floorMs, (p50Ms / floorMs) * 1.05]),
    contention: [
      level(1, 1, one, 1),
      level(8, 1, eight, Math.max(busiestShare, 1 / 8)),
      level(32, 1, many, busiestShare),
      level(32, 32, many * 4, 1 / 32),
    ],
    handoff: latency(handoffMs, 60),
    failover: floorMs === null ? null : { takeoverMs: figureOf([830, 850, 870]), expiryMs: 1000 },
    errors: [],
  };
}

function peer(
  name: string,
  serverCount: number,
  p50Ms: number,
  floorMs: number,
  contention?: { rate: number; busiestShare: number },
): PeerRecord {
  const servers = serverCount === 1 ? 'redis' : `${serverCount}× redis`;
  return {
    contention: contention ? contentionLevel(32, 1, contention.rate, contention.busiestShare) : null,
    ...latency(p50Ms),
    name,
    label: `${name} · ${servers}`,
    placement: 'redis',
    serverCount,
    floorP50Ms: floorMs,
    ratioToFloorP50: figureOf([(p50Ms / floorMs) * 0.95, p50Ms / floorMs, (p50Ms / floorMs) * 1.05]),
  };
}

function fault(
  scenario: string,
  backend: string,
  claim: FaultRecord['claim'],
  verdict: FaultRecord['verdict'],
  overlaps: number,
): FaultRecord {
  return {
    scenario,
    title: `${scenario} title`,
    backend,
    claim,
    verdict,
    metrics: {
      holds: 12,
      writes: 36,
      overlaps,
      overlapsPastLease: 0,
      staleWrites: overlaps * 2,
      lostUpdates: overlaps,
      lostUpdatesWithFencing: 0,
      tokenRegressions: 0,
    },
    observations: {},
    explanation: `What happened in ${scenario} on ${backend}.`,
    durationMs: 4000,
    error: null,
    diagnostics: [],
  };
}

/** A semaphore subject: uncontended p50 against a floor, and 32 contenders on a limit of 4. */
function semaphore(
  subject: string,
  origin: SemaphoreRecord['origin'],
  servers: { placement: SemaphoreRecord['placement']; count: number },
  p50Ms: number,
  floorMs: number | null,
  contended: { rate: number; waitMs: number; maxMs: number; slowestShare: number },
): SemaphoreRecord {
  return {
    subject,
    origin,
    placement: servers.placement,
    serverCount: servers.count,
    limit: 4,
    uncontended: latency(p50Ms),
    floor: floorMs === null ? null : { ...latency(floorMs), protocol: 'permit-if-room script + ZREM' },
    ratioToFloorP50:
      floorMs === null
        ? null
        : figureOf([(p50Ms / floorMs) * 0.95, p50Ms / floorMs, (p50Ms / floorMs) * 1.05]),
    contention: {
      contenders: 32,
      holdMs: 1,
      blockMs: 600,
      operations: Math.round(contended.rate * 2),
      seconds: 2.25,
      opsPerSecond: figureOf([contended.rate * 0.95, contended.rate, contended.rate * 1.05]),
      waitMs: {
        samples: 400,
        p50Ms: figureOf([contended.waitMs * 0.9, contended.waitMs, contended.waitMs * 1.1]),
        p99Ms: contended.maxMs * 0.9,
        maxMs: contended.maxMs,
      },
      slowestShare: contended.slowestShare,
      mostInside: 4,
    },
    // The permit hand-off is measured for dlock's semaphores only.
    handoff: origin === 'backend' ? latency(p50Ms * 2) : null,
  };
}

/** A read-write lock under the 90/10 mix, with its readers' and writers' p50 waits. */
function readWrite(backend: string, rate: number, readWaitMs: number, writeWaitMs: number): ReadWriteRecord {
  const wait = (ms: number) => ({
    samples: 300,
    p50Ms: figureOf([ms * 0.9, ms, ms * 1.1]),
    p99Ms: ms * 3,
    maxMs: ms * 4,
  });
  return {
    backend,
    contenders: 32,
    writeShare: 0.1,
    holdMs: 1,
    blockMs: 600,
    reads: Math.round(rate * 2 * 0.9),
    writes: Math.round(rate * 2 * 0.1),
    seconds: 2.25,
    opsPerSecond: figureOf([rate * 0.9, rate, rate * 1.1]),
    readWaitMs: wait(readWaitMs),
    writeWaitMs: wait(writeWaitMs),
    mostReadersTogether: 20,
    conflicts: 0,
  };
}

/** A fault result of a semaphore or read-write scenario. */
function primitiveFault(
  scenario: string,
  backend: string,
  primitive: 'semaphore' | 'read-write',
  verdict: FaultRecord['verdict'],
  fenced: boolean,
): FaultRecord {
  const base = fault(scenario, backend, 'fenced', verdict, 3);
  return {
    ...base,
    primitive,
    metrics: {
      ...base.metrics,
      lostUpdates: 0,
      overlapsWithFencing: fenced ? 0 : 3,
      ...(primitive === 'semaphore'
        ? { limit: 2, mostInside: 3 }
        : { writesOverReads: 1, writesOverReadsWithFencing: fenced ? 0 : 1 }),
    },
  };
}

/**
 * A complete, consistent results file shaped like a real run (every kind of backend, long peer
 * names on one and on five nodes, faults of every claim), for the validator and the report tests.
 * Its numbers are made up: tests check structure and wording, never what a backend measures.
 */
export function sampleResults(): Results {
  return {
    schema: RESULTS_SCHEMA,
    startedAt: '2026-11-30T10:00:00.000Z',
    finishedAt: '2026-11-30T10:05:00.000Z',
    machine: {
      node: 'v20.20.2',
      platform: 'linux',
      arch: 'x64',
      cpus: 2,
      cpuModel: 'test cpu',
      loadAverage: { atStart: 0.4, atEnd: 0.6 },
    },
    options: {
      backends: null,
      durationSeconds: 10,
      rounds: 3,
      contenders: [1, 8, 32],
      scenarios: null,
      semanticsFrom: null,
    },
    notes: [],
    backends: [
      {
        name: 'memory',
        origin: 'reference',
        packageName: '@dlock/core',
        placement: 'in-process',
        serverCount: 0,
        capabilities: capabilities({ fairness: 'fifo' }),
        semaphoreCapabilities: capabilities({ fairness: 'fifo' }),
        readWriteCapabilities: capabilities({ fairness: 'fifo' }),
      },
      {
        name: 'redis',
        origin: 'package',
        packageName: '@dlock/redis',
        placement: 'redis',
        serverCount: 1,
        capabilities: capabilities({}),
        semaphoreCapabilities: capabilities({ fairness: 'fifo' }),
        readWriteCapabilities: capabilities({ fairness: 'fifo' }),
      },
      {
        name: 'redlock',
        origin: 'package',
        packageName: '@dlock/redlock',
        placement: 'redis',
        serverCount: 5,
        capabilities: capabilities({ fencing: 'none' }),
        semaphoreCapabilities: capabilities({ fencing: 'none' }),
        readWriteCapabilities: capabilities({ fencing: 'none' }),
      },
      {
        name: 'zookeeper',
        origin: 'package',
        packageName: '@dlock/zookeeper',
        placement: 'zookeeper',
        serverCount: 1,
        capabilities: capabilities({ fairness: 'fifo', expiry: 'session' }),
        // A package without the primitives: its provider threw UnsupportedError when the lab asked.
        semaphoreCapabilities: null,
        readWriteCapabilities: null,
        semaphoreUnsupported:
          'the zookeeper provider does not support semaphores: this backend package does not implement them',
        readWriteUnsupported:
          'the zookeeper provider does not support read-write locks: this backend package does not implement them',
      },
      {
        name: 'setnx-getset',
        origin: 'baseline',
        packageName: null,
        placement: 'redis',
        serverCount: 1,
        capabilities: capabilities({ fencing: 'none', wakeup: 'poll' }),
        semaphoreCapabilities: null,
        readWriteCapabilities: null,
      },
    ],
    semantics: [],
    semanticsTable: [
      '| guarantee | memory | redis |',
      '|---|---|---|',
      '| **lock** |  |  |',
      '| fencing (declared) | monotonic | monotonic |',
      '| never grants two overlapping holds under contention | held | held |',
      '| **semaphore** |  |  |',
      '| declared: fencing · fairness · wake-up · expiry | monotonic · fifo · push · ttl | monotonic · fifo · push · ttl |',
      '| never more than `limit` holders at once | held | held |',
      '| **read-write** |  |  |',
      '| a waiting writer is served before readers that arrive after it | held | held |',
    ].join('\n'),
    benchmarks: [
      bench('memory', 0.01, null, [40_000, 45_000, 47_000], 0.1, 0.04),
      bench('redis', 0.25, 0.21, [3_300, 1_900, 1_000], 0.9, 0.2),
      bench('redlock', 0.3, 0.26, [1_400, 300, 80], 1.4, 0.1),
      bench('zookeeper', 1.2, 0.7, [780, 800, 900], 1.8, 0.04),
      bench('setnx-getset', 0.21, 0.21, [3_700, 4_100, 3_800], 21, 0.6),
    ],
    peers: [
      peer('redlock (library)', 1, 0.22, 0.21),
      peer('redis-semaphore Mutex', 1, 0.18, 0.21, { rate: 4_800, busiestShare: 0.19 }),
      peer('redlock (library)', 5, 0.21, 0.26),
      peer('redis-semaphore RedlockMutex', 5, 0.26, 0.26, { rate: 600, busiestShare: 0.3 }),
    ],
    semaphores: [
      semaphore('memory', 'backend', { placement: 'in-process', count: 0 }, 0.02, null, {
        rate: 3_000,
        waitMs: 9,
        maxMs: 14,
        slowestShare: 0.03,
      }),
      semaphore('redis-semaphore Semaphore · redis', 'peer', { placement: 'redis', count: 1 }, 0.2, 0.18, {
        rate: 900,
        waitMs: 0.4,
        maxMs: 540,
        slowestShare: 0.004,
      }),
      semaphore('redis', 'backend', { placement: 'redis', count: 1 }, 0.5, 0.18, {
        rate: 280,
        waitMs: 95,
        maxMs: 130,
        slowestShare: 0.03,
      }),
      semaphore(
        'redis-semaphore RedlockSemaphore · 5× redis',
        'peer',
        { placement: 'redis', count: 5 },
        0.4,
        0.5,
        { rate: 600, waitMs: 1.5, maxMs: 560, slowestShare: 0.002 },
      ),
      semaphore('redlock', 'backend', { placement: 'redis', count: 5 }, 1.2, 0.5, {
        rate: 110,
        waitMs: 30,
        maxMs: 580,
        slowestShare: 0,
      }),
    ],
    readWriteLocks: [
      readWrite('memory', 4_000, 6, 7),
      readWrite('redis', 400, 70, 80),
      readWrite('redlock', 350, 10, 150),
    ],
    faults: [
      fault('holder-crash', 'redis', 'safe', 'held', 0),
      fault('holder-pause', 'redis', 'fenced', 'held', 4),
      fault('holder-pause', 'redlock', 'fenced', 'known-unsafe', 2),
      fault('clock-skew', 'setnx-getset', 'unsafe', 'known-unsafe', 3),
      fault('redlock-minority-down', 'redlock', 'safe', 'held', 0),
      primitiveFault('semaphore-holder-pause', 'redis', 'semaphore', 'held', true),
      primitiveFault('semaphore-holder-pause', 'redlock', 'semaphore', 'known-unsafe', false),
      primitiveFault('read-write-writer-pause', 'redis', 'read-write', 'held', true),
      primitiveFault('read-write-writer-pause', 'redlock', 'read-write', 'known-unsafe', false),
    ],
    verdict: { exitCode: 0, violations: [], incomplete: [] },
  };
}
