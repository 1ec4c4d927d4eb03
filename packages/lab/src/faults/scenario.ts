import { randomBytes } from 'node:crypto';
import { type Capabilities, pause } from '@dlock/core';
import type { ContenderConfig } from '../contender.js';
import type { LabBackend } from '../discovery.js';
import { formatMs } from '../report/tables.js';
import { SharedResource } from '../resource.js';
import type {
  CheckedPrimitive,
  CheckerMetrics,
  Claim,
  FaultRecord,
  FaultVerdict,
  ServerKind,
} from '../results.js';
import { type ServerSet, startServerSet } from '../servers.js';
import { plural } from '../words.js';
import { type Contender, maybeNextLine, nextLine, spawnContender } from './contenders.js';

export { plural };

const SECOND_HOLDER_TIMEOUT_MS = 5_000;

export interface ScenarioTiming {
  /** How long contenders run before and after a fault (ms); derived from --duration. */
  readonly windowMs: number;
  /** The lease ttl contenders request. */
  readonly ttlMs: number;
  /** The session timeout contenders of session-based backends ask for. */
  readonly sessionTimeoutMs: number;
  /** Longest wait for another contender to take over after a fault (ttl or session expiry). */
  readonly takeoverTimeoutMs: number;
}

export interface ScenarioContext {
  readonly backend: LabBackend;
  readonly timing: ScenarioTiming;
  /** Aborted on Ctrl-C. */
  readonly signal: AbortSignal;
  /** Starts servers for the scenario; they are stopped when it ends. */
  startServers(kind: ServerKind, count: number): Promise<ServerSet>;
  /** Runs `stop` when the scenario ends, for anything started outside `startServers`. */
  onCleanup(stop: () => Promise<void>): void;
  /** Spawns a contender on `endpoints`, ready but not contending until `go()`. Finished when the scenario ends. */
  spawn(endpoints: readonly string[], overrides?: Partial<ContenderConfig>): Promise<Contender>;
  /** Spawns `count` contenders and starts them. */
  spawnAndGo(
    count: number,
    endpoints: readonly string[],
    overrides?: Partial<ContenderConfig>,
  ): Promise<Contender[]>;
  /** Records a number worth reporting (takeover time, holds after the fault, ...). */
  observe(name: string, value: number): void;
  /** Tells the progress display what the scenario is doing. */
  step(detail: string): void;
  sleep(ms: number): Promise<void>;
}

export interface ScenarioOutcome {
  readonly backend: LabBackend;
  readonly capabilities: Capabilities;
  readonly claim: Claim;
  readonly verdict: FaultVerdict;
  readonly metrics: CheckerMetrics;
  /** The non-zero findings in words ("2 overlapping holds, 1 lost update"), or "no violation". */
  readonly findings: string;
  readonly observations: Readonly<Record<string, number>>;
}

export interface FaultScenario {
  readonly id: string;
  readonly title: string;
  /**
   * What the contenders hold and the resource checks; default a lock. A semaphore or read-write
   * scenario runs only on backends that have that primitive, and is judged by what the primitive
   * declares (its capabilities may differ from the lock's).
   */
  readonly checks?: CheckedPrimitive;
  /** Which backends it applies to, by server kind and count, so a new backend of a known kind gets it. */
  appliesTo(backend: LabBackend): boolean;
  /** What the backend promises in this situation. */
  claim(backend: LabBackend, capabilities: Capabilities): Claim;
  run(context: ScenarioContext): Promise<void>;
  /** Two or three plain sentences on the result. */
  explain(outcome: ScenarioOutcome): string;
}

/** Backends whose lock state lives in separate servers (and so can be faulted across processes). */
export const crossProcess = (backend: LabBackend) =>
  backend.placement !== 'in-process' && backend.contenderModule !== null;

/**
 * Compares what happened with what the backend claims. A fencing failure — a lost update that a
 * token-checking resource would have accepted, or a grant whose token did not grow — only counts for
 * backends that declare monotonic fencing; for the others tokens carry no promise.
 */
