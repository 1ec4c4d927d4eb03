import type {
  AcquireOptions,
  Capabilities,
  HolderInfo,
  KeyInspection,
  Lease,
  LockDriver,
  LockProvider,
  LockRequest,
  ReadWriteDriver,
  ReadWriteLock,
  Semaphore,
  SemaphoreDriver,
  SemaphoreOptions,
  TryAcquireOptions,
} from './contract.js';
import { LeaseEngine, ProviderState } from './engine.js';
import { InvalidArgumentError, LockLostError, ProviderClosedError, UnsupportedError } from './errors.js';
import { DriverReadWriteLock } from './read-write.js';
import { type RetryPolicyOptions, resolveRetryPolicy } from './retry.js';
import { DriverSemaphore } from './semaphore.js';
import { defaultIdentity, pause } from './timing.js';
import { validateDuration, validateIdentity } from './validation.js';

export interface ProviderOptions {
  /** A provider over the backend's native election layout, exposed as `provider.election`. */
  election?: LockProvider;
  /** Lease lifetime when `acquire` is given no ttlMs. Default 30 000 ms. */
  defaultTtlMs?: number;
  /**
   * Longest a waiter sleeps between attempts when no push notification arrives (a lost message or a
   * silent expiry costs at most this much). Default 1 000 ms.
   */
  fallbackRecheckMs?: number;
  /** Identity used when `acquire` is given none. Default host:pid:random. */
  identity?: string;
  /**
   * How transient backend failures are retried (see RetryPolicy): fields given here override the
   * backend's defaults one by one.
   */
  retry?: RetryPolicyOptions;
  /**
   * How long after `waitMs` an attempt already in flight may still complete (ms). After that the
   * acquire rejects (LockTimeoutError, or BackendUnavailableError when the backend has not answered),
   * and a grant that still arrives is released. Default 500 ms.
   */
  settleGraceMs?: number;
}

/** What a backend package supplies besides its lock driver. */
export interface BackendParts {
  /** The backend's semaphore driver; without one, `provider.semaphore()` throws UnsupportedError. */
  semaphoreDriver?: SemaphoreDriver<unknown, unknown>;
  /** The backend's read-write lock driver; without one, `provider.readWriteLock()` throws UnsupportedError. */
  readWriteDriver?: ReadWriteDriver<unknown, unknown>;
  /** The backend's retry defaults, fitted to its timeouts; `options.retry` overrides them. */
  retryDefaults?: RetryPolicyOptions;
  /** Why the primitives above are missing, for UnsupportedError (e.g. "use the provider itself"). */
  unsupportedHint?: string;
}

/**
 * Turns a backend's drivers into a LockProvider. This is the only place that waits, retries, times
 * out, handles abort, tracks leases and cleans up unknown outcomes, so every backend and every
 * primitive behaves the same way at the edges. Throws InvalidArgumentError for bad options.
 */
export function createLockProvider<Handle, Ticket>(
  driver: LockDriver<Handle, Ticket>,
  options: ProviderOptions = {},
  parts: BackendParts = {},
): LockProvider {
  return new DriverLockProvider(driver, options, parts);
}

const settleGraceDefaultMs = 500;

class DriverLockProvider<Handle, Ticket> implements LockProvider {
  readonly #driver: LockDriver<Handle, Ticket>;
  readonly #state: ProviderState;
  readonly #locks: LeaseEngine<LockRequest, Handle, Ticket>;
  readonly #parts: BackendParts;
  readonly election: LockProvider | undefined;
  readonly watchHolder: ((key: string, signal: AbortSignal) => AsyncIterable<HolderInfo | null>) | undefined;
  readonly inspect: ((key: string) => Promise<KeyInspection>) | undefined;
  readonly heldKeys: ((prefix: string) => Promise<string[]>) | undefined;

