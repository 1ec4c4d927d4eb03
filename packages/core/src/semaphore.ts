import type {
  Capabilities,
  PermitAcquireOptions,
  PermitHolder,
  PermitLease,
  PermitRequest,
  PermitTryAcquireOptions,
  Semaphore,
  SemaphoreDriver,
  SemaphoreOptions,
} from './contract.js';
import type { LeaseEngine } from './engine.js';
import { InvalidArgumentError } from './errors.js';

/** The largest limit a semaphore accepts: enough for any pool, small enough for every backend's layout. */
export const MAX_SEMAPHORE_LIMIT = 100_000;

/** A whole number from `min` to `max` (the field, the value and the range in the error). */
export function validateCount(
  field: string,
  value: unknown,
  min: number,
  max: number,
): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(field, value, `a whole number from ${min} to ${max}`);
  }
}

/**
 * A counting semaphore over a backend's semaphore driver. Every permit lease comes out of the same
 * engine as a lock lease — waiting with push wake-ups, retries, timeouts, abort, the lost-signal,
 * release — so a permit behaves exactly like a lock (DistributedLock's "a semaphore of 1 is a mutex").
 */
export class DriverSemaphore<Handle, Ticket> implements Semaphore {
  readonly name: string;
  readonly limit: number;
  readonly #engine: LeaseEngine<PermitRequest, Handle, Ticket>;

  constructor(engine: LeaseEngine<PermitRequest, Handle, Ticket>, name: string, options: SemaphoreOptions) {
    engine.checkKey(name, 'name');
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', options, 'an object with limit');
    }
    validateCount('limit', options.limit, 1, MAX_SEMAPHORE_LIMIT);
    this.#engine = engine;
    this.name = name;
    this.limit = options.limit;
  }

  get capabilities(): Capabilities {
    return this.#engine.driver.capabilities;
  }

  acquire(options: PermitAcquireOptions = {}): Promise<PermitLease> {
    return this.#acquire(options, 'wait') as Promise<PermitLease>;
  }

  tryAcquire(options: PermitTryAcquireOptions = {}): Promise<PermitLease | null> {
    return this.#acquire(options, 'try');
  }

  async holders(): Promise<PermitHolder[]> {
    this.#engine.checkOpen();
    return (this.#engine.driver as SemaphoreDriver<Handle, Ticket>).holders(this.name);
  }

  async #acquire(options: PermitAcquireOptions, mode: 'wait' | 'try'): Promise<PermitLease | null> {
    const permits = (options as { permits?: unknown } | null)?.permits ?? 1;
    validateCount('permits', permits, 1, this.limit);
    const lease = await this.#engine.acquire(this.name, options, mode, { limit: this.limit, permits });
    return lease as PermitLease | null;
  }
}
