// A pool of workers calling a downstream API that allows at most 4 calls in flight per customer
// (Redisson's RSemaphore, redis-semaphore's Semaphore, Curator's InterProcessSemaphoreV2 are used for
// this). Three instances run four workers each; every call takes a permit of one semaphore of limit 4,
// so the twelve workers never have more than four calls in flight between them, whichever instance
// they run on. A worker waits for a permit with the backend's push wake-ups, the permit is renewed
// while the call runs (withPermit), and it is given back on every exit path.
import { type PermitHolder, withPermit } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

/** The downstream's limit: calls in flight at once, per customer. */
const LIMIT = 4;
const WORKERS_PER_INSTANCE = 4;
const CALLS_PER_WORKER = 6;

/** Stands in for the rate-limited API: it answers 429 to a call beyond its limit, as a real one would. */
class RateLimitedApi {
  inFlight = 0;
  mostInFlight = 0;
  served = 0;
  refused = 0;

  async call(worker: string): Promise<string> {
    if (this.inFlight >= LIMIT) {
      this.refused++;
      throw new Error(`429 Too Many Requests (${worker})`);
    }
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    try {
      await new Promise((resolve) => setTimeout(resolve, 10));
      this.served++;
      return `ok for ${worker}`;
    } finally {
      this.inFlight--;
    }
  }
}

export interface RateLimitedPoolResult {
  readonly limit: number;
  readonly workers: number;
  /** Calls the API answered, and calls it refused with 429 (must be 0). */
  readonly served: number;
  readonly refused: number;
  readonly expectedCalls: number;
  /** Most calls in flight at once at the API (at most `limit`). */
  readonly mostInFlight: number;
  /** What `holders()` answered while the workers ran: at most `limit` permits, each with its token. */
  readonly holdersSeen: readonly PermitHolder[][];
}

export async function main(log: (line: string) => void = console.log): Promise<RateLimitedPoolResult> {
  const providers = await instanceProviders(3);
  const api = new RateLimitedApi();
  const semaphores = providers.map((provider) =>
    provider.semaphore('api.example.com/customer-42', { limit: LIMIT }),
  );

  const worker = async (instance: number, slot: number) => {
    const name = `instance-${instance + 1}/worker-${slot + 1}`;
    const semaphore = semaphores[instance];
    if (!semaphore) throw new Error(`no semaphore for instance ${instance}`);
    for (let call = 0; call < CALLS_PER_WORKER; call++) {
      await withPermit(semaphore, () => api.call(name), { ttlMs: 5_000, waitMs: 10_000 });
    }
  };
  const workers = providers.flatMap((_, instance) =>
    Array.from({ length: WORKERS_PER_INSTANCE }, (__, slot) => worker(instance, slot)),
  );

  // Who holds permits, asked a few times while the workers run (any instance can ask).
  const holdersSeen: PermitHolder[][] = [];
  let running = true;
  const allDone = Promise.all(workers).finally(() => {
    running = false;
  });
  while (running && holdersSeen.length < 5) {
    const holders = await (semaphores[0]?.holders() ?? Promise.resolve([]));
    holdersSeen.push(holders);
    await new Promise((resolve) => setTimeout(resolve, 15));
  }
  await allDone;
  await Promise.all(providers.map((provider) => provider.close()));

  const workerCount = providers.length * WORKERS_PER_INSTANCE;
  log(
    `${workerCount} workers on ${providers.length} instances, limit ${LIMIT}: ${api.served} calls served, ` +
      `${api.refused} refused, at most ${api.mostInFlight} in flight`,
  );
  return {
    limit: LIMIT,
    workers: workerCount,
    served: api.served,
    refused: api.refused,
    expectedCalls: workerCount * CALLS_PER_WORKER,
    mostInFlight: api.mostInFlight,
    holdersSeen,
  };
}
