import { readFileSync, writeFileSync } from 'node:fs';
import { RESULTS_SCHEMA, type Results } from '../results.js';
import { validateResults } from './validate.js';

export function renderResultsJson(results: Results): string {
  return `${JSON.stringify(results, null, 2)}\n`;
}

export function writeResultsJson(path: string, results: Results): void {
  writeFileSync(path, renderResultsJson(results));
}

/** Reads a results.json and checks it against the schema; throws naming every problem. */
export function readResultsJson(path: string): Results {
  const value = JSON.parse(readFileSync(path, 'utf8')) as { schema?: unknown };
  if (value.schema !== RESULTS_SCHEMA) {
    throw new Error(`${path} is not a ${RESULTS_SCHEMA} file (schema: ${JSON.stringify(value.schema)})`);
  }
  const problems = validateResults(value);
  if (problems.length > 0) throw new Error(`${path} is not a consistent ${RESULTS_SCHEMA} file:\n${problems.join('\n')}`);
  return value as Results;
}
