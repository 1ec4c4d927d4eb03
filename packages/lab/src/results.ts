import type { Capabilities } from '@dlock/core';

/**
 * The shape of report/results.json (`dlock.results/1`). schema/results.schema.json describes the same
 * structure for other tools; change both together and bump the version when a field changes meaning.
 */
export const RESULTS_SCHEMA = 'dlock.results/1';

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
}

export interface RunOptionsRecord {
  readonly backends: string[] | null;
  readonly durationSeconds: number;
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

export interface LatencySummary {
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Latency at a percentile, for distribution charts. */
export interface PercentilePoint {
  readonly percentile: number;
  readonly ms: number;
}

export interface FloorRecord extends LatencySummary {
  /** The raw client round trips measured, e.g. "SET NX PX + compare-and-delete EVAL". */
  readonly protocol: string;
}

export interface ContentionRecord {
  readonly contenders: number;
  readonly keys: number;
  readonly operations: number;
  readonly seconds: number;
  readonly opsPerSecond: number;
}

export interface FailoverRecord {
  readonly samples: number;
  readonly medianMs: number;
  readonly maxMs: number;
  /** The crashed holder's lease ttl, or its session timeout for session-based backends. */
  readonly expiryMs: number;
}

export interface BenchmarkRecord {
  readonly backend: string;
  readonly uncontended: (LatencySummary & { readonly distribution: PercentilePoint[] }) | null;
  readonly floor: FloorRecord | null;
  /** Backend p50 divided by the floor's p50 measured in the same run. */
  readonly ratioToFloorP50: number | null;
  readonly contention: ContentionRecord[];
  readonly handoff: LatencySummary | null;
  readonly failover: FailoverRecord | null;
  readonly errors: string[];
}

export interface PeerRecord extends LatencySummary {
  /** e.g. "redlock (library)". */
  readonly name: string;
  readonly placement: ServerKind;
  readonly serverCount: number;
  readonly floorP50Ms: number | null;
  readonly ratioToFloorP50: number | null;
}

/**
 * 'safe': the backend promises mutual exclusion here (0 overlaps). 'fenced': holds can overlap, and the
 * promise is that fencing tokens let the resource reject the stale writer. 'unsafe': a known weakness
 * the scenario is there to show.
 */
export type Claim = 'safe' | 'fenced' | 'unsafe';

export type FaultVerdict = 'held' | 'claim-violated' | 'known-violation' | 'not-reproduced' | 'error';

export interface CheckerMetrics {
  readonly holds: number;
  readonly writes: number;
  /** Pairs of holds that overlap on the resource's clock: mutual-exclusion violations. */
  readonly overlaps: number;
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
