import type { Capabilities } from '@dlock/core';

/**
 * The shape of report/results.json (`dlock.results/2`). schema/results.schema.json describes the same
 * structure for other tools; change both together and bump the version when a field changes meaning.
 */
export const RESULTS_SCHEMA = 'dlock.results/2';

export type ServerKind = 'redis' | 'zookeeper' | 'etcd';
/** Where a backend's lock state lives: real servers, or the lab's own process (memory). */
export type BackendPlacement = ServerKind | 'in-process';

export interface Results {
  readonly schema: typeof RESULTS_SCHEMA;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly machine: MachineInfo;
  readonly options: RunOptionsRecord;
  /** Discovery and stage notes: skipped packages, missing binaries, stages that could not run. */
  readonly notes: string[];
  readonly backends: BackendRecord[];
  readonly semantics: SemanticsRecord[];
  /** The conformance kit's markdown table over every report found, or '' when there is none. */
  readonly semanticsTable: string;
  readonly benchmarks: BenchmarkRecord[];
  readonly peers: PeerRecord[];
  readonly faults: FaultRecord[];
  readonly verdict: Verdict;
}

export interface MachineInfo {
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  readonly cpus: number;
  readonly cpuModel: string;
  /**
   * The 1-minute load average when the run started and when it finished. Above the core count, other
   * processes competed for the machine and the figures' spreads widen.
   */
  readonly loadAverage: { readonly atStart: number; readonly atEnd: number };
}

export interface RunOptionsRecord {
  readonly backends: string[] | null;
  readonly durationSeconds: number;
  /** How many interleaved blocks each benchmark figure is measured in (at least 3). */
  readonly rounds: number;
  readonly contenders: number[];
  readonly scenarios: string[] | null;
  readonly semanticsFrom: string | null;
}

export interface BackendRecord {
  readonly name: string;
  /** 'package': discovered through a `dlockBackend` export; 'reference': core's memory provider; 'baseline': the lab's SETNX+GETSET lock. */
  readonly origin: 'package' | 'reference' | 'baseline';
  readonly packageName: string | null;
  readonly placement: BackendPlacement;
  readonly serverCount: number;
  readonly capabilities: Capabilities | null;
}

export interface SemanticsRecord {
  readonly backend: string;
  /** 'run': the lab ran the kit now; 'file': a report read from disk; 'none': no report. */
  readonly source: 'run' | 'file' | 'none';
  readonly held: number;
  readonly violated: string[];
  readonly skipped: number;
  readonly note: string | null;
}

/**
 * A figure measured as repeated blocks, interleaved with the figures it is compared with (the floor,
 * the other backends on the same servers), so a slow moment of a shared machine hits all of them
 * alike. `median` is the median of the block results; `min`–`max` is their spread. A figure whose
 * spread is wide (see `noisy`) should be read as a range, not as a number.
 */
export interface Figure {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Blocks (or independent samples) behind the figure: at least 3, or there is no median. */
  readonly blocks: number;
  /** True when (max − min) exceeds NOISY_SPREAD × median. */
  readonly noisy: boolean;
}

/** The spread, relative to the median, above which a figure is marked noisy. */
export const NOISY_SPREAD = 0.5;

