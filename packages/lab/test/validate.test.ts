import { describe, expect, it } from 'vitest';
import { loadResultsSchema, validateAgainstSchema } from '../src/report/validate.js';

const schema = loadResultsSchema();

describe('the results.json structural check', () => {
  it('understands every keyword the shipped schema uses', () => {
    const problems = validateAgainstSchema({}, schema);
    expect(
      problems.filter((problem) => problem.includes('not supported') || problem.includes('$ref')),
    ).toEqual([]);
  });

  it('names missing, unexpected and mistyped fields', () => {
    const problems = validateAgainstSchema(
      { schema: 'dlock.results/2', startedAt: 'yesterday', surprise: true, notes: [1] },
      schema,
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        '$.schema: expected "dlock.results/1", got "dlock.results/2"',
        '$.startedAt: not a date-time',
        '$: unexpected "surprise"',
        '$.notes[0]: expected string, got integer',
        '$: missing "verdict"',
      ]),
    );
  });

  it('checks nested definitions through $ref and nullable shapes', () => {
    const small = {
      type: 'object',
      $defs: {
        point: { type: 'object', properties: { x: { type: 'integer', minimum: 0 } }, required: ['x'] },
      },
      properties: { at: { anyOf: [{ $ref: '#/$defs/point' }, { type: 'null' }] } },
    };
    expect(validateAgainstSchema({ at: null }, small)).toEqual([]);
    expect(validateAgainstSchema({ at: { x: 3 } }, small)).toEqual([]);
    expect(validateAgainstSchema({ at: { x: -1 } }, small)).toEqual([
      '$.at: matches none of the allowed shapes',
    ]);
  });
});
