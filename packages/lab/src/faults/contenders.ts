import { join } from 'node:path';
import { pause } from '@dlock/core';
import { type NodeProcess, startNodeProcess } from '@dlock/testkit';
import type { ContenderConfig } from '../contender.js';
import { labPackageDir } from '../paths.js';

/** The built contender script: child processes always run compiled code, also when the lab runs under vitest. */
const CONTENDER_SCRIPT = join(labPackageDir, 'dist', 'contender.js');
const POLL_MS = 5;
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

/** A contender process, read through its stdout lines (see src/contender.ts for the protocol). */
export class Contender {
  readonly #process: NodeProcess;
  readonly name: string;

  constructor(process: NodeProcess, name: string) {
    this.#process = process;
    this.name = name;
  }

  get running(): boolean {
    return this.#process.running;
  }

  get lines(): readonly string[] {
    return this.#process.output;
  }

  /** How many stdout lines match `pattern` (e.g. /^acquired /). */
  count(pattern: RegExp): number {
    return this.#process.output.filter((line) => pattern.test(line)).length;
  }

  go(): void {
    this.#process.send('go');
  }

  kill(): Promise<void> {
    return this.#process.kill();
  }

  pause(): void {
    this.#process.pause();
  }

  resume(): void {
    this.#process.resume();
  }

  /** Asks it to finish its hold and exit; SIGKILLs it if it does not within the grace period. */
  async finish(): Promise<void> {
    if (!this.#process.running) return;
    this.#process.resume();
    this.#process.send('stop');
    const exited = await Promise.race([
      this.#process.exited.then(() => true),
      pause(STOP_GRACE_MS).then(() => false),
    ]);
    if (!exited) await this.#process.kill();
  }
}

export async function spawnContender(config: ContenderConfig): Promise<Contender> {
  const child = startNodeProcess(CONTENDER_SCRIPT, [JSON.stringify(config)]);
  const contender = new Contender(child, config.name);
  try {
    await child.waitForLine(/^ready$/, READY_TIMEOUT_MS);
  } catch (error) {
    await child.kill();
    throw error;
  }
  return contender;
}

/** The contender event a pattern waits for ("acquired" for /^acquired /), for error messages. */
const eventName = (pattern: RegExp) => pattern.source.replace(/^\^|\$$/g, '').trim();

/**
 * Waits until `pattern` matches a line some contender prints *after* this call (lines already printed
 * do not count, unless `includeEarlier`), and returns that contender. Rejects after `timeoutMs` or
 * when `signal` aborts.
 */
export async function nextLine(
  contenders: readonly Contender[],
  pattern: RegExp,
  timeoutMs: number,
  signal?: AbortSignal,
  includeEarlier = false,
): Promise<Contender> {
  const seen = contenders.map((contender) => (includeEarlier ? 0 : contender.lines.length));
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    for (const [index, contender] of contenders.entries()) {
      const lines = contender.lines;
      for (let i = seen[index] as number; i < lines.length; i++) {
        if (pattern.test(lines[i] as string)) return contender;
      }
      seen[index] = lines.length;
    }
    signal?.throwIfAborted();
    if (performance.now() >= deadline) {
      throw new Error(`no contender reported "${eventName(pattern)}" within ${timeoutMs} ms`);
    }
    await pause(POLL_MS, signal);
  }
}

/** `nextLine`, or undefined on timeout (abort still rejects). */
export async function maybeNextLine(
  contenders: readonly Contender[],
  pattern: RegExp,
  timeoutMs: number,
  signal?: AbortSignal,
  includeEarlier = false,
): Promise<Contender | undefined> {
  try {
    return await nextLine(contenders, pattern, timeoutMs, signal, includeEarlier);
  } catch (error) {
    if (signal?.aborted) throw error;
    return undefined;
  }
}

/** How many of `contenders` hold a lease right now: their last `acquired` has no `released` after it. */
export function holdingNow(contenders: readonly Contender[]): number {
  return contenders.filter((contender) => {
    const lines = contender.lines;
    for (let i = lines.length - 1; i >= 0; i--) {
      if (lines[i]?.startsWith('acquired ')) return true;
      if (lines[i]?.startsWith('released ')) return false;
    }
    return false;
  }).length;
}

/**
 * Waits until at least `count` of `contenders` hold a lease at once (see holdingNow); false after
 * `timeoutMs` (abort still rejects).
 */
export async function untilHolding(
  contenders: readonly Contender[],
  count: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (holdingNow(contenders) < count) {
    signal?.throwIfAborted();
    if (performance.now() >= deadline) return false;
    await pause(POLL_MS, signal);
  }
  return true;
}
