import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/** Monotonic milliseconds; wall-clock jumps must not shorten or stretch a lease. */
export const now = (): number => performance.now();

/** The default identity: which host and process holds a lock, plus randomness to tell providers apart. */
export function defaultIdentity(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Resolves after `ms`, or early when `signal` aborts (resolving, not rejecting: callers re-check the
 * signal themselves, and a rejection nobody awaits would be an unhandled one). With `unref`, the
 * pause alone does not keep the process alive.
 */
export function pause(ms: number, signal?: AbortSignal, unref = false): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    if (unref) timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Settles with `work`, or rejects with the signal's reason as soon as `signal` aborts. When the
 * signal wins, a later result of `work` is handed to `onLateResult` (e.g. to release a grant that
 * arrived after the caller gave up) and a later failure is swallowed: nothing escapes unhandled.
 */
export function raceAbort<T>(
  work: Promise<T>,
  signal: AbortSignal,
  onLateResult?: (value: T) => void,
): Promise<T> {
  if (signal.aborted) {
    work.then((value) => onLateResult?.(value), ignore);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      settled = true;
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (settled) onLateResult?.(value);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!settled) reject(error);
      },
    );
  });
}

export function ignore(): void {}

/** Something with a deadline in `SharedDeadlines`: `deadlinePassed()` runs once `dueAt` has passed. */
export interface Deadline {
  /**
   * When, in `now()` milliseconds (core's monotonic clock). It may move while registered: a later
   * deadline needs nothing (the timer fires, finds the item not yet due and re-arms for it); an earlier
   * one must be passed to `SharedDeadlines.schedule()` again.
   */
  readonly dueAt: number;
  deadlinePassed(): void;
}

/**
 * One timer for the deadlines of a set of items (the waitMs + settleGraceMs deadlines of a provider's
 * pending acquires) instead of a timer per item. The items live in the owner's set; telling this
 * about an item's deadline re-arms the timer only when it is earlier than the one the timer waits for.
 * When the timer fires, every item due is told, and it re-arms for the earliest deadline left. An item
 * that leaves the set needs nothing: the timer finds nothing due and stops, and it keeps the process
 * alive only while the set is not empty.
 */
export class SharedDeadlines<Item extends Deadline> {
  readonly #items: ReadonlySet<Item>;
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Number.POSITIVE_INFINITY;
  #holding = false;

  /** `items`: the owner's set, scanned when the timer fires. */
  constructor(items: ReadonlySet<Item>) {
    this.#items = items;
  }

  /** `item`, in the set, has a deadline. */
  schedule(item: Item): void {
    if (item.dueAt < this.#armedFor) this.#arm(item.dueAt);
    else if (!this.#holding && this.#timer) {
      this.#timer.ref();
      this.#holding = true;
    }
  }

  /** An item left the set: once it is empty, the timer no longer keeps the process alive. */
  left(): void {
    if (this.#holding && this.#items.size === 0) {
      this.#timer?.unref();
      this.#holding = false;
    }
  }

  #arm(dueAt: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = dueAt;
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(dueAt - now())));
    this.#holding = true;
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    this.#holding = false;
    // Timers run on the event loop's millisecond clock and may fire a little before `now()` reaches
    // the deadline: count what is due within a millisecond.
    const current = now() + 1;
    const due: Item[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const item of this.#items) {
      if (item.dueAt <= current) due.push(item);
      else if (item.dueAt < next) next = item.dueAt;
    }
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    for (const item of due) item.deadlinePassed();
  };
}
