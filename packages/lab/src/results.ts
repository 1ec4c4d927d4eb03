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
  /**
   * Semaphore figures: every backend with semaphores and every peer library's semaphore on the same
   * servers. Absent in runs made before the lab measured semaphores.
   */
  readonly semaphores?: SemaphoreRecord[];
  /** Read-write lock figures, per backend with read-write locks. Absent in runs made before them. */
  readonly readWriteLocks?: ReadWriteRecord[];
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
  /**
   * What the backend's semaphores and read-write locks declare (they may differ from its locks':
   * RedLock's semaphore is neither fenced nor fair); null when it has none, absent in older runs.
   */
  readonly semaphoreCapabilities?: Capabilities | null;
  readonly readWriteCapabilities?: Capabilities | null;
  /**
   * Why it has no semaphores / read-write locks: the UnsupportedError message its provider threw when
   * the lab asked for one. The report leaves its figures out with this reason.
   */
  readonly semaphoreUnsupported?: string;
  readonly readWriteUnsupported?: string;
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
  /**
   * The share of all operations completed by the contender that completed the fewest (1 / contenders
   * when every contender got the lock equally often; near 0 when some hardly ever got it). Absent in
   * runs made before it was measured.
   */
  readonly slowestShare?: number;
  /**
   * How long each acquire call waited (begun after a block's warm-up; one still waiting at the block's
   * end counts with its wait so far): p50 as the median of the block p50s, p99 and max over all.
   * Absent in runs made before it was measured.
   */
  readonly waitMs?: LatencyRecord;
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
  /**
   * The same loop as the backends' busiest one-key contention level, with this library's lock, its
   * blocks interleaved with the backends' (null when the library has no waiting acquire to measure, e.g.
   * etcd3's `client.lock()`, which fails at once on a held lock). Absent in runs made before it was
   * measured.
   */
  readonly contention?: ContentionRecord | null;
}

/**
 * A semaphore measured on one set of servers: a backend's (`origin` 'backend', `subject` its name) or
 * a peer library's on the same servers (`origin` 'peer', `subject` a label unique within the run,
 * e.g. "redis-semaphore Semaphore · redis").
 */
export interface SemaphoreRecord {
  readonly subject: string;
  readonly origin: 'backend' | 'peer';
  readonly placement: BackendPlacement;
  readonly serverCount: number;
  /** The semaphore's limit in both measurements. */
  readonly limit: number;
  /** One client, a free semaphore, acquire of one permit + release, back to back. */
  readonly uncontended: LatencyRecord | null;
  /** The same round trips from a bare client on the same servers (see `protocol`). */
  readonly floor: FloorRecord | null;
  /** Block p50 ÷ floor block p50 of the same round, over the rounds. */
  readonly ratioToFloorP50: Figure | null;
  readonly contention: PermitContentionRecord | null;
  /**
   * Permit hand-off: with `limit` - 1 permits held by another lease, the time from releasing the last
   * permit to a waiting client (another connection) holding it — median of the block p50s, p99, max.
   * Null for peer libraries (not measured); absent in runs made before it was measured.
   */
  readonly handoff?: LatencyRecord | null;
}

/** Many contenders on one semaphore, each looping acquire → hold → release. */
export interface PermitContentionRecord {
  readonly contenders: number;
  /** How long each contender holds its permit (ms) before releasing it. */
  readonly holdMs: number;
  /**
   * How long each block ran (ms): an acquire still waiting at the end of its block counts with its
   * wait so far, so no wait longer than this can show.
   */
  readonly blockMs: number;
  /** Acquisitions completed in the measured windows, over all blocks. */
  readonly operations: number;
  readonly seconds: number;
  /** Acquisitions per second of each block: median and spread. */
  readonly opsPerSecond: Figure;
  /** How long each acquire call took: p50 as the median of the block p50s, p99 and max over all. */
  readonly waitMs: LatencyRecord;
  /**
   * The share of all acquisitions made by the contender that made the fewest (1 / contenders when
   * permits went round evenly; near 0 when some contenders hardly ever got one).
   */
  readonly slowestShare: number;
  /**
   * The most permits held at once as the contenders saw them (counted after an acquire resolved and
   * before its release was sent, so it never overstates): above `limit` is a violation.
   */
  readonly mostInside: number;
}

