// @SynchronizedLock: "retry every 1 s, hold at most 45 s, method signature as the key". Here the
// decorator waits with the backend's push wake-ups instead of retrying on a timer; holdDurationMs is the
// lease ttl (how long the lock outlives a crashed caller), renewed by a watchdog while the method runs;
// the key defaults to ClassName.methodName. Three instances reserve stock concurrently with a
// read-modify-write that would lose updates without the lock.
import { type LockProvider, currentLease, synchronizedLock } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

/** Stands in for a database row every instance reads and writes, with a network delay. */
class StockTable {
  #stock = 100;
  async read(): Promise<number> {
    await new Promise((resolve) => setTimeout(resolve, 3));
    return this.#stock;
  }
  /** A real table would refuse a token lower than the last one it saw (where the backend's fencing is monotonic). */
  async write(stock: number, _fencingToken: bigint): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 3));
    this.#stock = stock;
  }
}

/** What the example observes. Kept outside the class: see the note on the key below. */
const observed = { active: 0, maxActive: 0, lockKey: '' };

class InventoryService {
  constructor(
    readonly locks: LockProvider,
    readonly table: StockTable,
  ) {}

  // The default key is the runtime ClassName.methodName. Build tools can change a class's runtime name
  // (esbuild, and so Vite and vitest, turn a class whose body names itself into `_InventoryService`:
  // evanw/esbuild#3516; minifiers mangle names), so a service built two ways would use two keys — pass
  // `key` explicitly in bundled or minified builds.
  @synchronizedLock((self: InventoryService) => self.locks, { holdDurationMs: 5_000 })
  async reserve(quantity: number): Promise<number> {
    observed.maxActive = Math.max(observed.maxActive, ++observed.active);
    try {
      const stock = await this.table.read();
      const lease = currentLease();
      observed.lockKey = lease?.key ?? '';
      await this.table.write(stock - quantity, lease?.token ?? 0n);
      return stock - quantity;
    } finally {
      observed.active--;
    }
  }
}

export interface SynchronizedMethodResult {
  readonly finalStock: number;
  readonly expectedStock: number;
  readonly maxConcurrent: number;
  readonly lockKey: string;
}

export async function main(log: (line: string) => void = console.log): Promise<SynchronizedMethodResult> {
  const providers = await instanceProviders(3);
  const table = new StockTable();
  const services = providers.map((provider) => new InventoryService(provider, table));
  Object.assign(observed, { active: 0, maxActive: 0, lockKey: '' });
  const reservations = Array.from({ length: 30 }, (_, n) => services[n % 3]?.reserve(1));
  await Promise.all(reservations);
  const finalStock = await table.read();
  await Promise.all(providers.map((provider) => provider.close()));
  log(`30 reservations of 1 from 3 instances: stock 100 → ${finalStock}`);
  return {
    finalStock,
    expectedStock: 70,
    maxConcurrent: observed.maxActive,
    lockKey: observed.lockKey,
  };
}
