import { mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '@dlock/core';
import { MIN_BLOCKS } from './bench/blocks.js';
import { benchmarkGroup } from './bench/suite.js';
import {
  type DeclaredCapabilities,
  type LabBackend,
  declaredCapabilities,
  discoverBackends,
} from './discovery.js';
import { ENDPOINT_FORMS, checkAddresses } from './endpoints.js';
import { faultScenarios, runScenario } from './faults/index.js';
import { stateDir } from './paths.js';
import type { Progress } from './progress.js';
import {
  type BackendRecord,
  type BenchmarkRecord,
  type FaultRecord,
  type PeerRecord,
  RESULTS_SCHEMA,
  type ReadWriteRecord,
  type Results,
  type SemaphoreRecord,
  type ServerKind,
  type Verdict,
} from './results.js';
import { backendsNeedingConformanceRun, collectSemantics } from './semantics.js';
import { type ServerSet, canStart, externalServerSet, startServerSet } from './servers.js';
import { serversLabel } from './words.js';

export interface CompareOptions {
  readonly backends: string[] | null;
  readonly durationSeconds: number;
  /** Interleaved blocks per benchmark figure. */
  readonly rounds: number;
  readonly contenders: number[];
  /** null: every scenario; []: none. */
  readonly scenarios: string[] | null;
  readonly out: string;
  readonly json: boolean;
  /** Print what would run, and an estimate of how long, without starting anything. */
  readonly dryRun: boolean;
  readonly semanticsFrom: string | null;
  /** Servers given on the command line, by kind: used for benchmarks instead of starting them. */
  readonly endpoints: ReadonlyMap<ServerKind, string[]>;
}

const DEFAULT_DURATION_SECONDS = 10;
const DEFAULT_ROUNDS = 5;
const MAX_ROUNDS = 50;
const DEFAULT_CONTENDERS = [1, 8, 32];
const MAX_CONTENDERS = 256;
/** Short leases and sessions keep crash recovery (and so the run) quick; ZooKeeper's floor is 2 ticks. */
const FAILOVER_TTL_MS = 1_000;
const SCENARIO_TTL_MS = 1_000;
const SESSION_TIMEOUT_MS = 2_000;
const TAKEOVER_TIMEOUT_MS = 30_000;
const SERVER_KINDS: readonly ServerKind[] = ['redis', 'zookeeper', 'etcd'];

const list = (value: string | undefined) =>
  value === undefined
    ? null
    : value
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');

/** `--endpoints kind=a,b` values, checked before anything starts. */
function parseEndpoints(entries: readonly string[]): Map<ServerKind, string[]> {
  const endpoints = new Map<ServerKind, string[]>();
  for (const entry of entries) {
    const separator = entry.indexOf('=');
    const kind = entry.slice(0, separator) as ServerKind;
    const addresses = list(entry.slice(separator + 1)) ?? [];
    if (separator < 0 || !SERVER_KINDS.includes(kind) || addresses.length === 0) {
      throw new InvalidArgumentError('--endpoints', entry, `<kind>=<address,...>, e.g. ${ENDPOINT_FORMS}`);
    }
    checkAddresses(entry, kind, addresses);
    if (endpoints.has(kind))
      throw new InvalidArgumentError(
        '--endpoints',
        entry,
        `one --endpoints per kind (${kind} is given twice)`,
      );
    endpoints.set(kind, addresses);
  }
  return endpoints;
}

export const COMPARE_USAGE = `dlock compare [options]
  --backends <a,b>        only these backends (default: every discovered one, plus memory and setnx-getset)
  --duration <seconds>    benchmark budget per backend (default ${DEFAULT_DURATION_SECONDS}); fault windows scale with it
  --rounds <n>            interleaved blocks per benchmark figure (default ${DEFAULT_ROUNDS}, at least ${MIN_BLOCKS}): its median and spread
  --contenders <1,8,32>   contender counts on one key (the largest also runs on as many keys)
  --scenarios <a,b|none>  fault scenarios to run (default: all that apply): ${faultScenarios.map((s) => s.id).join(', ')}
  --out <dir>             report directory (default: report)
  --json                  print results.json to stdout instead of the summary table
  --dry-run               print what would run and about how long it takes; start nothing
  --semantics-from <dir>  read conformance reports from <dir> instead of running the kit
  --endpoints <kind=a,b>  benchmark against running servers (repeatable): ${ENDPOINT_FORMS}`;

export function parseCompareOptions(argv: string[]): CompareOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      backends: { type: 'string' },
      duration: { type: 'string' },
      rounds: { type: 'string' },
      contenders: { type: 'string' },
      scenarios: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      'semantics-from': { type: 'string' },
      endpoints: { type: 'string', multiple: true },
    },
    strict: true,
    allowPositionals: false,
  });
  const durationSeconds = values.duration === undefined ? DEFAULT_DURATION_SECONDS : Number(values.duration);
  if (!Number.isFinite(durationSeconds) || durationSeconds <= 0 || durationSeconds > 3600) {
    throw new InvalidArgumentError('--duration', values.duration, 'seconds, a number > 0 and <= 3600');
  }
  const rounds = values.rounds === undefined ? DEFAULT_ROUNDS : Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < MIN_BLOCKS || rounds > MAX_ROUNDS) {
    throw new InvalidArgumentError(
      '--rounds',
      values.rounds,
      `an integer from ${MIN_BLOCKS} to ${MAX_ROUNDS}`,
    );
  }
  const contenders = (list(values.contenders) ?? DEFAULT_CONTENDERS.map(String)).map(Number);
  if (
    contenders.length === 0 ||
    contenders.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_CONTENDERS)
  ) {
    throw new InvalidArgumentError(
      '--contenders',
      values.contenders,
      `comma-separated integers 1..${MAX_CONTENDERS}`,
    );
  }
  const scenarios = values.scenarios?.trim() === 'none' ? [] : list(values.scenarios);
  const known = faultScenarios.map((scenario) => scenario.id);
  const unknown = scenarios?.filter((id) => !known.includes(id)) ?? [];
  if (unknown.length > 0)
    throw new InvalidArgumentError('--scenarios', unknown.join(','), `none, or some of: ${known.join(', ')}`);
  const endpoints = parseEndpoints(values.endpoints ?? []);
  return {
    backends: list(values.backends),
    durationSeconds,
    rounds,
    contenders: [...new Set(contenders)].sort((a, b) => a - b),
    scenarios,
    out: resolve(values.out ?? 'report'),
    json: values.json ?? false,
    dryRun: values['dry-run'] ?? false,
    semanticsFrom: values['semantics-from'] ? resolve(values['semantics-from']) : null,
    endpoints,
  };
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

