import {
  type PermitHolder,
  type PermitRequest,
  type SemaphoreDriver,
  SemaphoreLimitMismatchError,
} from '@dlock/core';
import type { PermitAsk } from '@dlock/redis/primitives';
import { RedlockPermitDriver, type RedlockPermitHandle, type RedlockPermitTicket } from './permits.js';

/**
 * A counting semaphore on independent nodes (issue 14), after redis-semaphore's RedlockSemaphore: each
 * node keeps @dlock/redis' permit table; a permit is held where enough nodes admitted it that no more
 * than `limit` can hold at once (RedlockPermitDriver.quorumFor: a majority only for limit 1). The
 * limit is stored on each node while the semaphore is in use; so many nodes storing another limit that
 * no quorum is possible is SemaphoreLimitMismatchError.
 */
export class RedlockSemaphoreDriver
  extends RedlockPermitDriver<PermitRequest>
  implements SemaphoreDriver<RedlockPermitHandle, RedlockPermitTicket>
{
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
