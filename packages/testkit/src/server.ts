import { spawn } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { recordServerPid, removeWorkDir } from './cleanup.js';
import { PortConflictError, ServerStartError } from './errors.js';
import { type ManagedProcess, SpawnedProcess } from './process.js';
import { sleep } from './wait.js';

export const LOOPBACK = '127.0.0.1';
const LOG_FILE = 'server.log';
const DEFAULT_LOG_TAIL_LINES = 40;
const LOG_TAIL_BYTES = 64 * 1024;
const PORT_CONFLICT_ATTEMPTS = 3;

export interface ServerHandle extends ManagedProcess {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server if it still runs, starts it again on the same port and data dir, waits until healthy. */
  restart(): Promise<void>;
  logTail(lines?: number): string;
}

/**
 * `ready`: the process we spawned answers. `starting`: nobody answers yet, or the server is not serving
 * yet. `impostor`: another process answers on our port.
 */
export type ProbeResult = 'ready' | 'starting' | 'impostor';

export interface ServerLaunch {
  readonly kind: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly startTimeoutMs: number;
  readonly probeIntervalMs: number;
  /** Must settle within a fraction of `startTimeoutMs`, even against a paused server. */
  probe(pid: number): Promise<ProbeResult>;
}

export interface ServerLocation {
  readonly port: number;
  readonly workDir: string;
  readonly dataDir: string;
}

/** One server process in its own work directory; restartable on the same port and data. */
export class LocalServer implements ServerHandle {
  readonly host = LOOPBACK;
  readonly port: number;
  readonly dataDir: string;
  readonly workDir: string;
  #process: SpawnedProcess | undefined;

  constructor(
    location: ServerLocation,
    private readonly launch: ServerLaunch,
  ) {
    this.port = location.port;
    this.dataDir = location.dataDir;
    this.workDir = location.workDir;
  }

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  get logPath(): string {
    return join(this.workDir, LOG_FILE);
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.#describe()} is already running`);
    const log = openSync(this.logPath, 'a');
    const logOffset = fstatSync(log).size;
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(this.launch.command, [...this.launch.args], {
        cwd: this.workDir,
        stdio: ['ignore', log, log],
      });
    } finally {
      closeSync(log);
    }
    child.unref();
    const spawned = new SpawnedProcess(child, 'kill');
    this.#process = spawned;
    if (spawned.pid !== undefined) recordServerPid(this.workDir, spawned.pid);
    await this.#waitUntilHealthy(spawned, logOffset);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  kill(): Promise<void> {
    return this.#process?.kill() ?? Promise.resolve();
  }

  pause(): void {
    this.#process?.pause();
  }

  resume(): void {
    this.#process?.resume();
  }

  stop(): Promise<void> {
    return this.#process?.stop() ?? Promise.resolve();
  }

  logTail(lines = DEFAULT_LOG_TAIL_LINES): string {
    return readLogTail(this.logPath, lines, 0);
  }

  /**
   * Kills the server and removes its work directory, for servers whose data is of no further use: a
   * graceful stop would only spend time on persistence and leadership hand-over nobody will see.
   */
  async discard(): Promise<void> {
    await this.kill();
    await removeWorkDir(this.workDir);
  }

  async #waitUntilHealthy(spawned: SpawnedProcess, logOffset: number): Promise<void> {
    const deadline = Date.now() + this.launch.startTimeoutMs;
    while (Date.now() < deadline) {
      if (!spawned.running) {
        const code = await spawned.exited;
        throw this.#startError(`exited with code ${code} while starting`, logOffset);
      }
      const result = await this.launch.probe(spawned.pid ?? -1).catch((): ProbeResult => 'starting');
      if (result === 'ready' && spawned.running) return;
      if (result === 'impostor') {
        await spawned.kill();
        throw new PortConflictError(
          `another process answers on ${this.host}:${this.port}; ${this.#describe()} lost the port`,
        );
      }
      await sleep(this.launch.probeIntervalMs);
    }
    await spawned.kill();
    throw this.#startError(`not healthy within ${this.launch.startTimeoutMs} ms`, logOffset);
  }

  #startError(reason: string, logOffset: number): ServerStartError {
    const logSinceStart = readLogTail(this.logPath, DEFAULT_LOG_TAIL_LINES, logOffset);
    const message = `${this.#describe()} ${reason}; last lines of ${this.logPath}:\n${logSinceStart}`;
    return /address already in use|EADDRINUSE/i.test(logSinceStart)
      ? new PortConflictError(message)
      : new ServerStartError(message);
  }

  #describe(): string {
    return `${this.launch.kind} on ${this.host}:${this.port}`;
  }
}

function readLogTail(path: string, lines: number, fromOffset: number): string {
  let file: number;
  try {
    file = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(file).size;
    const start = Math.max(fromOffset, size - LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    readSync(file, buffer, 0, buffer.length, start);
    return buffer.toString('utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } finally {
    closeSync(file);
  }
}

/**
 * Runs `attempt` again on fresh ports when another process grabbed a port between `freePort()` and the
 * server's bind. Each attempt cleans up after itself before throwing.
 */
export async function retryOnPortConflict<T>(attempt: () => Promise<T>): Promise<T> {
  for (let attemptNumber = 1; ; attemptNumber++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof PortConflictError) || attemptNumber >= PORT_CONFLICT_ATTEMPTS) throw error;
    }
  }
}

/** Starts every server; if any fails, discards them all and rethrows the first failure. */
export async function startAllOrDiscard(servers: LocalServer[]): Promise<void> {
  let failed = false;
  const results = await Promise.allSettled(
    servers.map((server) =>
      server.start().catch(async (error: unknown) => {
        // Peers waiting for a quorum that can no longer form would otherwise wait out their timeout.
        if (!failed) {
          failed = true;
          await Promise.allSettled(servers.map((peer) => peer.kill()));
        }
        throw error;
      }),
    ),
  );
  const failure = results.find((result) => result.status === 'rejected');
  if (failure === undefined) return;
  await Promise.allSettled(servers.map((server) => server.discard()));
  const conflict = results.find(
    (result) => result.status === 'rejected' && result.reason instanceof PortConflictError,
  );
  throw ((conflict ?? failure) as PromiseRejectedResult).reason;
}
