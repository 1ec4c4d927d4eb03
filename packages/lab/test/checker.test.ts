import { describe, expect, it } from 'vitest';
import { SafetyChecker } from '../src/checker.js';
import { inconclusiveBecause, judge } from '../src/faults/scenario.js';

/** Plays one hold: begin, then read → write pairs, then end, each at the given resource times. */
function hold(checker: SafetyChecker, id: string, token: bigint, acquiredAt: number, times: number[]): void {
  const [begin, ...rest] = times;
  checker.observe({ type: 'begin', hold: id, token, acquiredAt }, begin as number);
  for (let i = 0; i + 1 < rest.length; i += 2) {
    const seen = checker.observe({ type: 'read', hold: id, token }, rest[i] as number);
    checker.observe(
      { type: 'write', hold: id, token, basedOn: seen.version, basedOnFenced: seen.fencedVersion },
      rest[i + 1] as number,
    );
  }
  checker.observe({ type: 'end', hold: id, token }, (rest.at(-1) as number) + 0.5);
}

describe('SafetyChecker', () => {
  it('finds nothing wrong in holds that follow one another with growing tokens', () => {
    const checker = new SafetyChecker();
    hold(checker, 'a#1', 1n, 0, [0, 1, 2, 3, 4]);
    hold(checker, 'b#1', 2n, 10, [10, 11, 12]);
    hold(checker, 'a#2', 3n, 20, [20, 21, 22]);
    expect(checker.metrics()).toEqual({
      holds: 3,
      writes: 4,
      overlaps: 0,
      overlapsPastLease: 0,
      staleWrites: 0,
      lostUpdates: 0,
      lostUpdatesWithFencing: 0,
      tokenRegressions: 0,
    });
  });

  it('counts a paused holder that writes late as an overlap, a lost update and a stale write fencing rejects', () => {
    const checker = new SafetyChecker();
    checker.observe({ type: 'begin', hold: 'paused#1', token: 1n, acquiredAt: 0 }, 0);
    const pausedRead = checker.observe({ type: 'read', hold: 'paused#1', token: 1n }, 1);
    hold(checker, 'next#1', 2n, 50, [50, 51, 52]);
    checker.observe(
      {
        type: 'write',
        hold: 'paused#1',
        token: 1n,
        basedOn: pausedRead.version,
        basedOnFenced: pausedRead.fencedVersion,
      },
      60,
    );
    expect(checker.metrics()).toMatchObject({
      overlaps: 1,
      lostUpdates: 1,
      staleWrites: 1,
      lostUpdatesWithFencing: 0,
      tokenRegressions: 0,
    });
  });

  it('sees through fencing when two holders get the same token', () => {
    const checker = new SafetyChecker();
    checker.observe({ type: 'begin', hold: 'a#1', token: 5n, acquiredAt: 0 }, 0);
    checker.observe({ type: 'begin', hold: 'b#1', token: 5n, acquiredAt: 1 }, 1);
    const readA = checker.observe({ type: 'read', hold: 'a#1', token: 5n }, 2);
    const readB = checker.observe({ type: 'read', hold: 'b#1', token: 5n }, 3);
    checker.observe(
      { type: 'write', hold: 'a#1', token: 5n, basedOn: readA.version, basedOnFenced: readA.fencedVersion },
      4,
    );
    checker.observe(
      { type: 'write', hold: 'b#1', token: 5n, basedOn: readB.version, basedOnFenced: readB.fencedVersion },
      5,
    );
    expect(checker.metrics()).toMatchObject({ overlaps: 1, lostUpdatesWithFencing: 1, tokenRegressions: 1 });
  });

  it('orders grants by acquisition time, not by when the holder first reached the resource', () => {
    const checker = new SafetyChecker();
    // b was granted after a but reached the resource first: not a regression.
    hold(checker, 'b#1', 2n, 10, [11, 12, 13]);
    hold(checker, 'a#1', 1n, 5, [20, 21, 22]);
    // c was granted last with a smaller token: a regression (a failover that lost the counter).
    hold(checker, 'c#1', 1n, 30, [30, 31, 32]);
    expect(checker.metrics().tokenRegressions).toBe(1);
  });
});

/** Plays one permit or read-write hold: begin (with when its acquire began), reads and writes, end. */
function leaseHold(
  checker: SafetyChecker,
  id: string,
  token: bigint,
  grant: { requestedAt: number; acquiredAt: number; mode?: 'read' | 'write' },
  times: number[],
): void {
  const [begin, ...rest] = times;
  checker.observe({ type: 'begin', hold: id, token, ...grant }, begin as number);
  for (const at of rest.slice(0, -1)) {
    if (grant.mode === 'read') checker.observe({ type: 'read', hold: id, token }, at);
    else checker.observe({ type: 'write', hold: id, token, basedOn: 0, basedOnFenced: 0 }, at);
  }
  checker.observe({ type: 'end', hold: id, token }, rest.at(-1) as number);
}

