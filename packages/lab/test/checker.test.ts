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