  constructor(driver: LockDriver<Handle, Ticket>, options: ProviderOptions, parts: BackendParts) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', options, 'an object');
    }
    const defaultTtlMs = options.defaultTtlMs ?? 30_000;
    validateDuration('defaultTtlMs', defaultTtlMs, driver.limits.minTtlMs);
    const fallbackRecheckMs = options.fallbackRecheckMs ?? 1_000;
    validateDuration('fallbackRecheckMs', fallbackRecheckMs, 1);
    const settleGraceMs = options.settleGraceMs ?? settleGraceDefaultMs;
    validateDuration('settleGraceMs', settleGraceMs, 0);
    validateIdentity(options.identity);
    this.#driver = driver;
    this.#parts = parts;
    this.#state = new ProviderState({
      policy: resolveRetryPolicy(parts.retryDefaults, options.retry),
      defaultTtlMs,
      fallbackRecheckMs,
      settleGraceMs,
      identity: options.identity ?? defaultIdentity(),
    });
    this.#locks = new LeaseEngine(driver, 'lock', this.#state);
    this.election = options.election;
    const watch = driver.watchHolder?.bind(driver);
    this.watchHolder = watch
      ? (key, signal) => {
          this.#locks.checkKey(key);
          return watch(key, signal);
        }
      : undefined;
    const inspect = driver.inspect?.bind(driver);
    this.inspect = inspect ? (key) => this.#read(key, () => inspect(key)) : undefined;
    const heldKeys = driver.heldKeys?.bind(driver);
    this.heldKeys = heldKeys
      ? async (prefix) => {
          if (typeof prefix !== 'string') throw new InvalidArgumentError('prefix', prefix, 'a string');
          this.#locks.checkOpen();
          const keys = await heldKeys(prefix);
          this.#state.reached = true;
          return keys;
        }
      : undefined;
  }

  get backend(): string {
    return this.#driver.backend;
  }

  get capabilities(): Capabilities {
    return this.#driver.capabilities;
  }

  acquire(key: string, options: AcquireOptions = {}): Promise<Lease> {
    return this.#acquire(key, options, 'wait') as Promise<Lease>;
  }

  tryAcquire(key: string, options: TryAcquireOptions = {}): Promise<Lease | null> {
    return this.#acquire(key, options, 'try');
  }

  holder(key: string): Promise<HolderInfo | null> {
    return this.#read(key, () => this.#driver.holder(key));
  }

  semaphore(name: string, options: SemaphoreOptions): Semaphore {
    const driver = this.#parts.semaphoreDriver;
    if (!driver) throw this.#unsupported('semaphores');
    return new DriverSemaphore(new LeaseEngine(driver, 'permit', this.#state), name, options);
  }

  readWriteLock(name: string): ReadWriteLock {
    const driver = this.#parts.readWriteDriver;
    if (!driver) throw this.#unsupported('read-write locks');
    return new DriverReadWriteLock(
      new LeaseEngine(driver, 'read', this.#state),
      new LeaseEngine(driver, 'write', this.#state),
      name,
    );
  }

  close(): Promise<void> {
    this.#state.closed ??= this.#closeOnce();
    return this.#state.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** A read of one key: checked like an acquire's key, on an open provider; no retries (one answer). */
  async #read<T>(key: string, read: () => Promise<T>): Promise<T> {
    this.#locks.checkKey(key);
    this.#locks.checkOpen();
    const result = await read();
    this.#state.reached = true;
    return result;
  }

  #acquire(key: string, options: AcquireOptions, mode: 'wait' | 'try'): Promise<Lease | null> {
    return this.#locks.acquire(key, options, mode, {}, true);
  }

  #unsupported(what: string): UnsupportedError {
    return new UnsupportedError(
      this.backend,
      what,
      this.#parts.unsupportedHint ?? 'this backend package does not implement them',
    );
  }

  /**
   * Pending acquires reject first (their places in line are withdrawn); then held leases are released
   * (retried within the policy's closeMs) and background clean-ups get the rest of closeMs; then the
   * drivers close their connections.
   */
  async #closeOnce(): Promise<void> {
    const state = this.#state;
    state.closing.abort(new ProviderClosedError(this.backend));
    const closeBy = new AbortController();
    const outOfTime = pause(state.policy.closeMs, closeBy.signal);
    await this.election?.close();
    // Rejected acquires withdraw their places in line (and queue clean-ups) before they settle.
    await Promise.race([state.whenIdle(), outOfTime]);
    const leases = [...state.leases];
    for (const lease of leases) lease.markLost(new LockLostError(lease.key, 'its provider was closed'));
    const releases = Promise.allSettled(leases.map((lease) => lease.release()));
    await Promise.race([Promise.all([releases, Promise.allSettled([...state.cleanups])]), outOfTime]);
    closeBy.abort();
    state.cleanupsStopped.abort(new ProviderClosedError(this.backend));
    const drivers = new Set<{ close(): Promise<void> }>([
      ...(this.#parts.semaphoreDriver ? [this.#parts.semaphoreDriver] : []),
      ...(this.#parts.readWriteDriver ? [this.#parts.readWriteDriver] : []),
    ]);
    await Promise.allSettled([...drivers].map((driver) => driver.close()));
    await this.#driver.close();
  }
}
