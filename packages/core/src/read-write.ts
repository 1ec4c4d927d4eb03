import type {
  AcquireOptions,
  Capabilities,
  ReadWriteDriver,
  ReadWriteHolder,
  ReadWriteLease,
  ReadWriteLock,
  ReadWriteMode,
  ReadWriteRequest,
  ReadWriteSide,
  TryAcquireOptions,
} from './contract.js';
import type { LeaseEngine } from './engine.js';

/** One side of a read-write lock: the engine, asked for leases of one mode. */
class Side<Handle, Ticket> implements ReadWriteSide {
  readonly #engine: LeaseEngine<ReadWriteRequest, Handle, Ticket>;
  readonly #name: string;
  readonly #mode: ReadWriteMode;

  constructor(engine: LeaseEngine<ReadWriteRequest, Handle, Ticket>, name: string, mode: ReadWriteMode) {
    this.#engine = engine;
    this.#name = name;
    this.#mode = mode;
  }

  acquire(options: AcquireOptions = {}): Promise<ReadWriteLease> {
    return this.#engine.acquire(this.#name, options, 'wait', { mode: this.#mode }) as Promise<ReadWriteLease>;
  }

  tryAcquire(options: TryAcquireOptions = {}): Promise<ReadWriteLease | null> {
    return this.#engine.acquire(this.#name, options, 'try', {
      mode: this.#mode,
    }) as Promise<ReadWriteLease | null>;
  }
}

/**
 * A read-write lock over a backend's read-write driver: any number of read leases or one write lease.
 * Read and write leases are ordinary leases from the shared engine (waiting, retries, timeouts, abort,
 * renewal, the lost-signal, release). Reentrancy and downgrade (write → read) are not offered.
 */
export class DriverReadWriteLock<Handle, Ticket> implements ReadWriteLock {
  readonly name: string;
  readonly read: ReadWriteSide;
  readonly write: ReadWriteSide;
  readonly #engine: LeaseEngine<ReadWriteRequest, Handle, Ticket>;

  constructor(
    readEngine: LeaseEngine<ReadWriteRequest, Handle, Ticket>,
    writeEngine: LeaseEngine<ReadWriteRequest, Handle, Ticket>,
    name: string,
  ) {
    readEngine.checkKey(name, 'name');
    this.name = name;
    this.#engine = readEngine;
    this.read = new Side(readEngine, name, 'read');
    this.write = new Side(writeEngine, name, 'write');
  }

  get capabilities(): Capabilities {
    return this.#engine.driver.capabilities;
  }

  async holders(): Promise<ReadWriteHolder[]> {
    this.#engine.checkOpen();
    return (this.#engine.driver as ReadWriteDriver<Handle, Ticket>).holders(this.name);
  }
}
