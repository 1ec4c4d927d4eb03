import {
  BackendUnavailableError,
  type Capabilities,
  type ReadWriteDriver,
  type ReadWriteHolder,
  type ReadWriteRequest,
} from '@dlock/core';
import { WRITE_PERMITS } from './permit-layout.js';
import { type PermitAsk, type PermitHandle, type PermitTicket, RedisPermitDriver } from './permits.js';
import { permitSafety } from './semaphore.js';

export const redisReadWriteCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'ttl',
  safety:
    `${permitSafety} A write lease's token is larger than every earlier read or write token of the name; ` +
    "a read lease's token is larger than every earlier write token, so a resource that has seen a read " +
    'with token r may reject writes with tokens below r (their writer had let go before that read began); ' +
    'read tokens say nothing about the order of readers among themselves.',
};

/** The read and write sides as permits: a reader takes one, a writer all of them (see WRITE_PERMITS). */
export function readWriteAsk(request: ReadWriteRequest): PermitAsk {
  return { limit: WRITE_PERMITS, permits: request.mode === 'write' ? WRITE_PERMITS : 1 };
}

export function readWriteMode(permits: number): ReadWriteHolder['mode'] {
  return permits === WRITE_PERMITS ? 'write' : 'read';
}

/**
 * A read-write lock on one Redis node (issue 15): the semaphore's permit table with a limit of
 * WRITE_PERMITS, under its own keys. Readers are counted by owner, each with its own server-clock
 * expiry; a waiting writer blocks readers that arrive after it (FIFO, no writer starvation); read and
 * write leases draw tokens from the name's one fencing counter.
 */
export class RedisReadWriteDriver
  extends RedisPermitDriver<ReadWriteRequest>
  implements ReadWriteDriver<PermitHandle, PermitTicket>
{
  readonly capabilities = redisReadWriteCapabilities;
  protected readonly primitive = 'rwlock';

  protected ask(request: ReadWriteRequest): PermitAsk {
    return readWriteAsk(request);
  }

  protected limitMismatch(request: ReadWriteRequest, storedLimit: number): Error {
    // Every dlock client uses WRITE_PERMITS: another limit means something else wrote these keys.
    return new BackendUnavailableError(
      'redis',
      this.address,
      `read-write lock "${request.key}": its keys hold a limit of ${storedLimit}, which dlock never writes`,
      { transient: false },
    );
  }

  async holders(key: string): Promise<ReadWriteHolder[]> {
    return (await this.holderEntries(key)).map(({ identity, token, permits }) => ({
      identity,
      token,
      mode: readWriteMode(permits),
    }));
  }
}