export function judge(claim: Claim, capabilities: Capabilities, metrics: CheckerMetrics): FaultVerdict {
  const harm = metrics.overlaps > 0 || metrics.lostUpdates > 0 || (metrics.writesOverReads ?? 0) > 0;
  // Monotonic fencing is promised in every scenario, also in the ones where mutual exclusion is not.
  if (fencingFailed(capabilities, metrics)) return 'claim-violated';
  switch (claim) {
    case 'safe':
      return harm ? 'claim-violated' : 'held';
    case 'fenced':
      if (capabilities.fencing === 'monotonic') return 'held';
      return harm ? 'known-unsafe' : 'not-reproduced';
    case 'unsafe':
      return harm ? 'known-unsafe' : 'not-reproduced';
  }
}

/**
 * Why a violated mutual-exclusion claim is inconclusive, or undefined when it stands. A holder can
 * outlive its lease without any fault of the backend — paused, or starved by a busy machine — and no
 * lock prevents that (fencing does): so when every overlap began after the earlier holder's lease had
 * run out, or the machine stalled a contender for half a lease or more, the overlap says nothing about
 * the backend. Fencing failures are never excused: tokens protect a resource whatever the pause.
 */
export function inconclusiveBecause(
  verdict: FaultVerdict,
  capabilities: Capabilities,
  metrics: CheckerMetrics,
  longestStallMs: number,
  leaseMs: number,
): string | undefined {
  if (verdict !== 'claim-violated' || fencingFailed(capabilities, metrics)) return undefined;
  if (metrics.overlaps > 0 && metrics.overlapsPastLease === metrics.overlaps) {
    return `every overlapping hold began after the earlier holder's lease (${leaseMs} ms from its grant) had run out${
      longestStallMs > 0 ? ` (the longest stall a contender reported: ${longestStallMs} ms)` : ''
    }`;
  }
  if (longestStallMs * 2 >= leaseMs) {
    return `a contender process was stalled for ${longestStallMs} ms by the machine (its lease: ${leaseMs} ms)`;
  }
  return undefined;
}

/** A backend that declares monotonic fencing let a stale holder's damage through, or a token went backwards. */
function fencingFailed(capabilities: Capabilities, metrics: CheckerMetrics): boolean {
  return (
    capabilities.fencing === 'monotonic' &&
    (metrics.lostUpdatesWithFencing > 0 ||
      metrics.tokenRegressions > 0 ||
      (metrics.overlapsWithFencing ?? 0) > 0 ||
      (metrics.writesOverReadsWithFencing ?? 0) > 0)
  );
}

export interface ScenarioRunOptions {
  readonly timing: ScenarioTiming;
  readonly signal: AbortSignal;
  readonly onStep: (detail: string) => void;
}

