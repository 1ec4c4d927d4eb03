import { lineBase, redisKeyLayout } from './layout.js';

/**
 * Which permit-based primitive a name belongs to. A semaphore and a read-write lock of one name live
 * under different keys, and neither shares a key with the lock of that name: the three are
 * independent. (They share the name's fencing counter, which only ever grows.)
 */
export type PermitPrimitive = 'semaphore' | 'rwlock';

/**
 * Where one semaphore or read-write lock lives in Redis. With `B` = `{T}L` (L = keyPrefix + name, T =
 * L's hash tag, or all of L when it has none), every key hashes to L's Cluster slot, the one its
 * fencing counter is in, so one script can touch all of them:
 *
 * - `B:<primitive>` — a hash: per owner `h:<permits>:<token>:<identity>` (holds) or `w:<permits>`
 *   (waits), plus `.limit` (the stored limit), `.held` (permits held) and `.seq` (arrival counter);
 * - `B:<primitive>:expiry` — a sorted set: owner → expiry in server-clock ms (holders and waiters alike);
 * - `B:<primitive>:queue` — a sorted set: waiting owner → arrival number (FIFO order);
 * - the fencing counter: the lock's (`{L}:fence`, or `L:fence` when L has a tag);
 * - the wake-up channel `B:<primitive>:released`.
 *
 * `{T}L` rather than `{L}` keeps names apart that `{L}` would merge (`x` and `{x}` both give `{x}`):
 * the text after the first `}` is L itself.
 */
export interface PermitLayout {
  readonly stateKey: string;
  readonly expiryKey: string;
  readonly queueKey: string;
  readonly fenceKey: string;
  readonly channel: string;
}

export function permitLayout(name: string, keyPrefix: string, primitive: PermitPrimitive): PermitLayout {
  const full = `${keyPrefix}${name}`;
  const base = lineBase(full, primitive);
  return {
    stateKey: base,
    expiryKey: `${base}:expiry`,
    queueKey: `${base}:queue`,
    fenceKey: redisKeyLayout(name, keyPrefix).fenceKey,
    channel: `${base}:released`,
  };
}

/** The keys a permit script takes, in the order the scripts read them. */
export function permitKeys(layout: PermitLayout): string[] {
  return [layout.stateKey, layout.expiryKey, layout.queueKey, layout.fenceKey];
}

/** A holder entry as stored in the state hash: `h:<permits>:<token>:<identity>`. */
export interface PermitEntry {
  readonly permits: number;
  readonly token: bigint;
  readonly identity: string;
}

const HOLDER_ENTRY = /^h:(\d+):(\d+):([\s\S]*)$/;

/** Undefined for anything that is not a holder entry (a waiter's, or a value dlock did not write). */
export function decodePermitEntry(entry: string): PermitEntry | undefined {
  const match = HOLDER_ENTRY.exec(entry);
  if (!match) return undefined;
  return { permits: Number(match[1]), token: BigInt(match[2]!), identity: match[3]! };
}

/**
 * A read-write lock is a permit table whose limit is this number: a reader takes one permit, a writer
 * takes all of them. Readers then share, a writer excludes everyone, and the FIFO rule of the
 * semaphore (nobody overtakes a waiter whose permits do not fit) is what keeps a waiting writer from
 * being starved by readers that arrive after it. 2^30 readers at once is more than Redis can hold.
 */
export const WRITE_PERMITS = 2 ** 30;
