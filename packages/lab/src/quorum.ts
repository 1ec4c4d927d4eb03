/**
 * How many of N RedLock nodes must admit a permit of a semaphore of `limit` so that any limit + 1
 * grants share a node (which refuses one of them): floor(N·L / (L+1)) + 1 — the rule
 * @dlock/redlock's README derives; a majority for L = 1. Used by the semaphore floor (it asks as many
 * nodes as dlock does) and by the report (a majority-quorum peer asks fewer).
 */
export function permitQuorum(nodes: number, limit: number): number {
  return Math.floor((nodes * limit) / (limit + 1)) + 1;
}

/** A majority of N nodes: what RedLock needs for a lock, and what redis-semaphore asks for any limit. */
export const majority = (nodes: number) => Math.floor(nodes / 2) + 1;
