import { type HoldInterval, overlappingHolds } from '@dlock/conformance/results';
import type { CheckerMetrics } from './results.js';

/** What a contender tells the shared resource, in the order the resource receives it. */
export type ResourceEvent =
  | { readonly type: 'begin'; readonly hold: string; readonly token: bigint; readonly acquiredAt: number }
  | { readonly type: 'read' | 'end'; readonly hold: string; readonly token: bigint }
  | {
      readonly type: 'write';
      readonly hold: string;
      readonly token: bigint;
      /** The versions the writer's read returned (all writes / writes a fencing resource accepted). */
      readonly basedOn: number;
      readonly basedOnFenced: number;
    };

/** The resource's current state, returned to a reader so its next write can say what it was based on. */
export interface ResourceVersions {
  readonly version: number;
  readonly fencedVersion: number;
}

interface HoldRecord {
  readonly token: bigint;
  /** When the lock was granted, on the machine's clock (contenders share it); orders grants. */
  acquiredAt: number | undefined;
  /** First and last request of the hold, on the resource's clock. */
  start: number;
  end: number;
}

/**
 * Judges a run from the resource's point of view. It keeps two versions of the protected value: the
 * plain one, which accepts every write (what an unprotected resource does), and a fenced one, which
 * rejects any request whose token is lower than the highest it has seen (what a resource checking
 * fencing tokens does). Comparing a write's `basedOn` with the version it lands on reveals a lost update.
 */
export interface CheckerOptions {
  /**
   * The lease contenders hold (their ttl, or their session timeout): an overlap that begins after the
   * earlier holder's lease ran out (counted from its grant) is counted in `overlapsPastLease` too.
   */
  readonly leaseMs?: number;
  /**
   * `acquiredAt` minus this is the grant on the resource's clock: the resource stamps with its
   * process's performance.now(), contenders report grants as performance.timeOrigin + now().
   */
  readonly clockOrigin?: number;
}

export class SafetyChecker {
  readonly #leaseMs: number | undefined;
  readonly #clockOrigin: number;
  #version = 0;
  #fencedVersion = 0;
  #highestToken: bigint | undefined;
  #writes = 0;
  #staleWrites = 0;
  #lostUpdates = 0;
  #lostUpdatesWithFencing = 0;
  readonly #holds = new Map<string, HoldRecord>();

  constructor(options: CheckerOptions = {}) {
    this.#leaseMs = options.leaseMs;
    this.#clockOrigin = options.clockOrigin ?? 0;
  }

  /** Records one request stamped at `at` (the resource's clock) and answers with the current versions. */
  observe(event: ResourceEvent, at: number): ResourceVersions {
    const stale = this.#highestToken !== undefined && event.token < this.#highestToken;
    if (this.#highestToken === undefined || event.token > this.#highestToken)
      this.#highestToken = event.token;
    const hold = this.#holds.get(event.hold);
    if (hold) {
      hold.end = at;
      if (event.type === 'begin') hold.acquiredAt = event.acquiredAt;
    } else {
      const acquiredAt = event.type === 'begin' ? event.acquiredAt : undefined;
      this.#holds.set(event.hold, { token: event.token, acquiredAt, start: at, end: at });
    }
    if (event.type === 'write') {
      this.#writes++;
      if (event.basedOn !== this.#version) this.#lostUpdates++;
      this.#version++;
      if (stale) {
        this.#staleWrites++;
      } else {
        if (event.basedOnFenced !== this.#fencedVersion) this.#lostUpdatesWithFencing++;
        this.#fencedVersion++;
      }
    }
    return { version: this.#version, fencedVersion: this.#fencedVersion };
  }

  metrics(): CheckerMetrics {
    const overlaps = overlappingHolds(this.#intervals());
    return {
      holds: this.#holds.size,
      writes: this.#writes,
      overlaps: overlaps.length,
      overlapsPastLease: overlaps.filter((pair) => this.#pastLease(pair)).length,
      staleWrites: this.#staleWrites,
      lostUpdates: this.#lostUpdates,
      lostUpdatesWithFencing: this.#lostUpdatesWithFencing,
      tokenRegressions: this.#tokenRegressions(),
    };
  }

  /** The first `limit` overlapping pairs, for diagnosis: "a#2 [10.0–52.3 ms] overlaps b#1 [40.1–45.0 ms]". */
  overlapDetails(limit = 5): string[] {
    const describe = (hold: HoldInterval) =>
      `${hold.holder} [${hold.start.toFixed(1)}–${hold.end.toFixed(1)} ms, token ${this.#holds.get(hold.holder)?.token}]`;
    return overlappingHolds(this.#intervals())
      .slice(0, limit)
      .map(([earlier, later]) => `${describe(earlier)} overlaps ${describe(later)}`);
  }

  /** Whether the earlier hold of an overlapping pair was still active after its lease had run out. */
  #pastLease([a, b]: readonly [HoldInterval, HoldInterval]): boolean {
    const earlier = a.start <= b.start ? a : b;
    const later = earlier === a ? b : a;
    const acquiredAt = this.#holds.get(earlier.holder)?.acquiredAt;
    if (this.#leaseMs === undefined || acquiredAt === undefined) return false;
    return later.start > acquiredAt - this.#clockOrigin + this.#leaseMs;
  }

  #intervals(): HoldInterval[] {
    return [...this.#holds].map(([holder, hold]) => ({ holder, start: hold.start, end: hold.end }));
  }

  /** Holds, in the order they were granted, whose token does not exceed every earlier hold's token. */
  #tokenRegressions(): number {
    const granted = [...this.#holds.values()]
      .filter((hold) => hold.acquiredAt !== undefined)
      .sort((a, b) => (a.acquiredAt as number) - (b.acquiredAt as number));
    let highest: bigint | undefined;
    let regressions = 0;
    for (const hold of granted) {
      if (highest !== undefined && hold.token <= highest) regressions++;
      if (highest === undefined || hold.token > highest) highest = hold.token;
    }
    return regressions;
  }
}