/** Latency over every operation of every block. */
export interface LatencyRecord {
  /** Operations timed, over all blocks. */
  readonly samples: number;
  /** The median of the per-block p50s, with their spread. */
  readonly p50Ms: Figure;
  /** p99 and maximum over every operation of every block (p99 ≤ max always). */
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Latency at a percentile, for distribution charts. */
export interface PercentilePoint {
  readonly percentile: number;
  readonly ms: number;
}

export interface UncontendedRecord extends LatencyRecord {
  readonly distribution: PercentilePoint[];
}

export interface FloorRecord extends LatencyRecord {
  /** The raw client round trips measured, e.g. "SET NX PX + compare-and-delete EVAL". */
  readonly protocol: string;
}

export interface ContentionRecord {
  readonly contenders: number;
  readonly keys: number;
  /** Acquire + release pairs completed within the blocks' deadlines, over all blocks. */
  readonly operations: number;
  /** Time measured, over all blocks. */
  readonly seconds: number;
  /** Operations per second of each block: median and spread. */
  readonly opsPerSecond: Figure;
  /**
   * The share of all operations completed by the single busiest contender (1 / contenders when every
   * contender got the lock equally often). High values mean barging: the releasing contender takes the
   * lock straight back while the others wait.
   */
  readonly busiestShare: number;
}

export interface FailoverRecord {
  /** From the SIGKILL of the holder to the next holder, one sample per kill. */
  readonly takeoverMs: Figure;
  /** The crashed holder's lease ttl, or its session timeout for session-based backends. */
  readonly expiryMs: number;
}

export interface BenchmarkRecord {
  readonly backend: string;
  readonly uncontended: UncontendedRecord | null;
  readonly floor: FloorRecord | null;
  /** Backend block p50 ÷ floor block p50 of the same round, over the rounds. */
  readonly ratioToFloorP50: Figure | null;
  readonly contention: ContentionRecord[];
  readonly handoff: LatencyRecord | null;
  readonly failover: FailoverRecord | null;
  readonly errors: string[];
}

export interface PeerRecord extends LatencyRecord {
  /** The library, e.g. "redlock (library)". */
  readonly name: string;
  /** Unique within a run: the library and the servers it ran on, e.g. "redlock (library) · 5× redis". */
  readonly label: string;
  readonly placement: ServerKind;
  readonly serverCount: number;
  /** The median floor p50 of the same servers. */
  readonly floorP50Ms: number | null;
  /** Peer block p50 ÷ floor block p50 of the same round, over the rounds. */
  readonly ratioToFloorP50: Figure | null;
}

/**
 * 'safe': the backend promises mutual exclusion here (0 overlaps). 'fenced': holds can overlap, and the
 * promise is that fencing tokens let the resource reject the stale writer. 'unsafe': a known weakness
 * the scenario is there to show.
 */
export type Claim = 'safe' | 'fenced' | 'unsafe';

/**
 * One vocabulary, used as-is in results.json, the HTML and markdown reports, the terminal summary and
 * the README. 'held': the claim held. 'claim-violated': it did not (exit code 1). 'known-unsafe': the
 * known weakness of an unsafe claim showed. 'not-reproduced': it did not show this time (which proves
 * nothing). 'error': the scenario could not run.
 */
export const FAULT_VERDICTS = ['held', 'claim-violated', 'known-unsafe', 'not-reproduced', 'error'] as const;
export type FaultVerdict = (typeof FAULT_VERDICTS)[number];

export interface CheckerMetrics {
  readonly holds: number;
  readonly writes: number;
  /** Pairs of holds that overlap on the resource's clock: mutual-exclusion violations. */
  readonly overlaps: number;
  /**
   * Overlaps that began after the earlier holder's lease had run out (counted from its grant): that
   * holder outlived its lease, as a paused or starved process does — what fencing tokens are for.
   */
  readonly overlapsPastLease: number;
  /** Writes carrying a token lower than one the resource had already seen: a fencing resource rejects them. */
  readonly staleWrites: number;
  /** Writes based on an outdated read: an unfenced resource silently loses an update. */
  readonly lostUpdates: number;
  /** Lost updates among the writes a fencing resource would have accepted: fencing failed to protect. */
  readonly lostUpdatesWithFencing: number;
  /** Holds whose token was not larger than that of a hold acquired before them. */
  readonly tokenRegressions: number;
}

export interface FaultRecord {
  readonly scenario: string;
  readonly title: string;
  readonly backend: string;
  readonly claim: Claim;
  readonly verdict: FaultVerdict;
  readonly metrics: CheckerMetrics;
  /** Scenario-specific observations, e.g. takeover time or holds after the fault. */
  readonly observations: Record<string, number>;
  /** Two or three plain sentences on what happened and why. */
  readonly explanation: string;
  readonly durationMs: number;
  readonly error: string | null;
  /** For diagnosis: the first overlapping holds and the distinct errors contenders reported. */
  readonly diagnostics: string[];
}

export interface Verdict {
  /** 0: every claimed guarantee held; 1: a backend violated one it claims; 3: a stage could not run. */
  readonly exitCode: 0 | 1 | 3;
  readonly violations: string[];
  readonly incomplete: string[];
}
