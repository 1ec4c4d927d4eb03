import type {
  Attempt,
  Capabilities,
  Grant,
  HolderInfo,
  LeaseDriver,
  LockDriver,
  LockProvider,
  LockRequest,
  PermitHolder,
  PermitRequest,
  ReadWriteDriver,
  ReadWriteHolder,
  ReadWriteMode,
  ReadWriteRequest,
  SemaphoreDriver,
} from './contract.js';
import { LockLostError, SemaphoreLimitMismatchError } from './errors.js';
import { type ProviderOptions, createLockProvider } from './provider.js';
import { now } from './timing.js';

/** A contender's place in a queue. `changed` keeps a wake-up that arrives before anyone waits. */
export interface MemoryTicket {
  changed: boolean;
  wake: (() => void) | undefined;
}

/** One granted lease in the store: who, which token, until when, and (for permits) how many. */
interface Holding {
  readonly ticket: MemoryTicket;
  readonly identity: string;
  readonly token: bigint;
  readonly permits: number;
  readonly mode: ReadWriteMode | undefined;
  expiresAt: number;
  expiryTimer: NodeJS.Timeout;
}

interface Waiter {
  readonly ticket: MemoryTicket;
  readonly permits: number;
  readonly mode: ReadWriteMode | undefined;
}

/**
 * The state of one name: its holders and its FIFO queue. A lock admits one holder; a semaphore admits
 * holders while their permits fit the limit; a read-write lock admits readers together or one writer.
 */
interface NameState {
  readonly holders: Holding[];
  readonly queue: Waiter[];
  /** Semaphores: the limit stored while the semaphore is in use. */
  limit: number | undefined;
}

type Namespace = 'lock' | 'semaphore' | 'rw';

/**
 * Lease state shared by every memory provider created with it — one store stands for one "server";
 * several providers on one store behave like separate clients of it. Locks, semaphores and read-write
 * locks live in separate namespaces, each name with its own FIFO queue and fencing counter.
 */
export class MemoryLockStore {
  readonly #names = new Map<string, NameState>();
  // Counters outlive name state so tokens stay monotonic after a name goes idle.
  readonly #counters = new Map<string, bigint>();

  /** How many names have holders or waiters right now (idle names are forgotten). */
  get size(): number {
    return this.#names.size;
  }

  /** @internal */
  state(space: Namespace, name: string): NameState {
    const id = `${space}\u0000${name}`;
    let state = this.#names.get(id);
    if (!state) {
      state = { holders: [], queue: [], limit: undefined };
      this.#names.set(id, state);
    }
    return state;
  }

  /** @internal */
  nextToken(space: Namespace, name: string): bigint {
    const id = `${space}\u0000${name}`;
    const token = (this.#counters.get(id) ?? 0n) + 1n;
    this.#counters.set(id, token);
    return token;
  }

  /** @internal Drops idle name state so a long-lived store does not grow with every name ever used. */
  forgetIfIdle(space: Namespace, name: string): void {
    const id = `${space}\u0000${name}`;
    const state = this.#names.get(id);
    if (state && state.holders.length === 0 && state.queue.length === 0) this.#names.delete(id);
  }

  /** @internal Ends `ticket`'s holding (every holding when omitted) and wakes the waiters that may now go. */
  vacate(space: Namespace, name: string, ticket?: MemoryTicket): void {
    const state = this.state(space, name);
    for (let i = state.holders.length - 1; i >= 0; i--) {
      const holding = state.holders[i]!;
      if (ticket && holding.ticket !== ticket) continue;
      clearTimeout(holding.expiryTimer);
      state.holders.splice(i, 1);
    }
    this.wakeQueue(state);
    this.forgetIfIdle(space, name);
  }

  /** @internal Wakes every waiter: each re-checks its own place (cheap in memory, and never misses one). */
  wakeQueue(state: NameState): void {
    for (const waiter of state.queue) {
      waiter.ticket.changed = true;
      waiter.ticket.wake?.();
    }
  }

  /** Deletes whoever holds lock `key`, as an operator deleting a lock would; the holder finds out on its next extend. */
  forceRelease(key: string): void {
    this.vacate('lock', key);
  }

  /** What is left for lock `key`: the owner and queued contenders. Empty once nothing uses it. */
  residue(key: string, space: Namespace = 'lock'): string[] {
    const state = this.#names.get(`${space}\u0000${key}`);
    if (!state) return [];
    return [
      ...state.holders.map((holding) => `holder:${holding.identity}`),
      ...state.queue.map((_, i) => `queued:${i}`),
    ];
  }
}

const memorySafety =
  'Exact within one process: there is no network, clock or replica to fail. It coordinates only the code ' +
  'sharing one MemoryLockStore, so it does not protect anything across processes.';

const memoryCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'ttl',
  safety: memorySafety,
};

