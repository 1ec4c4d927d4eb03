import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { type ManagedProcess, SpawnedProcess } from './process.js';
import { settleWithin } from './wait.js';

/** A Node script (e.g. a lock contender) in its own process, which tests can SIGKILL or SIGSTOP. */
export interface NodeProcess extends ManagedProcess {
  /** Stdout lines so far. */
  readonly output: string[];
  /**
   * Resolves with the next stdout line matching `pattern` after the line matched by the previous
   * `waitForLine` (so waiting twice for /acquired/ needs two such lines). Rejects on timeout or when the
   * process exits first; a rejection nobody awaits is not reported as unhandled.
   */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Writes a line to the script's stdin. */
  send(line: string): void;
  /** The exit code, or null when a signal ended the process. Never rejects. */
  readonly exited: Promise<number | null>;
}

export interface NodeProcessOptions {
  /** Added to (and overriding) this process's environment. */
  env?: Record<string, string>;
  execArgv?: string[];
}

const DEFAULT_WAIT_FOR_LINE_MS = 10_000;
const STDERR_LINES_KEPT = 50;
/** A grandchild that inherited stdout can hold it open after the script exits; don't wait on it forever. */
const OUTPUT_DRAIN_AFTER_EXIT_MS = 1_000;

interface LineWaiter {
  readonly pattern: RegExp;
  resolve(line: string): void;
  reject(error: Error): void;
}

/** Splits a stream into lines, calling `onLine` for each and for a final unterminated one. */
export function forEachLine(stream: Readable, onLine: (line: string) => void, onEnd: () => void): void {
  let pending = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) onLine(line.replace(/\r$/, ''));
  });
  stream.on('error', () => {
    // The process is gone; 'close' below still ends the stream.
  });
  stream.on('close', () => {
    if (pending !== '') onLine(pending);
    pending = '';
    onEnd();
  });
}

class NodeScriptProcess implements NodeProcess {
  readonly output: string[] = [];
  readonly exited: Promise<number | null>;
  readonly #spawned: SpawnedProcess;
  readonly #stdin: Writable;
  readonly #resolveOutputEnded: () => void;
  readonly #stderrTail: string[] = [];
  readonly #waiters = new Set<LineWaiter>();
  #nextUnmatchedLine = 0;
  #outputEnded = false;

  constructor(
    private readonly scriptPath: string,
    args: string[],
    options: NodeProcessOptions,
  ) {
    const child = spawn(process.execPath, [...(options.execArgv ?? []), scriptPath, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    });
    this.#spawned = new SpawnedProcess(child, 'stop');
    let resolveOutputEnded = () => {};
    const outputEnded = new Promise<void>((resolve) => {
      resolveOutputEnded = resolve;
    });
    this.#resolveOutputEnded = resolveOutputEnded;
    // Resolve only once stdout is drained, so `output` is complete when `exited` settles.
    this.exited = this.#spawned.exited.then(async (code) => {
      await settleWithin(outputEnded, OUTPUT_DRAIN_AFTER_EXIT_MS, undefined);
      return code;
    });
    child.stdin.on('error', () => {
      // EPIPE after the script exited: a line sent to a dead contender is simply lost.
    });
    this.#stdin = child.stdin;
    forEachLine(
      child.stdout,
      (line) => this.#onLine(line),
      () => this.#onOutputEnd(),
    );
    forEachLine(
      child.stderr,
      (line) => {
        this.#stderrTail.push(line);
        if (this.#stderrTail.length > STDERR_LINES_KEPT) this.#stderrTail.shift();
      },
      () => {},
    );
  }

  get pid(): number | undefined {
    return this.#spawned.pid;
  }

  get running(): boolean {
    return this.#spawned.running;
  }

  kill(): Promise<void> {
    return this.#spawned.kill();
  }

  pause(): void {
    this.#spawned.pause();
  }

  resume(): void {
    this.#spawned.resume();
  }

  stop(): Promise<void> {
    return this.#spawned.stop();
  }

  send(line: string): void {
    if (!this.#stdin.destroyed) this.#stdin.write(`${line}\n`);
  }

  waitForLine(pattern: RegExp, timeoutMs = DEFAULT_WAIT_FOR_LINE_MS): Promise<string> {
    const line = this.#nextLine(pattern, timeoutMs);
    // The rejection comes from the process exiting, in the background: a test that kills the script
    // before awaiting (or never awaits) must not get an unhandled rejection. Awaiting still rejects.
    line.catch(() => {});
    return line;
  }

  #nextLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    const earlier = this.#takeMatch(pattern, this.#nextUnmatchedLine);
    if (earlier !== undefined) return Promise.resolve(earlier);
    if (this.#outputEnded) return Promise.reject(this.#endedError(pattern));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new Error(
            `${this.#describe()} printed no line matching ${pattern} within ${timeoutMs} ms${this.#recentOutput()}`,
          ),
        );
      }, timeoutMs);
      const waiter: LineWaiter = {
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  #takeMatch(pattern: RegExp, from: number): string | undefined {
    for (let i = from; i < this.output.length; i++) {
      const line = this.output[i] as string;
      pattern.lastIndex = 0;
      if (pattern.test(line)) {
        this.#nextUnmatchedLine = i + 1;
        return line;
      }
    }
    return undefined;
  }

  #onLine(line: string): void {
    this.output.push(line);
    for (const waiter of this.#waiters) {
      waiter.pattern.lastIndex = 0;
      if (!waiter.pattern.test(line)) continue;
      this.#waiters.delete(waiter);
      this.#nextUnmatchedLine = this.output.length;
      waiter.resolve(line);
    }
  }

  #onOutputEnd(): void {
    this.#outputEnded = true;
    this.#resolveOutputEnded();
    for (const waiter of this.#waiters) waiter.reject(this.#endedError(waiter.pattern));
    this.#waiters.clear();
  }

  #endedError(pattern: RegExp): Error {
    return new Error(
      `${this.#describe()} exited before printing a line matching ${pattern}${this.#recentOutput()}`,
    );
  }

  #recentOutput(): string {
    const stdout = this.output.slice(-10).join('\n');
    const stderr = this.#stderrTail.slice(-20).join('\n');
    return `\n--- last stdout lines ---\n${stdout}\n--- last stderr lines ---\n${stderr}`;
  }

  #describe(): string {
    return `node ${this.scriptPath} (pid ${this.pid})`;
  }
}

/** Runs a Node script in a separate process, stopped by `stopAll()` and when this process exits. */
export function startNodeProcess(
  scriptPath: string,
  args: string[] = [],
  options: NodeProcessOptions = {},
): NodeProcess {
  return new NodeScriptProcess(resolve(scriptPath), args, options);
}