/** Runs one scenario on one backend with a fresh resource, fresh servers and fresh contenders. */
export async function runScenario(
  scenario: FaultScenario,
  backend: LabBackend,
  capabilities: Capabilities,
  options: ScenarioRunOptions,
): Promise<FaultRecord> {
  const startedAt = performance.now();
  const leaseMs = capabilities.expiry === 'session' ? options.timing.sessionTimeoutMs : options.timing.ttlMs;
  const checks = scenario.checks ?? { kind: 'lock' };
  const resource = new SharedResource({ leaseMs, primitive: checks });
  const cleanups: Array<() => Promise<void>> = [];
  const contenders: Contender[] = [];
  // Named before the (concurrent) spawns resolve, so names — and hold ids — never collide.
  let spawned = 0;
  const observations: Record<string, number> = {};
  const key = `lab-${scenario.id}-${randomBytes(3).toString('hex')}`;
  const claim = scenario.claim(backend, capabilities);
  const module = backend.contenderModule;
  let error: string | null = null;
  const context: ScenarioContext = {
    backend,
    timing: options.timing,
    signal: options.signal,
    startServers: async (kind, count) => {
      options.onStep(`starting ${count} ${kind}`);
      const set = await startServerSet(kind, count);
      cleanups.push(() => set.stop());
      return set;
    },
    onCleanup: (stop) => {
      cleanups.push(stop);
    },
    spawn: async (endpoints, overrides = {}) => {
      if (module === null) throw new Error(`${backend.name} cannot run in a separate process`);
      const contender = await spawnContender({
        module,
        endpoints,
        key,
        ttlMs: options.timing.ttlMs,
        resourceUrl: resource.url,
        name: `${backend.name}-${++spawned}`,
        writesPerHold: 3,
        workMs: 20,
        maxHolds: 10_000,
        clockSkewMs: 0,
        connectTimeoutMs: 2_000,
        sessionTimeoutMs: options.timing.sessionTimeoutMs,
        primitive: checks.kind === 'read-write' ? { kind: 'read-write', mode: 'write' } : checks,
        ...overrides,
      });
      contenders.push(contender);
      return contender;
    },
    spawnAndGo: async (count, endpoints, overrides) => {
      const started = await Promise.all(
        Array.from({ length: count }, () => context.spawn(endpoints, overrides)),
      );
      for (const contender of started) contender.go();
      return started;
    },
    observe: (name, value) => {
      observations[name] = Math.round(value * 10) / 10;
    },
    step: options.onStep,
    sleep: async (ms) => {
      await pause(ms, options.signal);
      options.signal.throwIfAborted();
    },
  };
  try {
    await resource.start();
    await scenario.run(context);
  } catch (caught) {
    error = caught instanceof Error ? caught.message : String(caught);
  } finally {
    options.onStep('stopping contenders and servers');
    await Promise.allSettled(contenders.map((contender) => contender.finish()));
    await Promise.allSettled(cleanups.map((stop) => stop()));
    await resource.close();
  }
  const unhandled = contenders.reduce((sum, contender) => sum + contender.count(/^unhandled /), 0);
  if (unhandled > 0) observations.unhandledRejections = unhandled;
  const metrics = resource.checker.metrics();
  const stalls = contenders.flatMap((contender) =>
    contender.lines.flatMap((line) => {
      const match = /^stall (\d+)$/.exec(line);
      return match ? [Number(match[1])] : [];
    }),
  );
  const longestStallMs = Math.max(0, ...stalls);
  if (longestStallMs > 0) observations.longestStallMs = longestStallMs;
  let verdict: FaultVerdict = error === null ? judge(claim, capabilities, metrics) : 'error';
  let inconclusive: string | null = null;
  const doubt = inconclusiveBecause(verdict, capabilities, metrics, longestStallMs, leaseMs);
  if (doubt) {
    verdict = 'error';
    error = doubt;
    inconclusive = `Inconclusive: ${doubt}, so this run cannot tell a backend fault from a holder that outlived its lease the way a paused process does. Run it again on a quieter machine.`;
  }
  const findings = describeFindings(metrics, capabilities, checks);
  const outcome: ScenarioOutcome = { backend, capabilities, claim, verdict, metrics, findings, observations };
  return {
    scenario: scenario.id,
    title: scenario.title,
    backend: backend.name,
    primitive: checks.kind,
    claim,
    verdict,
    metrics,
    observations,
    explanation:
      error === null
        ? scenario.explain(outcome)
        : inconclusive
          ? `${inconclusive} The checker saw ${findings}.`
          : `The scenario could not run: ${error}`,
    durationMs: Math.round(performance.now() - startedAt),
    error,
    diagnostics: [...resource.checker.overlapDetails(3), ...contenderErrors(contenders)],
  };
}