describe('SafetyChecker on a semaphore', () => {
  const semaphore = { kind: 'semaphore', limit: 2 } as const;

  it('finds nothing wrong while at most `limit` hold at once, and counts no lost update between them', () => {
    const checker = new SafetyChecker({ primitive: semaphore });
    leaseHold(checker, 'a#1', 1n, { requestedAt: 0, acquiredAt: 0 }, [0, 5, 10]);
    leaseHold(checker, 'b#1', 2n, { requestedAt: 0, acquiredAt: 1 }, [1, 6, 11]);
    leaseHold(checker, 'c#1', 3n, { requestedAt: 2, acquiredAt: 12 }, [12, 15, 20]);
    expect(checker.metrics()).toMatchObject({
      overlaps: 0,
      overlapsWithFencing: 0,
      mostInside: 2,
      limit: 2,
      lostUpdates: 0,
      staleWrites: 0,
      tokenRegressions: 0,
    });
  });

  /** A paused holder (token 1), then b and c (tokens `later`) inside together, then the late write — in arrival order. */
  function pausedPastItsPermit(checker: SafetyChecker, first: bigint, later: [bigint, bigint]): void {
    const [b, c] = later;
    const write = (hold: string, token: bigint, at: number) =>
      checker.observe({ type: 'write', hold, token, basedOn: 0, basedOnFenced: 0 }, at);
    checker.observe({ type: 'begin', hold: 'paused#1', token: first, acquiredAt: 0, requestedAt: 0 }, 0);
    checker.observe({ type: 'read', hold: 'paused#1', token: first }, 1);
    checker.observe({ type: 'begin', hold: 'b#1', token: b, acquiredAt: 50, requestedAt: 2 }, 50);
    checker.observe({ type: 'begin', hold: 'c#1', token: c, acquiredAt: 51, requestedAt: 3 }, 51);
    write('b#1', b, 55);
    write('paused#1', first, 60);
    write('c#1', c, 65);
    checker.observe({ type: 'end', hold: 'b#1', token: b }, 70);
    checker.observe({ type: 'end', hold: 'c#1', token: c }, 71);
  }

  it('counts a paused holder that writes late as more than `limit` inside, which keeping the newest tokens prevents', () => {
    const checker = new SafetyChecker({ primitive: semaphore });
    pausedPastItsPermit(checker, 1n, [2n, 3n]);
    expect(checker.metrics()).toMatchObject({
      overlaps: 1,
      mostInside: 3,
      staleWrites: 1,
      overlapsWithFencing: 0,
      tokenRegressions: 0,
    });
  });

  it('sees through fencing when permits carry no tokens (all equal): nobody can be told apart', () => {
    const checker = new SafetyChecker({ primitive: semaphore });
    pausedPastItsPermit(checker, 0n, [0n, 0n]);
    expect(checker.metrics()).toMatchObject({ overlaps: 1, overlapsWithFencing: 1, staleWrites: 0 });
  });

  it('orders permit grants only when one was granted before the other was asked for', () => {
    const checker = new SafetyChecker({ primitive: semaphore });
    // Granted together: b learnt of its grant first, with the larger token. Not a regression.
    leaseHold(checker, 'a#1', 2n, { requestedAt: 0, acquiredAt: 5 }, [5, 6, 7]);
    leaseHold(checker, 'b#1', 1n, { requestedAt: 0, acquiredAt: 4 }, [4, 6, 7]);
    // Asked for after both were granted, with a smaller token: a regression.
    leaseHold(checker, 'c#1', 1n, { requestedAt: 10, acquiredAt: 11 }, [11, 12, 13]);
    expect(checker.metrics().tokenRegressions).toBe(1);
  });
});

