import { AsyncLocalStorage } from 'node:async_hooks';
import type { Lease, LockProvider } from '../contract.js';

interface HeldLock {
  readonly provider: LockProvider;
  readonly lease: Lease;
}

/**
 * The leases held by the synchronized functions and exclusive jobs running in the current async
 * context. Decorated methods cannot take the lease as a parameter, so they find it here; and a
 * synchronized function re-entered from its own body finds its lock already held instead of
 * waiting for itself forever.
 */
const heldLocks = new AsyncLocalStorage<readonly HeldLock[]>();

/** Runs `body` with `lease` recorded as held by the current async context. */
export function runHolding<T>(provider: LockProvider, lease: Lease, body: () => T): T {
  return heldLocks.run([...(heldLocks.getStore() ?? []), { provider, lease }], body);
}

/** The live lease on `key` of `provider` held by an enclosing synchronized call, if any. */
export function heldLease(provider: LockProvider, key: string): Lease | undefined {
  const lease = innermost((lock) => lock.provider === provider && lock.lease.key === key);
  return lease && !lease.signal.aborted ? lease : undefined;
}

/**
 * The lease of the innermost synchronized function or exclusive scheduled job running in the current
 * async context (optionally: the one on `key`), or undefined outside one. Its `signal` aborts when the
 * lock can no longer be guaranteed; its `token` is the fencing token to hand to the protected resource.
 */
export function currentLease(key?: string): Lease | undefined {
  return innermost((lock) => key === undefined || lock.lease.key === key);
}

function innermost(matches: (lock: HeldLock) => boolean): Lease | undefined {
  const held = heldLocks.getStore() ?? [];
  for (let i = held.length - 1; i >= 0; i--) {
    const lock = held[i];
    if (lock && matches(lock)) return lock.lease;
  }
  return undefined;
}