interface BackendState {
  readonly backend: LabBackend;
  /** Every primitive's, once a provider was connected (by the benchmarks or a probe). */
  capabilities: DeclaredCapabilities | null;
  /** Why it cannot run on servers here (binary missing), or undefined. */
  unavailable: string | undefined;
}

/** Benchmarks grouped by server set: each set is started once, its backends, floor and peers measured together. */
async function runBenchmarks(
  states: readonly BackendState[],
  options: CompareOptions,
  signal: AbortSignal,
  progress: Progress,
  notes: string[],
): Promise<Pick<Results, 'benchmarks' | 'peers' | 'semaphores' | 'readWriteLocks'>> {
  const plan = {
    durationMs: options.durationSeconds * 1000,
    rounds: options.rounds,
    contenders: options.contenders,
    failoverTtlMs: FAILOVER_TTL_MS,
    failoverSessionTimeoutMs: SESSION_TIMEOUT_MS,
  };
  const groups = new Map<string, BackendState[]>();
  for (const state of states) {
    if (state.unavailable) continue;
    const { placement, serverCount } = state.backend;
    const group = `${placement}:${serverCount}`;
    groups.set(group, [...(groups.get(group) ?? []), state]);
  }
  const benchmarks: BenchmarkRecord[] = [];
  const peers: PeerRecord[] = [];
  const semaphores: SemaphoreRecord[] = [];
  const readWriteLocks: ReadWriteRecord[] = [];
  const total = [...groups.values()].reduce((sum, group) => sum + group.length, 0);
  let done = 0;
  for (const group of groups.values()) {
    const first = (group[0] as BackendState).backend;
    const fractionOf = (fraction: number) => (done + fraction * group.length) / total;
    let set: ServerSet | null = null;
    try {
      if (first.placement !== 'in-process') {
        const kind = first.placement;
        const given = options.endpoints.get(kind);
        const useGiven = given?.length === first.serverCount;
        progress.step(
          serversLabel(kind, first.serverCount),
          useGiven ? 'using the given servers' : 'starting servers',
          fractionOf(0),
        );
        set = useGiven ? externalServerSet(kind, given) : await startServerSet(kind, first.serverCount);
      }
      const measured = await benchmarkGroup(
        group.map((state) => state.backend),
        set,
        plan,
        signal,
        (subject, detail, fraction) => progress.step(subject, detail, fractionOf(fraction)),
      );
      for (const state of group) state.capabilities = measured.capabilities.get(state.backend.name) ?? null;
      benchmarks.push(...measured.benchmarks);
      peers.push(...measured.peers);
      semaphores.push(...measured.semaphores);
      readWriteLocks.push(...measured.readWriteLocks);
      notes.push(...measured.notes);
    } catch (error) {
      signal.throwIfAborted();
      for (const state of group)
        notes.push(`${state.backend.name}: benchmarks could not run: ${errorText(error)}`);
    } finally {
      done += group.length;
      await set?.stop();
    }
  }
  return { benchmarks, peers, semaphores, readWriteLocks };
}

