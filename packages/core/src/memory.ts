import type { Capabilities, Grant, HolderInfo, LockDriver, LockProvider, LockRequest } from './contract.js';
import { LockLostError } from './errors.js';
import { type ProviderOptions, createLockProvider } from './provider.js';
import { now } from './timing.js';

interface Owner {
  readonly ticket: MemoryTicket;
  readonly identity: string;
  readonly token: bigint;
  expiresAt: number;
  expiryTimer: NodeJS.Timeout;
}

/** A contender's place in a key's queue. `changed` keeps a wake-up that arrives before anyone waits. */
export interface MemoryTicket {
  changed: boolean;
  wake: (() => void) | undefined;
}

interface KeyState {
  owner: Owner | undefined;
  readonly queue: MemoryTicket[];
}

/**
 * Lock state shared by every memory provider created with it — one store stands for one "server";
 * several providers on one store behave like separate clients of it.
 */
export class MemoryLockStore {
  readonly #keys = new Map<string, KeyState>();
  // Counters outlive key state so tokens stay monotonic after a key goes idle.
  readonly #counters = new Map<string, bigint>();

  /** @internal */
  state(key: string): KeyState {
    let state = this.#keys.get(key);
    if (!state) {
      state = { owner: undefined, queue: [] };
      this.#keys.set(key, state);
    }
    return state;
  }

  /** @internal */
  nextToken(key: string): bigint {
    const token = (this.#counters.get(key) ?? 0n) + 1n;
    this.#counters.set(key, token);
    return token;
  }

  /** @internal Drops idle key state so a long-lived store does not grow with every key ever used. */
  forgetIfIdle(key: string): void {
    const state = this.#keys.get(key);
    if (state && !state.owner && state.queue.length === 0) this.#keys.delete(key);
  }

  /** @internal Ends `ticket`'s ownership (any owner's when omitted) and wakes the next in line. */
  vacate(key: string, ticket?: MemoryTicket): void {
    const state = this.state(key);
    if (!state.owner || (ticket && state.owner.ticket !== ticket)) return;
    clearTimeout(state.owner.expiryTimer);
    state.owner = undefined;
    this.wakeHead(state);
    this.forgetIfIdle(key);
  }

  /** @internal */
  wakeHead(state: KeyState): void {
    const head = state.queue[0];
    if (!head) return;
    head.changed = true;
    head.wake?.();
  }

  /** Deletes whoever holds `key`, as an operator deleting a lock would; the holder finds out on its next extend. */
  forceRelease(key: string): void {
    this.vacate(key);
  }

  /** What is left for a key: the owner and queued contenders. Empty once nothing uses it. */
  residue(key: string): string[] {
    const state = this.#keys.get(key);
    if (!state) return [];
    return [
      ...(state.owner ? [`owner:${state.owner.identity}`] : []),
      ...state.queue.map((_, i) => `queued:${i}`),
    ];
  }
}

const memoryCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'ttl',
  safety:
    'Exact within one process: there is no network, clock or replica to fail. It coordinates only the code ' +
    'sharing one MemoryLockStore, so it does not protect anything across processes.',
};

class MemoryDriver implements LockDriver<MemoryTicket, MemoryTicket> {
  readonly backend = 'memory';
  readonly capabilities = memoryCapabilities;
  readonly limits = { minTtlMs: 1, maxKeyBytes: 4096 };
  readonly #store: MemoryLockStore;

  constructor(store: MemoryLockStore) {
    this.#store = store;
  }

  async attempt(request: LockRequest, ticket: MemoryTicket | undefined) {
    const state = this.#store.state(request.key);
    if (!ticket) {
      ticket = { changed: false, wake: undefined };
      state.queue.push(ticket);
    }
    if (state.owner || state.queue[0] !== ticket) return { acquired: false as const, ticket };
    state.queue.shift();
    const expiresAt = now() + request.ttlMs;
    const owner: Owner = {
      ticket,
      identity: request.identity,
      token: this.#store.nextToken(request.key),
      expiresAt,
      expiryTimer: this.#expiryTimer(request.key, ticket, request.ttlMs),
    };
    state.owner = owner;
    const grant: Grant<MemoryTicket> = { token: owner.token, validUntil: expiresAt, handle: ticket };
    return { acquired: true as const, grant };
  }

  waitForChange(request: LockRequest, ticket: MemoryTicket | undefined, maxWaitMs: number): Promise<void> {
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

  async withdraw(request: LockRequest, ticket: MemoryTicket): Promise<void> {
    const state = this.#store.state(request.key);
    const index = state.queue.indexOf(ticket);
    if (index >= 0) state.queue.splice(index, 1);
    if (index === 0) this.#store.wakeHead(state);
    this.#store.forgetIfIdle(request.key);
  }

  async extend(key: string, grant: Grant<MemoryTicket>, ttlMs: number): Promise<number> {
    const owner = this.#store.state(key).owner;
    if (!owner || owner.ticket !== grant.handle) {
      this.#store.forgetIfIdle(key);
      throw new LockLostError(key, 'the lease expired and the lock is no longer held by this owner');
    }
    clearTimeout(owner.expiryTimer);
    owner.expiresAt = now() + ttlMs;
    owner.expiryTimer = this.#expiryTimer(key, grant.handle, ttlMs);
    return owner.expiresAt;
  }

  async release(key: string, grant: Grant<MemoryTicket>): Promise<void> {
    this.#store.vacate(key, grant.handle);
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const owner = this.#store.state(key).owner;
    this.#store.forgetIfIdle(key);
    return owner ? { identity: owner.identity, token: owner.token } : null;
  }

  async close(): Promise<void> {}

  #expiryTimer(key: string, ticket: MemoryTicket, ttlMs: number): NodeJS.Timeout {
    const timer = setTimeout(() => this.#store.vacate(key, ticket), ttlMs);
    timer.unref();
    return timer;
  }
}

export interface MemoryProviderOptions extends ProviderOptions {
  /** Share one store between providers to make them contend, as separate clients of one server would. */
  store?: MemoryLockStore;
}

/** The in-process reference provider: monotonic fencing, FIFO, push wake-ups, TTL expiry. */
export function createMemoryProvider(options: MemoryProviderOptions = {}): LockProvider {
  const { store = new MemoryLockStore(), ...providerOptions } = options;
  return createLockProvider(createMemoryDriver(store), providerOptions);
}

/** The bare reference driver, for people writing a driver of their own and for measuring core's overhead. */
export function createMemoryDriver(store: MemoryLockStore): LockDriver<MemoryTicket, MemoryTicket> {
  return new MemoryDriver(store);
}