/** Token findings only mean something for backends that promise monotonic fencing. */
function describeFindings(
  metrics: CheckerMetrics,
  capabilities: Capabilities,
  checks: CheckedPrimitive,
): string {
  const parts: string[] = [];
  const add = (count: number | undefined, singular: string, pluralForm: string) => {
    if (count !== undefined && count > 0) parts.push(plural(count, singular, pluralForm));
  };
  const pastLease =
    metrics.overlapsPastLease > 0 ? ` (${metrics.overlapsPastLease} after a holder's lease had run out)` : '';
  if (checks.kind === 'semaphore') {
    add(
      metrics.overlaps,
      `time more than ${checks.limit} holders were inside${pastLease}`,
      `times more than ${checks.limit} holders were inside${pastLease}`,
    );
  } else {
    add(metrics.overlaps, `overlapping hold${pastLease}`, `overlapping holds${pastLease}`);
  }
  add(metrics.writesOverReads, 'write while a reader was inside', 'writes while a reader was inside');
  add(metrics.lostUpdates, 'lost update', 'lost updates');
  if (capabilities.fencing === 'monotonic') {
    add(
      metrics.staleWrites,
      'stale-token write (rejected by a fencing resource)',
      'stale-token writes (rejected by a fencing resource)',
    );
    add(metrics.lostUpdatesWithFencing, 'update lost despite fencing', 'updates lost despite fencing');
    add(
      metrics.overlapsWithFencing,
      checks.kind === 'semaphore' ? 'time over the limit despite fencing' : 'overlap despite fencing',
      checks.kind === 'semaphore' ? 'times over the limit despite fencing' : 'overlaps despite fencing',
    );
    add(
      metrics.writesOverReadsWithFencing,
      'write over a reader despite fencing',
      'writes over readers despite fencing',
    );
    add(metrics.tokenRegressions, 'token regression', 'token regressions');
  }
  return parts.length > 0 ? parts.join(', ') : 'no violation';
}

/**
 * The backend's servers, a holder with its own pace, and more contenders (ready, not started): two
 * with the scenario's defaults, or one per entry of `others`. Resolves once the holder has its lock
 * and has just read the resource: it is between read and write.
 */
export async function holderMidWrite(
  context: ScenarioContext,
  holderPace: Partial<ContenderConfig>,
  others: readonly Partial<ContenderConfig>[] = [{}, {}],
): Promise<{ set: ServerSet; holder: Contender; others: Contender[] }> {
  const set = await context.startServers(serverKindOf(context.backend), context.backend.serverCount);
  context.step('holder acquires');
  const holder = await context.spawn(set.endpoints, holderPace);
  const rest = await Promise.all(others.map((overrides) => context.spawn(set.endpoints, overrides)));
  const firstRead = nextLine([holder], /^read /, 15_000, context.signal);
  holder.go();
  await firstRead;
  return { set, holder, others: rest };
}

/**
 * The process pause: freezes `holder` (SIGSTOP) between its read and its write, starts `others`, waits
 * until `takeover` says they have what the holder held (its ttl or session ran out meanwhile), then
 * resumes it (SIGCONT) — it writes as if it still held — and lets everyone run for the window.
 * Observes takeoverMs (when `takeover` came true), pausedMs and holdsByOthers.
 */
export async function pauseHolderUntil(
  context: ScenarioContext,
  holder: Contender,
  others: readonly Contender[],
  takeover: (timeoutMs: number) => Promise<unknown>,
): Promise<void> {
  holder.pause();
  const pausedAt = performance.now();
  context.step('holder frozen (SIGSTOP), waiting for a takeover');
  const taken = takeover(context.timing.takeoverTimeoutMs);
  for (const other of others) other.go();
  if (await taken) context.observe('takeoverMs', performance.now() - pausedAt);
  context.observe('pausedMs', performance.now() - pausedAt);
  holder.resume();
  context.step('holder resumed (SIGCONT)');
  await context.sleep(context.timing.windowMs);
  context.observe('holdsByOthers', countLines(others, /^acquired /));
}

