import {
  type Capabilities,
  type PermitHolder,
  type PermitRequest,
  type SemaphoreDriver,
  SemaphoreLimitMismatchError,
} from '@dlock/core';
import { type PermitAsk, type PermitHandle, type PermitTicket, RedisPermitDriver } from './permits.js';

/** What the Redis semaphore and read-write lock share in their safety note. */
export const permitSafety =
  'One Redis node decides, as for locks: a restart without persistence or a failover to a replica that ' +
  'had not received the state forgets holders, and more than the limit may then hold at once; tokens ' +
  '(max(counter + 1, server time in µs), the counter shared with the lock of the same name) keep ' +
  'increasing across such a loss while the servers’ clocks agree and do not step back. Expiry is by the ' +
  'server’s clock (entries are reclaimed inside the scripts); lease validity is counted locally from ' +
  'before each request, less 1% + 2 ms for drift. FIFO is among live waiters: a waiter keeps its place ' +
  'by re-attempting at least every second (its place lapses 2 s after its last attempt, by the server ' +
  'clock), so a waiter paused longer than that joins the back of the queue, and a crashed one holds the ' +
  'queue up for at most 2 s.';

export const redisSemaphoreCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'ttl',
  safety: permitSafety,
};

/**
 * A counting semaphore on one Redis node (issue 14): a permit table per name with the stored limit,
 * holders by owner with server-clock expiry, a FIFO queue without barging, the name's fencing counter.
 * One script per operation, one round trip per attempt. Layout: permit-layout.ts and the README.
 */
export class RedisSemaphoreDriver
  extends RedisPermitDriver<PermitRequest>
  implements SemaphoreDriver<PermitHandle, PermitTicket>
{
  readonly capabilities = redisSemaphoreCapabilities;
  protected readonly primitive = 'semaphore';

  protected ask(request: PermitRequest): PermitAsk {
    return { limit: request.limit, permits: request.permits };
  }

  protected limitMismatch(request: PermitRequest, storedLimit: number): Error {
    return new SemaphoreLimitMismatchError(request.key, request.limit, storedLimit);
  }

  async holders(key: string): Promise<PermitHolder[]> {
    return (await this.holderEntries(key)).map(({ identity, token, permits }) => ({
      identity,
      token,
      permits,
    }));
  }
}
