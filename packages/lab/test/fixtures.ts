import type { Capabilities } from '@dlock/core';
import { figureOf } from '../src/bench/blocks.js';
import {
  type BenchmarkRecord,
  type FaultRecord,
  type LatencyRecord,
  type PeerRecord,
  RESULTS_SCHEMA,
  type Results,
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

function bench(
  backend: string,
  p50Ms: number,
  floorMs: number | null,
  opsPerSecond: [number, number, number],
  handoffMs: number,
  busiestShare: number,
): BenchmarkRecord {
  const [one, eight, many] = opsPerSecond;
  const level = (contenders: number, keys: number, rate: number, share: number) => ({
    contenders,
    keys,
    operations: Math.round(rate * 3),
    seconds: 3,
    opsPerSecond: figureOf([rate * 0.95, rate, rate * 1.05]),
    busiestShare: share,
  });
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

function peer(name: string, serverCount: number, p50Ms: number, floorMs: number): PeerRecord {
  const servers = serverCount === 1 ? 'redis' : `${serverCount}× redis`;
  return {
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
      },
      {
        name: 'redis',
        origin: 'package',
        packageName: '@dlock/redis',
        placement: 'redis',
        serverCount: 1,
        capabilities: capabilities({}),
      },
      {
        name: 'redlock',
        origin: 'package',
        packageName: '@dlock/redlock',
        placement: 'redis',
        serverCount: 5,
        capabilities: capabilities({ fencing: 'none' }),
      },
      {
        name: 'zookeeper',
        origin: 'package',
        packageName: '@dlock/zookeeper',
        placement: 'zookeeper',
        serverCount: 1,
        capabilities: capabilities({ fairness: 'fifo', expiry: 'session' }),
      },
      {
        name: 'setnx-getset',
        origin: 'baseline',
        packageName: null,
        placement: 'redis',
        serverCount: 1,
        capabilities: capabilities({ fencing: 'none', wakeup: 'poll' }),
      },
    ],
    semantics: [],
    semanticsTable: '',
    benchmarks: [
      bench('memory', 0.01, null, [40_000, 45_000, 47_000], 0.1, 0.04),
      bench('redis', 0.25, 0.21, [3_300, 1_900, 1_000], 0.9, 0.2),
      bench('redlock', 0.3, 0.26, [1_400, 300, 80], 1.4, 0.1),
      bench('zookeeper', 1.2, 0.7, [780, 800, 900], 1.8, 0.04),
      bench('setnx-getset', 0.21, 0.21, [3_700, 4_100, 3_800], 21, 0.6),
    ],
    peers: [
      peer('redlock (library)', 1, 0.22, 0.21),
      peer('redis-semaphore Mutex', 1, 0.18, 0.21),
      peer('redlock (library)', 5, 0.21, 0.26),
      peer('redis-semaphore RedlockMutex', 5, 0.26, 0.26),
    ],
    faults: [
      fault('holder-crash', 'redis', 'safe', 'held', 0),
      fault('holder-pause', 'redis', 'fenced', 'held', 4),
      fault('holder-pause', 'redlock', 'fenced', 'known-unsafe', 2),
      fault('clock-skew', 'setnx-getset', 'unsafe', 'known-unsafe', 3),
      fault('redlock-minority-down', 'redlock', 'safe', 'held', 0),
    ],
    verdict: { exitCode: 0, violations: [], incomplete: [] },
  };
}
