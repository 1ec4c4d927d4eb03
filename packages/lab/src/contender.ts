/**
 * A contender in its own process — for a lock, a semaphore's permit, or one side of a read-write
 * lock — so fault scenarios can SIGKILL or SIGSTOP it like a real service. Started by the lab (testkit startNodeProcess) with one JSON argument (ContenderConfig).
 *
 * stdout, one event per line: ready | waiting | acquired <token> | read <token> | wrote <token> |
 * lost <token> | released <token> | error <code> <message> | unhandled <message> | stall <ms> | done
 * stdin commands: go (start contending) | stop (finish the current hold, close, exit)
 */
import { createInterface } from 'node:readline';
import type { BackendDescriptor, Lease, LockProvider } from '@dlock/core';
import type { ResourceRequest } from './resource.js';

/**
 * What a contender takes on `key`: the lock, a permit of a semaphore of `limit` (every contender of a
 * scenario asks with the same limit), or a read-write lock's read or write side. A reader only reads
 * the resource; everyone else reads and writes.
 */
export type ContenderPrimitive =
  | { readonly kind: 'lock' }
  | { readonly kind: 'semaphore'; readonly limit: number }
  | { readonly kind: 'read-write'; readonly mode: 'read' | 'write' };

export interface ContenderConfig {
  /** Module exporting `dlockBackend` (a package name or a file URL). */
  readonly module: string;
  readonly endpoints: readonly string[];
  readonly key: string;
  readonly ttlMs: number;
  readonly resourceUrl: string;
  readonly name: string;
  readonly writesPerHold: number;
  /** Time between reading and writing the resource: the window a process pause lands in. */
  readonly workMs: number;
  readonly maxHolds: number;
  /** Added to this process's wall clock (Date.now), to model a client whose clock is off. */
  readonly clockSkewMs: number;
  readonly connectTimeoutMs: number;
  /** Session-based backends: how long a silent (crashed, paused) contender keeps its locks. */
  readonly sessionTimeoutMs: number;
  readonly primitive: ContenderPrimitive;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const describeError = (error: unknown) =>
  `${(error as { code?: string })?.code ?? 'ERROR'} ${error instanceof Error ? error.message : String(error)}`
    .replace(/\s+/g, ' ')
    .slice(0, 300);

async function tell(
  config: ContenderConfig,
  request: ResourceRequest,
): Promise<{ version: number; fencedVersion: number }> {
  const response = await fetch(`${config.resourceUrl}/event`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
  });
  if (!response.ok) throw new Error(`resource answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as { version: number; fencedVersion: number };
}

/** The machine's clock (not Date.now, which may be skewed on purpose): orders grants across contenders. */
const machineNow = () => performance.timeOrigin + performance.now();

async function holdAndWrite(
  config: ContenderConfig,
  lease: Lease,
  hold: string,
  requestedAt: number,
): Promise<void> {
  const token = lease.token.toString();
  const { primitive } = config;
  const mode = primitive.kind === 'read-write' ? primitive.mode : undefined;
  await tell(config, { type: 'begin', hold, token, acquiredAt: machineNow(), requestedAt, mode });
  for (let write = 0; write < config.writesPerHold; write++) {
    if (lease.signal.aborted) {
      say(`lost ${token}`);
      return;
    }
    const seen = await tell(config, { type: 'read', hold, token });
    say(`read ${token}`);
    // Deliberately no second look at lease.signal after this pause: a process paused here (GC, SIGSTOP)
    // wakes up and writes, believing it still holds the lock. That is the case fencing exists for.
    await sleep(config.workMs);
    if (mode === 'read') continue;
    await tell(config, {
      type: 'write',
      hold,
      token,
      basedOn: seen.version,
      basedOnFenced: seen.fencedVersion,
    });
    say(`wrote ${token}`);
  }
  if (!lease.signal.aborted) await tell(config, { type: 'end', hold, token });
}

function take(config: ContenderConfig, provider: LockProvider, signal: AbortSignal): Promise<Lease> {
  const options = { ttlMs: config.ttlMs, signal };
  const { primitive } = config;
  switch (primitive.kind) {
    case 'lock':
      return provider.acquire(config.key, options);
    case 'semaphore':
      return provider.semaphore(config.key, { limit: primitive.limit }).acquire(options);
    case 'read-write':
      return provider.readWriteLock(config.key)[primitive.mode].acquire(options);
  }
}

async function contend(
  config: ContenderConfig,
  provider: LockProvider,
  stopping: AbortSignal,
): Promise<void> {
  for (let holds = 0; holds < config.maxHolds && !stopping.aborted; ) {
    say('waiting');
    let lease: Lease;
    const requestedAt = machineNow();
    try {
      lease = await take(config, provider, stopping);
    } catch (error) {
      if (stopping.aborted) return;
      say(`error ${describeError(error)}`);
      await sleep(100);
      continue;
    }
    holds++;
    say(`acquired ${lease.token}`);
    try {
      await holdAndWrite(config, lease, `${config.name}#${holds}`, requestedAt);
    } catch (error) {
      say(`error ${describeError(error)}`);
    }
    await lease.release().catch((error: unknown) => say(`error ${describeError(error)}`));
    say(`released ${lease.token}`);
  }
}

/** How often the stall watch looks at the clock, and the smallest stall it reports (ms). */
const STALL_CHECK_MS = 50;
const STALL_REPORT_MS = 100;

/**
 * A machine too busy to schedule this process stalls it exactly like a GC pause or a SIGSTOP would,
 * and a stalled holder can outlive its lease. Reporting every stall lets a scenario tell such a run
 * apart from a backend that broke its promise.
 */
function watchForStalls(): void {
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const late = now - last - STALL_CHECK_MS;
    if (late >= STALL_REPORT_MS) say(`stall ${Math.round(late)}`);
    last = now;
  }, STALL_CHECK_MS).unref();
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as ContenderConfig;
  if (config.clockSkewMs !== 0) {
    const trueNow = Date.now.bind(Date);
    Date.now = () => trueNow() + config.clockSkewMs;
  }
  process.on('unhandledRejection', (reason) => say(`unhandled ${describeError(reason)}`));
  const { dlockBackend } = (await import(config.module)) as { dlockBackend: BackendDescriptor };
  const provider = await dlockBackend.createProvider(config.endpoints, {
    identity: config.name,
    connectTimeoutMs: config.connectTimeoutMs,
    sessionTimeoutMs: config.sessionTimeoutMs,
  });
  const stop = new AbortController();
  let started: (() => void) | undefined;
  const go = new Promise<void>((resolve) => {
    started = resolve;
  });
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    if (line.trim() === 'go') started?.();
    if (line.trim() === 'stop') {
      stop.abort(new Error('stopped by the lab'));
      started?.();
    }
  });
  // The lab went away without telling us: stop rather than contend forever.
  commands.on('close', () => {
    stop.abort(new Error('stdin closed'));
    started?.();
  });
  watchForStalls();
  // The first request of a process loads its HTTP client; paying for that now keeps it out of a hold.
  await fetch(`${config.resourceUrl}/ready`);
  say('ready');
  await go;
  await contend(config, provider, stop.signal);
  await provider.close().catch((error: unknown) => say(`error ${describeError(error)}`));
  say('done');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    say(`error ${describeError(error)}`);
    process.exit(1);
  },
);
