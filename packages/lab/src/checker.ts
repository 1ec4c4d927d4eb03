import type { CheckedPrimitive, CheckerMetrics } from './results.js';

/** What a contender tells the shared resource, in the order the resource receives it. */
export type ResourceEvent =
  | {
      readonly type: 'begin';
      readonly hold: string;
      readonly token: bigint;
      readonly acquiredAt: number;
      /** When the acquire that led to this hold began, on the machine's clock (orders grants that race). */
      readonly requestedAt?: number;
      /** A read-write lock's side; absent for locks and semaphores. */
      readonly mode?: 'read' | 'write';
    }
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

/** First and last request of a hold, on the resource's clock. */
interface Span {
  start: number;
  end: number;
}

interface HoldRecord {
  readonly name: string;
  readonly token: bigint;
  mode: 'read' | 'write' | undefined;
  /** When the lock was granted, on the machine's clock (contenders share it); orders grants. */
  acquiredAt: number | undefined;
  requestedAt: number | undefined;
  /** Every request of the hold. */
  readonly all: Span;
  /** The requests a fencing resource accepted; undefined when it refused them all. */
  fenced: Span | undefined;
}

interface WriteRecord {
  readonly hold: HoldRecord;
  readonly at: number;
  readonly accepted: boolean;
}

/** A hold that began while others it conflicts with were inside, and those others. */
interface Conflict {
  readonly entering: HoldRecord;
  readonly inside: readonly HoldRecord[];
}

export interface CheckerOptions {
  /**
   * The lease contenders hold (their ttl, or their session timeout): an overlap that begins after a
   * hold already inside had outlived its lease (counted from its grant) is counted in
   * `overlapsPastLease` too.
   */
  readonly leaseMs?: number;
  /**
   * `acquiredAt` minus this is the grant on the resource's clock: the resource stamps with its
   * process's performance.now(), contenders report grants as performance.timeOrigin + now().
   */
  readonly clockOrigin?: number;
  /** What the holds are of. Default: a lock. */
  readonly primitive?: CheckedPrimitive;
}

/**
 * Judges a run from the resource's point of view. It keeps two versions of the protected value: the
 * plain one, which accepts every write (what an unprotected resource does), and a fenced one, which
 * refuses the requests a resource checking fencing tokens refuses. Comparing a write's `basedOn` with
 * the version it lands on reveals a lost update; the holds' request intervals reveal holds in conflict.
 *
 * What a fencing resource refuses, per primitive:
 * - a lock: a request whose token is lower than the highest seen (the classic rule);
 * - a read-write lock: a write hold's request whose token is lower than the highest seen, and a read
 *   hold's whose token is lower than the highest write token seen — a write token exceeds every
 *   earlier lease's, a read token every earlier write's (Curator's and etcd's layouts, dlock's Redis
 *   counter), so no current holder is ever refused;
 * - a semaphore of `limit` permits: the resource keeps the holds inside (from their first request to
 *   their `end`); when a hold enters and more than `limit` are inside, it evicts every hold whose token
 *   is lower than the `limit`-th highest among them, and refuses their requests from then on. Tokens
 *   order grants, so the newest `limit` stay: a holder paused past its lease is the one turned away.
 *   With equal tokens (a backend without fencing) nobody is evicted, and fencing cannot help.
 */
export class SafetyChecker {
  readonly #leaseMs: number | undefined;
  readonly #clockOrigin: number;
  readonly #primitive: CheckedPrimitive;
  #version = 0;
  #fencedVersion = 0;
  #highestToken: bigint | undefined;
  #highestWriteToken: bigint | undefined;
  #staleWrites = 0;
  #lostUpdates = 0;
  #lostUpdatesWithFencing = 0;
  readonly #holds = new Map<string, HoldRecord>();
  readonly #writes: WriteRecord[] = [];
  /** Semaphores: the holds a fencing resource counts as inside, and those it evicted. */
  readonly #inside = new Set<HoldRecord>();
  readonly #evicted = new Set<HoldRecord>();

  constructor(options: CheckerOptions = {}) {
    this.#leaseMs = options.leaseMs;
    this.#clockOrigin = options.clockOrigin ?? 0;
    this.#primitive = options.primitive ?? { kind: 'lock' };
  }

