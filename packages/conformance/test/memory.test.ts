import { MemoryLockStore, createMemoryProvider } from '@dlock/core';
import { describeLockProvider } from '../src/index.js';

const store = new MemoryLockStore();

describeLockProvider('memory', async () => createMemoryProvider({ store }), {
  // As long as the redis suite's: renewals at ttl/3 survive a busy machine's stall of about 1 s.
  ttlMs: 1_500,
  marginMs: 250,
  forceRelease: async (key) => store.forceRelease(key),
  residue: async (key, kind) => store.residue(key, kind === 'read-write' ? 'rw' : kind),
  // The store's own state is the whole "server": nothing may be left in it after the churn.
  soak: { durationMs: 5_000, server: () => ({ 'store names': store.size }) },
  heldAtRawKey: async (key) => store.residue(key).some((entry) => entry.startsWith('holder:')),
});
