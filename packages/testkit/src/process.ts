import type { ChildProcess } from 'node:child_process';
import { type OwnedProcess, trackProcess, untrackProcess } from './cleanup.js';
import { settleWithin } from './wait.js';

/** A process we started and can fault-inject. */
export interface ManagedProcess {
  readonly pid: number | undefined;
  readonly running: boolean;
  /** SIGKILL; resolves when the process has exited. */
  kill(): Promise<void>;
  /** SIGSTOP: the process keeps its sockets open but stops answering. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** SIGTERM, then SIGKILL after a grace period; resolves when the process has exited. */
  stop(): Promise<void>;
}

const STOP_GRACE_MS = 5_000;
/** The kernel reaps a SIGKILLed process almost at once; waiting longer means something is badly wrong. */
const EXIT_AFTER_SIGKILL_MS = 10_000;

/** A spawned child, tracked for cleanup from the moment it exists until it has exited. */
export class SpawnedProcess implements ManagedProcess, OwnedProcess {
  readonly exited: Promise<number | null>;
  #running: boolean;

  /**
   * `teardown` is how `stopAll()` ends the process: 'kill' for servers whose data is deleted right after
   * anyway (a graceful etcd stop can wait seconds on leadership transfer to members that are stopping
   * too), 'stop' for scripts that may want to clean up.
   */
  constructor(
    private readonly child: ChildProcess,
    private readonly teardown: 'kill' | 'stop',
  ) {
    this.#running = child.pid !== undefined;
    this.exited = new Promise((resolve) => {
      const onExit = (code: number | null) => {
        this.#running = false;
        untrackProcess(this);
        resolve(code);
      };
      child.once('exit', onExit);
      // A spawn that failed outright never emits 'exit'.
      child.on('error', () => {
        if (child.pid === undefined) onExit(null);
      });
    });
    if (this.#running) trackProcess(this);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.#running;
  }

  async kill(): Promise<void> {
    if (!this.#running) return;
    this.#signal('SIGKILL');
    await this.#waitForExitAfterKill();
  }

  pause(): void {
    if (this.#running) this.#signal('SIGSTOP');
  }

  resume(): void {
    if (this.#running) this.#signal('SIGCONT');
  }

  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.#running) return;
    this.#signal('SIGTERM');
    // A paused process only acts on SIGTERM once continued.
    this.#signal('SIGCONT');
    const exitedGracefully = await settleWithin(
      this.exited.then(() => true),
      graceMs,
      false,
    );
    if (exitedGracefully) return;
    this.#signal('SIGKILL');
    await this.#waitForExitAfterKill();
  }

  tearDown(): Promise<void> {
    return this.teardown === 'kill' ? this.kill() : this.stop();
  }

  killNow(): void {
    if (this.#running) this.#signal('SIGKILL');
  }

  #signal(signal: NodeJS.Signals): void {
    try {
      this.child.kill(signal);
    } catch {
      // The process exited between our check and the signal.
    }
  }

  async #waitForExitAfterKill(): Promise<void> {
    const exited = await settleWithin(
      this.exited.then(() => true),
      EXIT_AFTER_SIGKILL_MS,
      false,
    );
    if (!exited)
      throw new Error(`process ${this.pid} did not exit within ${EXIT_AFTER_SIGKILL_MS} ms of SIGKILL`);
  }
}