  /** Records one request stamped at `at` (the resource's clock) and answers with the current versions. */
  observe(event: ResourceEvent, at: number): ResourceVersions {
    const hold = this.#holdOf(event, at);
    hold.all.end = at;
    const refused = this.#refuses(hold, event);
    if (!refused) {
      if (hold.fenced) hold.fenced.end = at;
      else hold.fenced = { start: at, end: at };
    }
    if (this.#highestToken === undefined || event.token > this.#highestToken)
      this.#highestToken = event.token;
    if (
      hold.mode === 'write' &&
      (this.#highestWriteToken === undefined || event.token > this.#highestWriteToken)
    )
      this.#highestWriteToken = event.token;
    if (event.type === 'end') this.#inside.delete(hold);
    if (event.type === 'write') {
      this.#writes.push({ hold, at, accepted: !refused });
      // Permit holders write at once by design: a semaphore's writes lose nothing the lock would keep.
      const counted = this.#primitive.kind !== 'semaphore';
      if (counted && event.basedOn !== this.#version) this.#lostUpdates++;
      this.#version++;
      if (refused) {
        this.#staleWrites++;
      } else {
        if (counted && event.basedOnFenced !== this.#fencedVersion) this.#lostUpdatesWithFencing++;
        this.#fencedVersion++;
      }
    }
    return { version: this.#version, fencedVersion: this.#fencedVersion };
  }

  metrics(): CheckerMetrics {
    const conflicts = this.#conflicts((hold) => hold.all);
    const base = {
      holds: this.#holds.size,
      writes: this.#writes.length,
      overlaps: conflicts.length,
      overlapsPastLease: conflicts.filter((conflict) => this.#pastLease(conflict)).length,
      staleWrites: this.#staleWrites,
      lostUpdates: this.#lostUpdates,
      lostUpdatesWithFencing: this.#lostUpdatesWithFencing,
      tokenRegressions: this.#tokenRegressions(),
    };
    const primitive = this.#primitive;
    if (primitive.kind === 'lock') return base;
    const overlapsWithFencing = this.#conflicts((hold) => hold.fenced).length;
    if (primitive.kind === 'semaphore') {
      const mostInside = Math.max(
        0,
        ...this.#entries((hold) => hold.all).map((entry) => entry.inside.length + 1),
      );
      return { ...base, overlapsWithFencing, limit: primitive.limit, mostInside };
    }
    return {
      ...base,
      overlapsWithFencing,
      writesOverReads: this.#writesOverReads(false),
      writesOverReadsWithFencing: this.#writesOverReads(true),
    };
  }

  /** The first `limit` conflicts, for diagnosis: "a#2 [10.0–52.3 ms, token 7] overlaps b#1 [40.1–45.0 ms, token 8]". */
  overlapDetails(limit = 5): string[] {
    const describe = (hold: HoldRecord) =>
      `${hold.name}${hold.mode ? ` (${hold.mode})` : ''} [${hold.all.start.toFixed(1)}–${hold.all.end.toFixed(1)} ms, token ${hold.token}]`;
    return this.#conflicts((hold) => hold.all)
      .slice(0, limit)
      .map(({ entering, inside }) => `${inside.map(describe).join(' and ')} overlaps ${describe(entering)}`);
  }

  #holdOf(event: ResourceEvent, at: number): HoldRecord {
    let hold = this.#holds.get(event.hold);
    if (!hold) {
      hold = {
        name: event.hold,
        token: event.token,
        mode: undefined,
        acquiredAt: undefined,
        requestedAt: undefined,
        all: { start: at, end: at },
        fenced: undefined,
      };
      this.#holds.set(event.hold, hold);
    }
    if (event.type === 'begin') {
      hold.acquiredAt = event.acquiredAt;
      hold.requestedAt = event.requestedAt;
      hold.mode = event.mode;
    }
    return hold;
  }

  /** Whether a resource checking fencing tokens refuses this request (see the class comment). */
  #refuses(hold: HoldRecord, event: ResourceEvent): boolean {
    const below = (highest: bigint | undefined) => highest !== undefined && event.token < highest;
    switch (this.#primitive.kind) {
      case 'lock':
        return below(this.#highestToken);
      case 'read-write':
        return hold.mode === 'read' ? below(this.#highestWriteToken) : below(this.#highestToken);
      case 'semaphore':
        if (!this.#evicted.has(hold) && !this.#inside.has(hold) && event.type !== 'end')
          this.#enter(hold, this.#primitive.limit);
        return this.#evicted.has(hold);
    }
  }

  /** A semaphore hold enters the fencing resource; beyond `limit` inside, the lowest tokens are evicted. */
  #enter(hold: HoldRecord, limit: number): void {
    this.#inside.add(hold);
    if (this.#inside.size <= limit) return;
    const tokens = [...this.#inside].map((entry) => entry.token).sort((a, b) => (a < b ? 1 : a > b ? -1 : 0));
    const kept = tokens[limit - 1] as bigint;
    for (const entry of [...this.#inside]) {
      if (entry.token < kept) {
        this.#inside.delete(entry);
        this.#evicted.add(entry);
      }
    }
  }

  /** Every hold with the holds inside (begun, not yet past their last request) when it began, by start. */
  #entries(spanOf: (hold: HoldRecord) => Span | undefined): Conflict[] {
    const spans = [...this.#holds.values()].flatMap((hold) => {
      const span = spanOf(hold);
      return span ? [{ hold, span }] : [];
    });
    spans.sort((a, b) => a.span.start - b.span.start);
    return spans.map(({ hold, span }, index) => ({
      entering: hold,
      inside: spans
        .slice(0, index)
        .filter((earlier) => earlier.span.end > span.start)
        .map((earlier) => earlier.hold),
    }));
  }

  /** Holds that began while holds they conflict with were inside (see CheckerMetrics.overlaps). */
  #conflicts(spanOf: (hold: HoldRecord) => Span | undefined): Conflict[] {
    const primitive = this.#primitive;
    return this.#entries(spanOf).flatMap(({ entering, inside }) => {
      const conflicting =
        primitive.kind === 'read-write'
          ? inside.filter((other) => other.mode !== 'read' || entering.mode !== 'read')
          : inside;
      const limit = primitive.kind === 'semaphore' ? primitive.limit : 1;
      return conflicting.length >= limit ? [{ entering, inside: conflicting }] : [];
    });
  }

  /** Whether a hold inside at the conflict had outlived its lease by the time the other one began. */
  #pastLease({ entering, inside }: Conflict): boolean {
    const leaseMs = this.#leaseMs;
    if (leaseMs === undefined) return false;
    return inside.some(
      (earlier) =>
        earlier.acquiredAt !== undefined &&
        entering.all.start > earlier.acquiredAt - this.#clockOrigin + leaseMs,
    );
  }

  /** Writes that landed while a read hold was inside; with fencing, only what the resource accepted. */
  #writesOverReads(fenced: boolean): number {
    const reads = [...this.#holds.values()].flatMap((hold) => {
      const span = fenced ? hold.fenced : hold.all;
      return hold.mode === 'read' && span ? [span] : [];
    });
    return this.#writes.filter(
      (write) =>
        (!fenced || write.accepted) && reads.some((span) => span.start < write.at && write.at < span.end),
    ).length;
  }

  /**
   * Holds whose token does not exceed an earlier grant's. A lock: in the order of grants, each token
   * must exceed every earlier one. A semaphore or a read-write lock grants several holds at once, and
   * the order in which contenders learn of grants that race says nothing: a hold is compared only with
   * those granted before its acquire began, and two read holds not at all.
   */
  #tokenRegressions(): number {
    const granted = [...this.#holds.values()]
      .filter((hold) => hold.acquiredAt !== undefined)
      .sort((a, b) => (a.acquiredAt as number) - (b.acquiredAt as number));
    if (this.#primitive.kind === 'lock') {
      let highest: bigint | undefined;
      let regressions = 0;
      for (const hold of granted) {
        if (highest !== undefined && hold.token <= highest) regressions++;
        if (highest === undefined || hold.token > highest) highest = hold.token;
      }
      return regressions;
    }
    return granted.filter(
      (later) =>
        later.requestedAt !== undefined &&
        granted.some(
          (earlier) =>
            (earlier.acquiredAt as number) < (later.requestedAt as number) &&
            (earlier.mode !== 'read' || later.mode !== 'read') &&
            later.token <= earlier.token,
        ),
    ).length;
  }
}
