/**
 * The live progress display on stderr (stdout stays clean for --json): one line rewritten in place on a
 * terminal, plain lines otherwise (CI logs, pipes). It shows the stage, the backend and how far along.
 */
export class Progress {
  readonly #stream: NodeJS.WriteStream;
  readonly #live: boolean;
  readonly #startedAt = performance.now();
  #stage = '';
  #stageIndex = 0;
  #stageCount = 0;
  #lastPlainLine = '';
  #liveLineShown = false;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream;
    this.#live = stream.isTTY === true && process.env.CI === undefined;
  }

  /** Starts stage `index` of `count` (1-based), e.g. "benchmarks". */
  stage(name: string, index: number, count: number): void {
    this.#stage = name;
    this.#stageIndex = index;
    this.#stageCount = count;
    this.#render('', undefined);
  }

  /** What is happening now inside the stage; `fraction` (0..1) of the stage is done. */
  step(subject: string, detail: string, fraction?: number): void {
    this.#render(`${subject} · ${detail}`, fraction);
  }

  /** A line that stays (a finding, a note), printed above the live line. */
  note(line: string): void {
    this.#clearLive();
    this.#stream.write(`${line}\n`);
  }

  /** Removes the live line before the final summary. */
  done(): void {
    this.#clearLive();
  }

  #render(detail: string, fraction: number | undefined): void {
    const elapsed = Math.round((performance.now() - this.#startedAt) / 1000);
    const percent = fraction === undefined ? '' : ` ${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
    const head = `[${this.#stageIndex}/${this.#stageCount} ${this.#stage}${percent}]`;
    const line = detail ? `${head} ${detail}` : head;
    if (this.#live) {
      const width = this.#stream.columns ?? 100;
      const shown = `${line} (${elapsed}s)`;
      this.#stream.write(`\r\x1b[2K${shown.length > width - 1 ? `${shown.slice(0, width - 2)}…` : shown}`);
      this.#liveLineShown = true;
      return;
    }
    if (line === this.#lastPlainLine) return;
    this.#lastPlainLine = line;
    this.#stream.write(`${line} +${elapsed}s\n`);
  }

  #clearLive(): void {
    if (this.#live && this.#liveLineShown) {
      this.#stream.write('\r\x1b[2K');
      this.#liveLineShown = false;
    }
  }
}
