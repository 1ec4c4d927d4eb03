import { describe, expect, it } from 'vitest';
import { figureOf } from '../src/bench/blocks.js';
import { LatencyRecorder } from '../src/bench/histogram.js';
import { checkConsistency, validateAgainstSchema, validateResults } from '../src/report/validate.js';
import type { Results } from '../src/results.js';
import { sampleResults } from './fixtures.js';

describe('results.json validation', () => {
  it('accepts a complete, consistent results file', () => {
    expect(validateResults(sampleResults())).toEqual([]);
  });

  it('names missing, unexpected and mistyped fields (JSON Schema 2020-12, checked by ajv)', () => {
    const problems = validateAgainstSchema({
      ...sampleResults(),
      schema: 'dlock.results/1',
      startedAt: 'yesterday',
      surprise: true,
      notes: [1],
      verdict: undefined,
    });
    expect(problems.join('\n')).toMatch(/\$\.schema: must be equal to constant/);
    expect(problems.join('\n')).toMatch(/\$\.startedAt: must match format "date-time"/);
    expect(problems.join('\n')).toMatch(/must NOT have additional properties \("surprise"\)/);
    expect(problems.join('\n')).toMatch(/\$\.notes\.0: must be string/);
    expect(problems.join('\n')).toMatch(/must have required property 'verdict'/);
  });

  it('refuses a median of fewer than three blocks', () => {
    const results = sampleResults();
    const bench = results.benchmarks[1] as Results['benchmarks'][number];
    const onlyOne = {
      ...bench,
      failover: { takeoverMs: { median: 850, min: 850, max: 850, blocks: 1, noisy: false }, expiryMs: 1000 },
    };
    const problems = validateResults({ ...results, benchmarks: [onlyOne] });
    expect(problems.join('\n')).toMatch(/failover|blocks/);
    expect(() => figureOf([1, 2])).toThrow(/needs at least 3/);
  });

  it('requires p50 ≤ p99 ≤ max and a median inside its spread', () => {
    const results = sampleResults();
    const bench = results.benchmarks[1] as Results['benchmarks'][number];
    const handoff = { samples: 30, p50Ms: figureOf([1, 2, 3]), p99Ms: 8.631, maxMs: 8.628 };
    const skewed = { ...figureOf([1, 2, 3]), median: 5 };
    expect(
      checkConsistency({ ...results, benchmarks: [{ ...bench, handoff, ratioToFloorP50: skewed }] }),
    ).toEqual([
      'redis ratio to the floor: median 5 outside its spread 1–3',
      'redis hand-off: p50 2 ≤ p99 8.631 ≤ max 8.628 does not hold',
    ]);
  });

  it('speaks one verdict vocabulary, and gives every peer a label of its own', () => {
    const results = sampleResults();
    const fault = results.faults[0] as Results['faults'][number];
    const peer = results.peers[0] as Results['peers'][number];
    const renamed = { ...fault, verdict: 'known-violation' } as unknown as typeof fault;
    expect(validateAgainstSchema({ ...results, faults: [renamed] }).join('\n')).toMatch(
      /verdict: must be equal to one of the allowed values/,
    );
    expect(checkConsistency({ ...results, faults: [renamed], peers: [peer, peer] })).toEqual([
      'peer redlock (library) · redis: label used twice',
      'holder-crash · redis: verdict "known-violation" is not one of held, claim-violated, known-unsafe, not-reproduced, error',
    ]);
  });

  it('keeps HDR percentiles within the values recorded, so p99 never exceeds max', () => {
    const recorder = new LatencyRecorder();
    for (let i = 0; i < 200; i++) recorder.recordMs(8.628 - (i % 3) * 0.0001);
    expect(recorder.percentileMs(99)).toBeLessThanOrEqual(recorder.maxMs);
    expect(recorder.percentileMs(50)).toBeLessThanOrEqual(recorder.percentileMs(99));
  });
});