/** A provider's capabilities for backends the benchmarks did not reach (e.g. benchmarks failed). */
async function probeCapabilities(state: BackendState): Promise<void> {
  if (state.capabilities || state.unavailable || state.backend.placement === 'in-process') return;
  const set = await startServerSet(state.backend.placement, state.backend.serverCount);
  try {
    const provider = await state.backend.createProvider(set.endpoints, { connectTimeoutMs: 5_000 });
    state.capabilities = declaredCapabilities(state.backend, provider);
    await provider.close();
  } finally {
    await set.stop();
  }
}

async function runFaults(
  states: readonly BackendState[],
  options: CompareOptions,
  signal: AbortSignal,
  progress: Progress,
  notes: string[],
): Promise<FaultRecord[]> {
  const chosen = faultScenarios.filter(
    (scenario) => options.scenarios === null || options.scenarios.includes(scenario.id),
  );
  const runs = chosen.flatMap((scenario) =>
    states
      .filter((state) => !state.unavailable && scenario.appliesTo(state.backend))
      .map((state) => ({ scenario, state })),
  );
  const timing = {
    windowMs: scenarioWindowMs(options),
    ttlMs: SCENARIO_TTL_MS,
    sessionTimeoutMs: SESSION_TIMEOUT_MS,
    takeoverTimeoutMs: TAKEOVER_TIMEOUT_MS,
  };
  const records: FaultRecord[] = [];
  for (const [index, { scenario, state }] of runs.entries()) {
    const subject = `${scenario.id} · ${state.backend.name}`;
    progress.step(subject, 'starting', index / runs.length);
    try {
      await probeCapabilities(state);
    } catch (error) {
      signal.throwIfAborted();
      notes.push(`${state.backend.name}: could not read its capabilities: ${errorText(error)}`);
    }
    if (!state.capabilities) {
      notes.push(`${subject}: skipped, the backend's capabilities are unknown`);
      continue;
    }
    const kind = scenario.checks?.kind ?? 'lock';
    const capabilities =
      kind === 'semaphore'
        ? state.capabilities.semaphore
        : kind === 'read-write'
          ? state.capabilities.readWrite
          : state.capabilities.lock;
    if (!capabilities) {
      const why =
        kind === 'semaphore'
          ? state.capabilities.unsupported.semaphore
          : state.capabilities.unsupported.readWrite;
      notes.push(
        `${subject}: skipped, ${why ?? `${state.backend.name} has no ${kind === 'semaphore' ? 'semaphores' : 'read-write locks'}`}`,
      );
      continue;
    }
    const record = await runScenario(scenario, state.backend, capabilities, {
      timing,
      signal,
      onStep: (detail) => progress.step(subject, detail, index / runs.length),
    });
    signal.throwIfAborted();
    records.push(record);
    if (record.verdict === 'claim-violated') progress.note(`VIOLATION: ${subject}: ${record.explanation}`);
  }
  return records;
}

