import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
// One module format only. This is the package's "import" entry (dist/esm); its CJS copy (dist/cjs)
// defines separate ExecutionError / ResourceLockedError classes, so an error thrown by one copy is not
// `instanceof` the other's. Nothing else in src imports 'redlock': everything goes through this file.
import Redlock, { type Lock } from 'redlock';

export { ExecutionError, ResourceLockedError, type ExecutionStats, type Lock } from 'redlock';

/** Where dlock's release script announces a release: the lock key plus this suffix, on each node. */
export const releaseChannel = (lockKey: string): string => `${lockKey}:released`;

/**
 * The library's compare-and-delete, plus a notice to waiters subscribed on this node. It still returns
 * the number of keys released, which is how the library counts a vote for.
 */
const RELEASE_AND_NOTIFY_SCRIPT = `
  local released = 0
  for _, key in ipairs(KEYS) do
    if redis.call("get", key) == ARGV[1] then
      redis.call("del", key)
      redis.call("publish", key .. ":released", "")
      released = released + 1
    end
  end
  return released
`;

const OWNER_VALUE = /^[0-9a-f]{32}:/;

/**
 * The value stored at the lock key: 32 random hex digits (the library's own format, the secret that
 * extend and release compare) followed by `:` and the holder's identity, so `holder()` can name it
 * from the one key every node already stores.
 */
export function newOwnerValue(identity: string): string {
  return `${randomBytes(16).toString('hex')}:${identity}`;
}

/** The identity inside a dlock owner value; a value written by plain redlock is its own identity. */
export function identityOf(value: string): string {
  return OWNER_VALUE.test(value) ? value.slice(33) : value;
}

/**
 * The library's Redlock with two adjustments:
 * - `retryCount: 0`: when it retries internally it measures the lock's expiration from the first
 *   attempt, so a lock won after retries is already expired client-side (redlock #169, #296). dlock's
 *   core does the waiting and each attempt measures its own validity.
 * - the owner value is chosen by dlock. The library draws it from its `_random()` (private in its
 *   types), called synchronously at the start of `acquire`; overriding it is the only way to store the
 *   identity in the lock without a second write. The version is pinned exactly, and `acquireWithValue`
 *   checks that the value was used, so an upgrade that changes this fails loudly, not silently.
 */
export class OwnerValueRedlock extends Redlock {
  #chosenValue: string | undefined;

  constructor(clients: Redis[]) {
    // A function, not the string: its types accept a string, but the code only applies functions.
    super(clients, { retryCount: 0 }, { releaseScript: () => RELEASE_AND_NOTIFY_SCRIPT });
  }

  async acquireWithValue(lockKey: string, durationMs: number, value: string): Promise<Lock> {
    this.#chosenValue = value;
    let pending: Promise<Lock>;
    try {
      pending = this.acquire([lockKey], durationMs);
    } finally {
      this.#chosenValue = undefined;
    }
    const lock = await pending;
    if (lock.value !== value) {
      await this.release(lock).catch(() => {});
      throw new Error(
        'redlock did not store the owner value dlock chose: this redlock version is unsupported',
      );
    }
    return lock;
  }

  protected override _random(): string {
    return this.#chosenValue ?? super._random();
  }
}
