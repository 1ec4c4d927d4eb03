import { describe, expect, it } from 'vitest';
import { figureOf, interleave, pairedRatios } from '../src/bench/blocks.js';

describe('figures measured as interleaved blocks', () => {
  it('reports the median of the blocks with their min–max, and marks a wide spread as noisy', () => {
    expect(figureOf([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, blocks: 3, noisy: true });
    expect(figureOf([10, 11, 12, 13])).toEqual({ median: 11.5, min: 10, max: 13, blocks: 4, noisy: false });
  });

  it('visits every subject once per round, starting one further along each round', async () => {
    const order: string[] = [];
    const { results, failures } = await interleave(
      ['floor', 'a', 'b'],
      3,
      async (subject, round) => {
        order.push(`${round}:${subject}`);
        return round;
      },
      new AbortController().signal,
    );
    expect(order).toEqual(['0:floor', '0:a', '0:b', '1:a', '1:b', '1:floor', '2:b', '2:floor', '2:a']);
    expect(results.get('a')).toEqual([0, 1, 2]);
    expect(failures.size).toBe(0);
  });

  it('drops a subject whose block fails from later rounds and keeps its error', async () => {
    const { results, failures } = await interleave(
      ['ok', 'broken'],
      3,
      async (subject) => {
        if (subject === 'broken') throw new Error('server went away');
        return 1;
      },
      new AbortController().signal,
    );
    expect(results.get('ok')).toHaveLength(3);
    expect(results.get('broken')).toEqual([]);
    expect(String(failures.get('broken'))).toContain('server went away');
  });

  it('divides the same round of two subjects', () => {
    expect(pairedRatios([2, 3, 4], [1, 1.5, 0])).toEqual([2, 2]);
  });
});
