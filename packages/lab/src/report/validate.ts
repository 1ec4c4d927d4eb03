import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Ajv2020 as Ajv2020Class } from 'ajv/dist/2020.js';
import type { FormatsPlugin } from 'ajv-formats';
import { MIN_BLOCKS } from '../bench/blocks.js';
import { labPackageDir } from '../paths.js';
import { FAULT_VERDICTS, type Figure, type LatencyRecord, type Results } from '../results.js';

/**
 * ajv and ajv-formats are CommonJS packages whose default export TypeScript's NodeNext resolution
 * types as the module object; loading them through require gives the constructor and the plugin.
 */
const require = createRequire(import.meta.url);
const { Ajv2020 } = require('ajv/dist/2020.js') as { Ajv2020: typeof Ajv2020Class };
const addFormats = require('ajv-formats') as FormatsPlugin;

export type JsonSchema = { readonly [keyword: string]: unknown };

export function loadResultsSchema(): JsonSchema {
  return JSON.parse(readFileSync(join(labPackageDir, 'schema', 'results.schema.json'), 'utf8')) as JsonSchema;
}

let compiled: ((value: unknown) => string[]) | undefined;

/** Checks a value against schema/results.schema.json (JSON Schema 2020-12, with ajv); [] when it matches. */
export function validateAgainstSchema(value: unknown): string[] {
  if (!compiled) {
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    addFormats(ajv, ['date-time']);
    const validate = ajv.compile(loadResultsSchema());
    compiled = (candidate) =>
      validate(candidate)
        ? []
        : (validate.errors ?? []).map(
            (error) => `$${error.instancePath.replace(/\//g, '.')}: ${error.message ?? error.keyword}${
              error.keyword === 'additionalProperties'
                ? ` (${JSON.stringify((error.params as { additionalProperty?: string }).additionalProperty)})`
                : error.keyword === 'enum'
                  ? ` (${JSON.stringify((error.params as { allowedValues?: unknown }).allowedValues)})`
                  : ''
            }`,
          );
  }
  return compiled(value);
}

/**
 * What a schema cannot say: every figure has a median that lies within its spread and comes from at
 * least MIN_BLOCKS blocks; p50 ≤ p99 ≤ max for every latency; peer labels and semaphore subjects are
 * unique; fault verdicts use the one vocabulary.
 * Returns every inconsistency found, each naming where it is.
 */
export function checkConsistency(results: Results): string[] {
  const problems: string[] = [];
  const figure = (where: string, value: Figure | null | undefined) => {
    if (!value) return;
    if (value.blocks < MIN_BLOCKS)
      problems.push(`${where}: a median of ${value.blocks} blocks (at least ${MIN_BLOCKS} needed)`);
    if (!(value.min <= value.median && value.median <= value.max))
      problems.push(`${where}: median ${value.median} outside its spread ${value.min}–${value.max}`);
  };
  const latency = (where: string, value: LatencyRecord | null | undefined) => {
    if (!value) return;
    figure(`${where} p50`, value.p50Ms);
    if (!(value.p50Ms.median <= value.p99Ms && value.p99Ms <= value.maxMs)) {
      problems.push(`${where}: p50 ${value.p50Ms.median} ≤ p99 ${value.p99Ms} ≤ max ${value.maxMs} does not hold`);
    }
  };
  for (const bench of results.benchmarks) {
    latency(`${bench.backend} uncontended`, bench.uncontended);
    latency(`${bench.backend} floor`, bench.floor);
    figure(`${bench.backend} ratio to the floor`, bench.ratioToFloorP50);
    latency(`${bench.backend} hand-off`, bench.handoff);
    figure(`${bench.backend} failover`, bench.failover?.takeoverMs);
    for (const level of bench.contention) {
      figure(`${bench.backend} contention ${level.contenders}/${level.keys}`, level.opsPerSecond);
      latency(`${bench.backend} contention ${level.contenders}/${level.keys} wait`, level.waitMs);
    }
  }
  const labels = new Set<string>();
  for (const peer of results.peers) {
    latency(`peer ${peer.label}`, peer);
    figure(`peer ${peer.label} ratio to the floor`, peer.ratioToFloorP50);
    figure(`peer ${peer.label} contention`, peer.contention?.opsPerSecond);
    latency(`peer ${peer.label} contention wait`, peer.contention?.waitMs);
    if (labels.has(peer.label)) problems.push(`peer ${peer.label}: label used twice`);
    labels.add(peer.label);
  }
  const subjects = new Set<string>();
  for (const semaphore of results.semaphores ?? []) {
    const where = `semaphore ${semaphore.subject}`;
    latency(`${where} uncontended`, semaphore.uncontended);
    latency(`${where} floor`, semaphore.floor);
    figure(`${where} ratio to the floor`, semaphore.ratioToFloorP50);
    figure(`${where} contention`, semaphore.contention?.opsPerSecond);
    latency(`${where} wait`, semaphore.contention?.waitMs);
    latency(`${where} hand-off`, semaphore.handoff);
    if (subjects.has(semaphore.subject)) problems.push(`${where}: subject used twice`);
    subjects.add(semaphore.subject);
  }
  for (const lock of results.readWriteLocks ?? []) {
    figure(`read-write ${lock.backend} throughput`, lock.opsPerSecond);
    latency(`read-write ${lock.backend} read wait`, lock.readWaitMs);
    latency(`read-write ${lock.backend} write wait`, lock.writeWaitMs);
  }
  for (const fault of results.faults) {
    if (!(FAULT_VERDICTS as readonly string[]).includes(fault.verdict)) {
      problems.push(`${fault.scenario} · ${fault.backend}: verdict "${fault.verdict}" is not one of ${FAULT_VERDICTS.join(', ')}`);
    }
  }
  return problems;
}

/** Schema problems first; when the structure is right, the consistency problems. */
export function validateResults(value: unknown): string[] {
  const structural = validateAgainstSchema(value);
  return structural.length > 0 ? structural : checkConsistency(value as Results);
}