describe('SafetyChecker on a read-write lock', () => {
  const readWrite = { kind: 'read-write' } as const;

  it('lets readers overlap, and counts a late write over a reader that fencing refuses', () => {
    const checker = new SafetyChecker({ primitive: readWrite });
    checker.observe(
      { type: 'begin', hold: 'w#1', token: 1n, acquiredAt: 0, requestedAt: 0, mode: 'write' },
      0,
    );
    const seen = checker.observe({ type: 'read', hold: 'w#1', token: 1n }, 1);
    leaseHold(checker, 'r#1', 2n, { requestedAt: 2, acquiredAt: 50, mode: 'read' }, [50, 55, 70]);
    leaseHold(checker, 'r#2', 3n, { requestedAt: 3, acquiredAt: 51, mode: 'read' }, [51, 56, 70]);
    checker.observe(
      { type: 'write', hold: 'w#1', token: 1n, basedOn: seen.version, basedOnFenced: seen.fencedVersion },
      60,
    );
    expect(checker.metrics()).toMatchObject({
      overlaps: 2,
      writesOverReads: 1,
      writesOverReadsWithFencing: 0,
      overlapsWithFencing: 0,
      staleWrites: 1,
      tokenRegressions: 0,
    });
  });

  it('refuses a reader whose token is below a later writer’s, but never a current reader or writer', () => {
    const checker = new SafetyChecker({ primitive: readWrite });
    leaseHold(checker, 'r#1', 1n, { requestedAt: 0, acquiredAt: 0, mode: 'read' }, [0, 1, 2]);
    leaseHold(checker, 'w#1', 2n, { requestedAt: 1, acquiredAt: 3, mode: 'write' }, [3, 4, 5]);
    leaseHold(checker, 'r#2', 3n, { requestedAt: 2, acquiredAt: 6, mode: 'read' }, [6, 7, 8]);
    expect(checker.metrics()).toMatchObject({ overlaps: 0, staleWrites: 0, writesOverReads: 0 });
    checker.observe({ type: 'read', hold: 'r#1', token: 1n }, 9);
    // r#1 came back after w#1's write: the stale read extends r#1 over w#1 — one overlap, refused by fencing.
    expect(checker.metrics()).toMatchObject({ overlaps: 1, overlapsWithFencing: 0 });
  });
});

describe('judging a fault scenario', () => {
  const redis = {
    fencing: 'monotonic',
    fairness: 'none',
    wakeup: 'push',
    expiry: 'ttl',
    safety: '',
  } as const;
  const overlap = {
    holds: 10,
    writes: 30,
    overlaps: 1,
    overlapsPastLease: 0,
    staleWrites: 1,
    lostUpdates: 1,
    lostUpdatesWithFencing: 0,
    tokenRegressions: 0,
  };

  it('calls an overlap under a safe claim a violation, unless the holder had outlived its lease or was stalled', () => {
    expect(judge('safe', redis, overlap)).toBe('claim-violated');
    expect(inconclusiveBecause('claim-violated', redis, overlap, 120, 1_000)).toBeUndefined();
    expect(inconclusiveBecause('claim-violated', redis, overlap, 600, 1_000)).toMatch(/stalled for 600 ms/);
    expect(
      inconclusiveBecause('claim-violated', redis, { ...overlap, overlapsPastLease: 1 }, 0, 1_000),
    ).toMatch(/after the earlier holder's lease \(1000 ms from its grant\) had run out/);
  });

  it('holds a fenced semaphore or read-write claim to its fenced counts', () => {
    const semaphore = { ...overlap, lostUpdates: 0, overlapsWithFencing: 0, limit: 2, mostInside: 3 };
    expect(judge('fenced', redis, semaphore)).toBe('held');
    expect(judge('fenced', redis, { ...semaphore, overlapsWithFencing: 1 })).toBe('claim-violated');
    const readWrite = { ...overlap, lostUpdates: 0, writesOverReads: 1, writesOverReadsWithFencing: 1 };
    expect(judge('fenced', redis, readWrite)).toBe('claim-violated');
    expect(judge('fenced', { ...redis, fencing: 'none' }, readWrite)).toBe('known-unsafe');
  });

  it('never excuses a fencing failure, however long the stall', () => {
    const fencingLost = { ...overlap, overlapsPastLease: 1, lostUpdatesWithFencing: 1 };
    expect(judge('fenced', redis, fencingLost)).toBe('claim-violated');
    expect(inconclusiveBecause('claim-violated', redis, fencingLost, 5_000, 1_000)).toBeUndefined();
  });

  it('tells an overlap inside the earlier lease from one after it ran out', () => {
    const checker = new SafetyChecker({ leaseMs: 100 });
    hold(checker, 'slow#1', 1n, 0, [0, 1, 2, 150, 151]);
    hold(checker, 'early#1', 2n, 50, [50, 51, 52]);
    hold(checker, 'late#1', 3n, 120, [120, 121, 122]);
    expect(checker.metrics()).toMatchObject({ overlaps: 2, overlapsPastLease: 1 });
  });
});
