import { MemoryLockStore, createMemoryProvider } from '@dlock/core';
import { describeLockProvider } from '../src/index.js';

const store = new MemoryLockStore();

describeLockProvider('memory', async () => createMemoryProvider({ store }), {
  ttlMs: 300,
  marginMs: 250,
  forceRelease: async (key) => store.forceRelease(key),
  residue: async (key, kind) => store.residue(key, kind === 'read-write' ? 'rw' : kind),
  heldAtRawKey: async (key) => store.residue(key).some((entry) => entry.startsWith('holder:')),
});