/** "The holder was frozen … and another contender took over 1.2 s into the pause." for pause scenarios. */
export function frozenPhrase(
  capabilities: Capabilities,
  observations: Readonly<Record<string, number>>,
  takeover: string,
): string {
  return `The holder was frozen (SIGSTOP) after checking its lease and before writing; ${
    observations.takeoverMs === undefined
      ? `nothing took over within ${duration(observations.pausedMs)}, so ${expiryPhrase(capabilities)} outlived the pause`
      : `${expiryPhrase(capabilities)} ran out and ${takeover} ${duration(observations.takeoverMs)} into the pause`
  }.`;
}

/**
 * Right after the servers forgot the holder's lock: starts the others, notes how soon one of them got
 * the lock, lets them run, and counts how often the holder's lease signalled the loss.
 */
export async function letOthersIn(
  context: ScenarioContext,
  holder: Contender,
  others: Contender[],
): Promise<void> {
  const forgottenAt = performance.now();
  const second = maybeNextLine(others, /^acquired /, SECOND_HOLDER_TIMEOUT_MS, context.signal);
  for (const other of others) other.go();
  if (await second) context.observe('secondHolderAfterMs', performance.now() - forgottenAt);
  await context.sleep(context.timing.windowMs);
  context.observe('holderLostSignals', holder.count(/^lost /));
}

/**
 * What happened once the servers forgot a held lock (restart without persistence, failover): did a
 * second contender get in, did the holds overlap, and did fencing tokens still protect the resource?
 */
export function describeForgottenLock({
  capabilities,
  metrics,
  observations,
  findings,
}: ScenarioOutcome): string {
  if (observations.secondHolderAfterMs === undefined) {
    return `No second contender got the lock within a few seconds this time (${findings}), but nothing in the design prevents it.`;
  }
  const second = `A second contender acquired ${duration(observations.secondHolderAfterMs)} later`;
  if (metrics.overlaps === 0) {
    return `${second}, but the old holder's client had noticed its connection drop and aborted the lease's signal (${plural(observations.holderLostSignals ?? 0, 'lost signal')}), so it stopped before writing again (${findings}). A holder caught in the middle of a write would not have been so lucky.`;
  }
  const fencing =
    capabilities.fencing === 'none'
      ? 'There are no fencing tokens, so nothing stops the old holder’s writes.'
      : metrics.tokenRegressions > 0 || metrics.lostUpdatesWithFencing > 0
        ? 'Its fencing tokens went backwards too, so even a fencing resource is exposed.'
        : 'Its fencing tokens kept growing across the data loss, so a fencing resource turns the old holder away.';
  return `${second} while the first still held: ${findings}. ${fencing}`;
}

/** Distinct error lines from the contenders ("<name>: <code> <message>"), at most a handful. */
function contenderErrors(contenders: readonly Contender[]): string[] {
  const seen = new Map<string, string>();
  for (const contender of contenders) {
    for (const line of contender.lines) {
      const match = /^(error|unhandled) (.*)$/.exec(line);
      const message = match?.[2]?.replace(/\d+(\.\d+)?/g, 'N');
      if (match && message && !seen.has(message))
        seen.set(message, `${contender.name}: ${match[1]} ${match[2]}`);
    }
  }
  return [...seen.values()].slice(0, 5);
}

/** The server kind of a backend that runs on servers. */
export function serverKindOf(backend: LabBackend): ServerKind {
  if (backend.placement === 'in-process') throw new Error(`${backend.name} runs in-process`);
  return backend.placement;
}

/** How many lines matching `pattern` the contenders printed in total. */
export function countLines(contenders: readonly Contender[], pattern: RegExp): number {
  return contenders.reduce((sum, contender) => sum + contender.count(pattern), 0);
}

/** "its lease ttl" or "its session", for explanations. */
export function expiryPhrase(capabilities: Capabilities): string {
  return capabilities.expiry === 'session' ? 'its session' : 'its lease ttl';
}

/** "850 ms", "10.3 s", or "?" for an observation that was not made. */
export function duration(ms: number | undefined): string {
  return ms === undefined ? '?' : formatMs(ms);
}