function judgeRun(results: Omit<Results, 'verdict'>): Verdict {
  const violations = [
    ...results.semantics.flatMap((entry) =>
      entry.violated.map((title) => `${entry.backend}: conformance: ${title}`),
    ),
    ...results.faults
      .filter((fault) => fault.verdict === 'claim-violated')
      .map((fault) => `${fault.backend}: ${fault.title}: ${fault.explanation}`),
    // Counted by the contenders themselves, so never overstated: every backend claims these.
    ...(results.semaphores ?? [])
      .filter((entry) => entry.origin === 'backend' && (entry.contention?.mostInside ?? 0) > entry.limit)
      .map(
        (entry) =>
          `${entry.subject}: semaphore benchmark: ${entry.contention?.mostInside} permits held at once with limit ${entry.limit}`,
      ),
    ...(results.readWriteLocks ?? [])
      .filter((entry) => entry.conflicts > 0)
      .map(
        (entry) =>
          `${entry.backend}: read-write benchmark: ${entry.conflicts} write leases held beside another lease`,
      ),
  ];
  const incomplete = [
    ...results.faults
      .filter((fault) => fault.verdict === 'error')
      .map((fault) => `${fault.backend}: ${fault.title}: ${fault.error}`),
    ...results.benchmarks.flatMap((bench) => bench.errors.map((error) => `${bench.backend}: ${error}`)),
    ...results.notes.filter((note) => /could not run|failed/.test(note)),
  ];
  return { exitCode: violations.length > 0 ? 1 : incomplete.length > 0 ? 3 : 0, violations, incomplete };
}

/** Rough costs behind the dry run's estimate, from runs on a shared 2-core machine (seconds). */
const ESTIMATE_S = {
  serverSet: 3,
  conformanceRun: 15,
  failoverSampleOverhead: 1,
  scenarioOverhead: 5,
  /**
   * Semaphore and read-write blocks per round of a backend with those primitives, at their minimum
   * lengths (two contended blocks of 600 ms, a hand-off and uncontended blocks), whatever --duration.
   */
  primitiveRound: 1.6,
} as const;

/** What `compare` would do with these options, and about how long it would take; starts nothing. */
export async function planCompare(options: CompareOptions): Promise<string> {
  const { states, notes } = await selectBackends(options);
  const ready = states.filter((state) => !state.unavailable).map((state) => state.backend);
  const sets = new Set(
    ready
      .filter((backend) => backend.placement !== 'in-process')
      .map((b) => `${b.placement}:${b.serverCount}`),
  );
  const conformance = backendsNeedingConformanceRun(ready, {
    from: options.semanticsFrom,
    runDir: join(stateDir(), 'conformance'),
  });
  const scenarios = faultScenarios
    .filter((scenario) => options.scenarios === null || options.scenarios.includes(scenario.id))
    .flatMap((scenario) =>
      ready
        .filter((backend) => scenario.appliesTo(backend))
        .map((backend) => `${scenario.id} · ${backend.name}`),
    );
  const windowS = scenarioWindowMs(options) / 1000;
  const failoverS =
    ready.filter((backend) => backend.contenderModule !== null && backend.placement !== 'in-process').length *
    MIN_BLOCKS *
    (SESSION_TIMEOUT_MS / 1000 + ESTIMATE_S.failoverSampleOverhead);
  const seconds =
    conformance.length * ESTIMATE_S.conformanceRun +
    sets.size * ESTIMATE_S.serverSet +
    ready.length * options.durationSeconds +
    ready.filter((backend) => !backend.locksOnly).length * options.rounds * ESTIMATE_S.primitiveRound +
    failoverS +
    scenarios.length * (ESTIMATE_S.scenarioOverhead + windowS);
  const minutes = Math.max(1, Math.round(seconds / 60));
  return [
    'dlock compare would run (--dry-run: nothing started):',
    `  backends: ${ready.map((backend) => backend.name).join(', ') || 'none'}`,
    ...notes.map((note) => `  note: ${note}`),
    `  conformance kit runs: ${conformance.map((backend) => backend.name).join(', ') || 'none (fresh reports found)'}`,
    `  benchmarks: ${options.durationSeconds} s per backend in ${options.rounds} interleaved rounds, contenders ${options.contenders.join(', ')}`,
    `  fault scenarios (${scenarios.length}): ${scenarios.join(', ') || 'none'}`,
    `  report: ${options.out}`,
    `  estimated time on a 2-core machine: about ${minutes} min`,
  ].join('\n');
}

