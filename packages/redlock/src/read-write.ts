import {
  BackendUnavailableError,
  type ReadWriteDriver,
  type ReadWriteHolder,
  type ReadWriteRequest,
} from '@dlock/core';
import { type PermitAsk, readWriteAsk, readWriteMode } from '@dlock/redis/primitives';
import { RedlockPermitDriver, type RedlockPermitHandle, type RedlockPermitTicket } from './permits.js';

/**
 * A read-write lock on a majority of independent nodes (issue 15): @dlock/redis' read-write permit
 * table (a reader takes one permit, a writer all of them) on every node, held where a majority
 * admitted it. No queue, so no protection against writer starvation (fairness 'none'); no tokens.
 */
export class RedlockReadWriteDriver
  extends RedlockPermitDriver<ReadWriteRequest>
  implements ReadWriteDriver<RedlockPermitHandle, RedlockPermitTicket>
{
  protected readonly primitive = 'rwlock';

  protected ask(request: ReadWriteRequest): PermitAsk {
    return readWriteAsk(request);
  }

  /**
   * A majority: a writer conflicts with every other lease one pair at a time, and any two majorities
   * share a node, which never admits a writer beside anyone.
   */
  protected override quorumFor(): number {
    return this.majority;
  }

  /** A write lease conflicts with each other lease one pair at a time. */
  protected override conflictLimit(): number {
    return 1;
  }

  protected override need(ask: PermitAsk, quorum: number, nodes: number): string {
    return `a ${readWriteMode(ask.permits)} lease needs ${quorum} of ${nodes} nodes`;
  }

  protected limitMismatch(request: ReadWriteRequest, storedLimit: number): Error {
    // Every dlock client uses the same limit: another one means something else wrote these keys.
    return new BackendUnavailableError(
      'redlock',
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
