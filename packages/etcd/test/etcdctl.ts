import { type ChildProcess, spawn } from 'node:child_process';

/** `etcdctl` (v3 API) as a child process: Go's concurrency package, as another team's tool would use it. */
export class Etcdctl {
  readonly lines: string[] = [];
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #onLine: (() => void) | undefined;

  constructor(endpoint: string, args: string[]) {
    this.#child = spawn('etcdctl', [`--endpoints=${endpoint}`, ...args], {
      env: { ...process.env, ETCDCTL_API: '3' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let pending = '';
    this.#child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (pending + chunk).split('\n');
      pending = parts.pop() ?? '';
      this.lines.push(...parts);
      this.#onLine?.();
    });
    this.#child.stderr?.resume();
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    running.add(this);
  }

  /** Resolves with the first line (from `from` on) matching `pattern`; rejects after `timeoutMs`. */
  async waitForLine(pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const line = this.lines.slice(from).find((candidate) => pattern.test(candidate));
      if (line !== undefined) return line;
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        throw new Error(`etcdctl printed no line matching ${pattern}: ${JSON.stringify(this.lines)}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#onLine = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#onLine = undefined;
    }
  }

  /** SIGTERM: etcdctl unlocks (or resigns) and revokes its session before exiting. */
  async stop(): Promise<void> {
    this.#child.kill('SIGTERM');
    await this.#exited;
    running.delete(this);
  }

  get exited(): Promise<void> {
    return this.#exited;
  }

  static async stopAll(): Promise<void> {
    await Promise.all([...running].map((child) => child.stop()));
  }
}

const running = new Set<Etcdctl>();
