import { BackendUnavailableError } from '@dlock/core';
import type { Redis } from 'ioredis';
import { ExecutionError, ResourceLockedError } from './library.js';

/** How the nodes answered one acquire, extend or release that did not reach a quorum. */
export interface Votes {
  readonly nodes: number;
  readonly quorum: number;
  readonly granted: number;
  /** Nodes whose script said no: the key is held under another value (or, for extend/release, not ours). */
  readonly refused: number;
  /** Nodes that did not answer: down, unreachable, timed out. */
  readonly failed: ReadonlyArray<{ readonly address: string; readonly error: Error }>;
}

/**
 * Reads the per-node votes out of the library's ExecutionError. The library settles an operation as
 * soon as a majority voted one way; the stats it attaches resolve once every node has answered, which
 * the connection's command timeout bounds. Returns undefined for an ExecutionError without attempts
 * (extend refusing a lock past its wall-clock expiration); rethrows anything that is not a quorum
 * failure, since that is a bug, not a node's answer.
 */
export async function countVotes(
  error: unknown,
  addressOf: (client: Redis) => string,
): Promise<Votes | undefined> {
  if (!(error instanceof ExecutionError)) throw error;
  const last = error.attempts.at(-1);
  if (!last) return undefined;
  const stats = await last;
  let refused = 0;
  const failed: Array<{ address: string; error: Error }> = [];
  for (const [client, reason] of stats.votesAgainst) {
    if (reason instanceof ResourceLockedError) refused++;
    else failed.push({ address: addressOf(client), error: reason });
  }
  return {
    nodes: stats.membershipSize,
    quorum: stats.quorumSize,
    granted: stats.votesFor.size,
    refused,
    failed,
  };
}

/** Too few nodes answered for any client to reach a majority: waiting for the key to free up is pointless. */
export function quorumUnreachable(votes: Votes): boolean {
  return votes.nodes - votes.failed.length < votes.quorum;
}

/** A typed error naming the nodes that did not answer and why. */
export function unavailableError(votes: Votes, outcome: string): BackendUnavailableError {
  const addresses = votes.failed.map((failure) => failure.address).join(',');
  const reasons = votes.failed.map((failure) => `${failure.address}: ${failure.error.message}`).join('; ');
  return new BackendUnavailableError(
    'redlock',
    addresses || 'no failing node',
    `${outcome}: ${votes.failed.length} of ${votes.nodes} nodes did not answer, ${votes.granted} agreed, ` +
      `${votes.refused} refused, and a majority of ${votes.quorum} is needed (${reasons})`,
  );
}