/** A read-write lock under a read-mostly load: contenders on one lock, a fixed share of them writes. */
export interface ReadWriteRecord {
  readonly backend: string;
  readonly contenders: number;
  /** The share of operations that take the write lock (0.1: one in ten). */
  readonly writeShare: number;
  /** How long each lease is held (ms) before its release. */
  readonly holdMs: number;
  /** How long each block ran (ms): no wait longer than this can show (see PermitContentionRecord). */
  readonly blockMs: number;
  readonly reads: number;
  readonly writes: number;
  readonly seconds: number;
  /** Reads + writes completed per second of each block: median and spread. */
  readonly opsPerSecond: Figure;
  /** How long a read lease's acquire took. */
  readonly readWaitMs: LatencyRecord;
  /** How long a write lease's acquire took: its p99 is the starvation check. */
  readonly writeWaitMs: LatencyRecord;
  /** The most read leases held at once, as the contenders saw them. */
  readonly mostReadersTogether: number;
  /**
   * Write leases held while another lease was held, as the contenders saw them (counted without
   * overstating, as for `mostInside`): above 0 is a violation.
   */
  readonly conflicts: number;
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

/** What the resource checks: a lock, a semaphore of `limit` permits, or a read-write lock. */
export type CheckedPrimitive =
  | { readonly kind: 'lock' }
  | { readonly kind: 'semaphore'; readonly limit: number }
  | { readonly kind: 'read-write' };

export interface CheckerMetrics {
  readonly holds: number;
  readonly writes: number;
  /**
   * Holds in conflict on the resource's clock. A lock: pairs of holds that overlap. A read-write
   * lock: overlapping pairs in which at least one is a write hold. A semaphore: holds that began
   * while `limit` others were inside — each is one time more than `limit` holders were inside.
   */
  readonly overlaps: number;
  /**
   * Overlaps that began after the lease of a hold already inside had run out (counted from its
   * grant): that holder outlived its lease, as a paused or starved process does — what fencing
   * tokens are for.
   */
  readonly overlapsPastLease: number;
  /**
   * Semaphores and read-write locks: the same count over the requests a fencing resource accepts
   * (see SafetyChecker). Absent for locks, whose fencing shows in `lostUpdatesWithFencing`.
   */
  readonly overlapsWithFencing?: number;
  /** Semaphores: the limit checked, and the most holds inside at once. */
  readonly limit?: number;
  readonly mostInside?: number;
  /** Read-write locks: writes that landed while a read hold was inside, without and with fencing. */
  readonly writesOverReads?: number;
  readonly writesOverReadsWithFencing?: number;
  /**
   * Writes a fencing resource rejects: for a lock, those carrying a token lower than one the resource
   * had already seen; for a semaphore and a read-write lock, see SafetyChecker.
   */
  readonly staleWrites: number;
  /**
   * Writes based on an outdated read: an unfenced resource silently loses an update. Not counted for
   * a semaphore (always 0): its holders write at once by design.
   */
  readonly lostUpdates: number;
  /** Lost updates among the writes a fencing resource would have accepted: fencing failed to protect. */
  readonly lostUpdatesWithFencing: number;
  /**
   * Holds whose token was not larger than that of a hold acquired before them. For a semaphore or a
   * read-write lock, "before" means granted before this hold's acquire began (grants that race are
   * not ordered), and two read holds are not compared.
   */
  readonly tokenRegressions: number;
}

export interface FaultRecord {
  readonly scenario: string;
  readonly title: string;
  readonly backend: string;
  /** The primitive the contenders used; absent (a lock) in older runs. */
  readonly primitive?: 'lock' | 'semaphore' | 'read-write';
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
