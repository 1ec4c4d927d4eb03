import type { HolderInfo, LockProvider } from '../contract.js';
import { InvalidArgumentError, ProviderClosedError } from '../errors.js';
import { pause } from '../timing.js';
import { type ErrorReporter, safeReport } from './callbacks.js';

/** The role of an instance of a service: the one elected leader (master) or anyone else (slave). */
export type InstanceRole = 'leader' | 'follower';

/**
 * Where leadership of `provider` is recorded: the backend's native election layout when it has one
 * (etcd's concurrency.Election, ZooKeeper's election nodes), the lock itself elsewhere. Every recipe
 * that elects or asks about a leader goes through this, so they all read the same record.
 */
export function electionProviderOf(provider: LockProvider): LockProvider {
  return provider.election ?? provider;
}

/** The identity currently leading `key` (holding it in the election layout), or null when nobody does. */
export async function leaderOf(provider: LockProvider, key: string): Promise<string | null> {
  return (await electionProviderOf(provider).holder(key))?.identity ?? null;
}

/**
 * The role of any instance by its identity — `isMaster(appName, instanceId)`. 'follower' means only
 * "not the leader right now": the lock records who leads, not who else is alive.
 */
export async function roleOf(provider: LockProvider, key: string, identity: string): Promise<InstanceRole> {
  return (await leaderOf(provider, key)) === identity ? 'leader' : 'follower';
}

export interface LeaderChangesOptions {
  /** Time between holder() polls where the backend cannot push, and before re-opening a failed watch. */
  readonly pollMs: number;
  readonly signal: AbortSignal;
  /** Where a failed poll or watch is reported before it is retried after `pollMs`. */
  readonly onError: ErrorReporter;
}

/**
 * Who leads `key`: the current leader (or null) first, then each change of identity or fencing token
 * it observes, never the same leader twice in a row, until `signal` aborts or the consumer stops
 * iterating. Pushed by the backend's `watchHolder` where it has one; otherwise holder() is polled every
 * `pollMs`. Changes closer together than one read (or one poll) coalesce; the last value always
 * catches up with the current leader. Backend errors are
 * reported and the watch or poll is retried; only InvalidArgumentError and ProviderClosedError end the
 * stream (thrown to the consumer).
 */
export async function* leaderChanges(
  provider: LockProvider,
  key: string,
  options: LeaderChangesOptions,
): AsyncGenerator<HolderInfo | null, void, undefined> {
  const source = electionProviderOf(provider);
  // The consumer may stop with `break` while the signal is still live: the watch must end then too.
  const stopped = new AbortController();
  const signal = AbortSignal.any([options.signal, stopped.signal]);
  let last: HolderInfo | null | undefined;
  try {
    while (!signal.aborted) {
      try {
        const updates = source.watchHolder
          ? source.watchHolder(key, signal)
          : pollHolder(source, key, options.pollMs, signal);
        for await (const holder of updates) {
          if (signal.aborted) return;
          if (last !== undefined && sameHolder(last, holder)) continue;
          last = holder;
          yield holder;
        }
      } catch (error) {
        if (signal.aborted) return;
        // Retrying cannot fix a bad key or a closed provider.
        if (error instanceof InvalidArgumentError || error instanceof ProviderClosedError) throw error;
        safeReport(options.onError, error);
      }
      await pause(options.pollMs, signal);
    }
  } finally {
    stopped.abort();
  }
}

async function* pollHolder(
  source: LockProvider,
  key: string,
  pollMs: number,
  signal: AbortSignal,
): AsyncGenerator<HolderInfo | null> {
  while (!signal.aborted) {
    yield await source.holder(key);
    await pause(pollMs, signal);
  }
}

function sameHolder(a: HolderInfo | null, b: HolderInfo | null): boolean {
  if (a === null || b === null) return a === b;
  return a.identity === b.identity && a.token === b.token;
}