type MemoryRequest = LockRequest & {
  readonly permits?: number;
  readonly mode?: ReadWriteMode;
  readonly limit?: number;
};

/**
 * The reference driver for all three primitives: a FIFO queue per name, a per-name fencing counter,
 * push wake-ups, ttl expiry, and the admission rule of the primitive.
 */
abstract class MemoryDriver<Request extends MemoryRequest>
  implements LeaseDriver<Request, MemoryTicket, MemoryTicket>
{
  readonly backend = 'memory';
  readonly address = 'in-process';
  readonly capabilities = memoryCapabilities;
  readonly limits = { minTtlMs: 1, maxKeyBytes: 4096 };
  protected readonly store: MemoryLockStore;
  protected abstract readonly space: Namespace;

  constructor(store: MemoryLockStore) {
    this.store = store;
  }

  /** Whether the waiter at `index` of the queue may be granted now. */
  protected abstract admits(state: NameState, index: number, request: Request): boolean;

  /** Throws when the request conflicts with the name's stored settings (a semaphore's limit). */
  protected check(_state: NameState, _request: Request): void {}

  async attempt(
    request: Request,
    ticket: MemoryTicket | undefined,
  ): Promise<Attempt<MemoryTicket, MemoryTicket>> {
    const state = this.store.state(this.space, request.key);
    if (!ticket) {
      try {
        this.check(state, request);
      } catch (error) {
        this.store.forgetIfIdle(this.space, request.key);
        throw error;
      }
      ticket = { changed: false, wake: undefined };
      state.queue.push({ ticket, permits: request.permits ?? 1, mode: request.mode });
    }
    const held = state.holders.find((holding) => holding.ticket === ticket);
    if (held) {
      // An earlier attempt with this ticket was granted but its caller never learnt it (an unknown
      // outcome): adopt that holding, with its ttl counted from now.
      clearTimeout(held.expiryTimer);
      held.expiresAt = now() + request.ttlMs;
      held.expiryTimer = this.#expiryTimer(request.key, ticket, request.ttlMs);
      return { outcome: 'granted', grant: { token: held.token, validUntil: held.expiresAt, handle: ticket } };
    }
    let index = state.queue.findIndex((waiter) => waiter.ticket === ticket);
    if (index < 0) {
      // A grant that expired before its caller learnt of it: queue again, at the back.
      index = state.queue.push({ ticket, permits: request.permits ?? 1, mode: request.mode }) - 1;
    }
    if (!this.admits(state, index, request)) return { outcome: 'busy', ticket };
    state.queue.splice(index, 1);
    const expiresAt = now() + request.ttlMs;
    const holding: Holding = {
      ticket,
      identity: request.identity,
      token: this.store.nextToken(this.space, request.key),
      permits: request.permits ?? 1,
      mode: request.mode,
      expiresAt,
      expiryTimer: this.#expiryTimer(request.key, ticket, request.ttlMs),
    };
    state.holders.push(holding);
    // Readers behind a reader, or permits that still fit, may go too.
    this.store.wakeQueue(state);
    const grant: Grant<MemoryTicket> = { token: holding.token, validUntil: expiresAt, handle: ticket };
    return { outcome: 'granted', grant };
  }

  waitForChange(_request: Request, ticket: MemoryTicket | undefined, maxWaitMs: number): Promise<void> {
    const request = _request;
    return new Promise((resolve) => {
      if (!ticket || ticket.changed || request.signal.aborted) {
        if (ticket) ticket.changed = false;
        return resolve();
      }
      const done = () => {
        clearTimeout(timer);
        request.signal.removeEventListener('abort', done);
        ticket.wake = undefined;
        ticket.changed = false;
        resolve();
      };
      const timer = setTimeout(done, maxWaitMs);
      request.signal.addEventListener('abort', done, { once: true });
      ticket.wake = done;
    });
  }

  /** Gives up a place in line, or undoes a grant whose caller never learnt of it (an unknown outcome). */
  async withdraw(request: Request, ticket: MemoryTicket): Promise<void> {
    const state = this.store.state(this.space, request.key);
    if (state.holders.some((holding) => holding.ticket === ticket)) {
      this.store.vacate(this.space, request.key, ticket);
      return;
    }
    const index = state.queue.findIndex((waiter) => waiter.ticket === ticket);
    if (index >= 0) {
      state.queue.splice(index, 1);
      this.store.wakeQueue(state);
    }
    this.store.forgetIfIdle(this.space, request.key);
  }

  async extend(key: string, grant: Grant<MemoryTicket>, ttlMs: number): Promise<number> {
    const state = this.store.state(this.space, key);
    const holding = state.holders.find((candidate) => candidate.ticket === grant.handle);
    if (!holding) {
      this.store.forgetIfIdle(this.space, key);
      throw new LockLostError(key, 'the lease expired and is no longer held by this owner');
    }
    clearTimeout(holding.expiryTimer);
    holding.expiresAt = now() + ttlMs;
    holding.expiryTimer = this.#expiryTimer(key, grant.handle, ttlMs);
    return holding.expiresAt;
  }

  async release(key: string, grant: Grant<MemoryTicket>): Promise<void> {
    this.store.vacate(this.space, key, grant.handle);
  }

  async close(): Promise<void> {}

  protected holdings(key: string): Holding[] {
    const holdings = [...this.store.state(this.space, key).holders];
    this.store.forgetIfIdle(this.space, key);
    return holdings.sort((a, b) => (a.token < b.token ? -1 : 1));
  }

  #expiryTimer(key: string, ticket: MemoryTicket, ttlMs: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.store.vacate(this.space, key, ticket), ttlMs);
    timer.unref();
    return timer;
  }
}