/** The backends to run, with the reason each one that cannot run here is skipped. */
async function selectBackends(options: CompareOptions): Promise<{ states: BackendState[]; notes: string[] }> {
  const discovery = await discoverBackends();
  const notes = [...discovery.notes];
  const available = discovery.backends.map((backend) => backend.name);
  const unknown = options.backends?.filter((name) => !available.includes(name)) ?? [];
  if (unknown.length > 0) {
    throw new InvalidArgumentError('--backends', unknown.join(','), `some of: ${available.join(', ')}`);
  }
  const states: BackendState[] = discovery.backends
    .filter((backend) => options.backends === null || options.backends.includes(backend.name))
    .map((backend) => ({
      backend,
      capabilities: null,
      unavailable:
        backend.placement !== 'in-process' &&
        !canStart(backend.placement) &&
        !options.endpoints.has(backend.placement)
          ? `${backend.placement} is not installed on this machine (\`bash scripts/setup.sh\` installs it)`
          : undefined,
    }));
  for (const state of states) {
    if (state.unavailable) notes.push(`${state.backend.name}: skipped: ${state.unavailable}`);
  }
  return { states, notes };
}

/** How long contenders run before and after a fault: scales with --duration, within 1.5 s – 6 s. */
function scenarioWindowMs(options: CompareOptions): number {
  return Math.min(6_000, Math.max(1_500, options.durationSeconds * 250));
}

/** The whole `dlock compare` run: semantics, benchmarks, fault scenarios. Writes nothing itself. */
export async function compare(
  options: CompareOptions,
  signal: AbortSignal,
  progress: Progress,
): Promise<Results> {
  const startedAt = new Date();
  const loadAtStart = Math.round((loadavg()[0] ?? 0) * 100) / 100;
  progress.stage('discovering backends', 1, 4);
  const { states, notes } = await selectBackends(options);
  for (const note of notes) progress.note(`note: ${note}`);

  progress.stage('semantics', 2, 4);
  const semantics = await collectSemantics(
    states.map((state) => state.backend),
    {
      from: options.semanticsFrom,
      runDir: join(stateDir(), 'conformance'),
      signal,
      onStep: (backend, detail) => progress.step(backend, detail),
    },
  );
  notes.push(...semantics.notes);

  progress.stage('benchmarks', 3, 4);
  const { benchmarks, peers, semaphores, readWriteLocks } = await runBenchmarks(
    states,
    options,
    signal,
    progress,
    notes,
  );

  progress.stage('fault scenarios', 4, 4);
  const faults = await runFaults(states, options, signal, progress, notes);
  progress.done();

  const backends: BackendRecord[] = states.map(({ backend, capabilities }) => ({
    name: backend.name,
    origin: backend.origin,
    packageName: backend.packageName,
    placement: backend.placement,
    serverCount: backend.serverCount,
    capabilities: capabilities?.lock ?? null,
    semaphoreCapabilities: capabilities?.semaphore ?? null,
    readWriteCapabilities: capabilities?.readWrite ?? null,
    ...(capabilities?.unsupported.semaphore
      ? { semaphoreUnsupported: capabilities.unsupported.semaphore }
      : {}),
    ...(capabilities?.unsupported.readWrite
      ? { readWriteUnsupported: capabilities.unsupported.readWrite }
      : {}),
  }));
  const cpuList = cpus();
  const partial: Omit<Results, 'verdict'> = {
    schema: RESULTS_SCHEMA,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: {
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      cpus: cpuList.length,
      cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
      loadAverage: { atStart: loadAtStart, atEnd: Math.round((loadavg()[0] ?? 0) * 100) / 100 },
    },
    options: {
      backends: options.backends,
      durationSeconds: options.durationSeconds,
      rounds: options.rounds,
      contenders: options.contenders,
      scenarios: options.scenarios,
      semanticsFrom: options.semanticsFrom,
    },
    notes,
    backends,
    semantics: semantics.records,
    semanticsTable: semantics.table,
    benchmarks,
    peers,
    semaphores,
    readWriteLocks,
    faults,
  };
  return { ...partial, verdict: judgeRun(partial) };
}

/** Ensures the report directory exists; returns the paths of the three report files. */
export function reportPaths(out: string): { dir: string; html: string; markdown: string; json: string } {
  mkdirSync(out, { recursive: true });
  return {
    dir: out,
    html: join(out, 'index.html'),
    markdown: join(out, 'report.md'),
    json: join(out, 'results.json'),
  };
}