class MemoryLockDriver extends MemoryDriver<LockRequest> implements LockDriver<MemoryTicket, MemoryTicket> {
  protected readonly space = 'lock';

  protected admits(state: NameState, index: number): boolean {
    return index === 0 && state.holders.length === 0;
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const holding = this.holdings(key)[0];
    return holding ? { identity: holding.identity, token: holding.token } : null;
  }
}

/** FIFO without barging: a request waits until every request ahead of it is granted and its permits fit. */
class MemorySemaphoreDriver
  extends MemoryDriver<PermitRequest>
  implements SemaphoreDriver<MemoryTicket, MemoryTicket>
{
  protected readonly space = 'semaphore';

  protected override check(state: NameState, request: PermitRequest): void {
    const inUse = state.holders.length > 0 || state.queue.length > 0;
    if (inUse && state.limit !== undefined && state.limit !== request.limit) {
      throw new SemaphoreLimitMismatchError(request.key, request.limit, state.limit);
    }
    state.limit = request.limit;
  }

  protected admits(state: NameState, index: number, request: PermitRequest): boolean {
    if (index !== 0) return false;
    const held = state.holders.reduce((sum, holding) => sum + holding.permits, 0);
    return held + request.permits <= request.limit;
  }

  async holders(key: string): Promise<PermitHolder[]> {
    return this.holdings(key).map(({ identity, token, permits }) => ({ identity, token, permits }));
  }
}

/**
 * Readers share, a writer excludes everyone, and the queue is FIFO: a reader waits behind any writer
 * queued ahead of it (no writer starvation), a writer waits for everyone ahead of it.
 */
class MemoryReadWriteDriver
  extends MemoryDriver<ReadWriteRequest>
  implements ReadWriteDriver<MemoryTicket, MemoryTicket>
{
  protected readonly space = 'rw';

  protected admits(state: NameState, index: number, request: ReadWriteRequest): boolean {
    if (request.mode === 'write') return index === 0 && state.holders.length === 0;
    const writerHolds = state.holders.some((holding) => holding.mode === 'write');
    const writerAhead = state.queue.slice(0, index).some((waiter) => waiter.mode === 'write');
    return !writerHolds && !writerAhead;
  }

  async holders(key: string): Promise<ReadWriteHolder[]> {
    return this.holdings(key).map(({ identity, token, mode }) => ({
      identity,
      token,
      mode: mode ?? 'write',
    }));
  }
}

export interface MemoryProviderOptions extends ProviderOptions {
  /** Share one store between providers to make them contend, as separate clients of one server would. */
  store?: MemoryLockStore;
}

/** The in-process reference provider: monotonic fencing, FIFO, push wake-ups, TTL expiry, all three primitives. */
export function createMemoryProvider(options: MemoryProviderOptions = {}): LockProvider {
  const { store = new MemoryLockStore(), ...providerOptions } = options;
  return createLockProvider(createMemoryDriver(store), providerOptions, {
    semaphoreDriver: new MemorySemaphoreDriver(store),
    readWriteDriver: new MemoryReadWriteDriver(store),
  });
}

/** The bare reference lock driver, for people writing a driver of their own and for measuring core's overhead. */
export function createMemoryDriver(store: MemoryLockStore): LockDriver<MemoryTicket, MemoryTicket> {
  return new MemoryLockDriver(store);
}
