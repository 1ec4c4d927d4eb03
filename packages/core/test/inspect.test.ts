import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, MemoryLockStore, createMemoryProvider } from '../src/index.js';

describe('read-only inspection (issue 17) on the memory provider', () => {
  it('reports the holder, the time left on its lease and the waiters in arrival order', async () => {
    const store = new MemoryLockStore();
    const holder = createMemoryProvider({ store, identity: 'holder-A' });
    const waiters = [
      createMemoryProvider({ store, identity: 'waiter-B' }),
      createMemoryProvider({ store, identity: 'waiter-C' }),
    ];
    const lease = await holder.acquire('invoice-42', { ttlMs: 10_000 });
    const giveUp = new AbortController();
    const pending = waiters.map((waiter) => waiter.acquire('invoice-42', { signal: giveUp.signal }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const found = await holder.inspect?.('invoice-42');
    expect(found?.holder).toEqual({ identity: 'holder-A', token: lease.token });
    expect(found?.ttlLeftMs).toBeGreaterThan(0);
    expect(found?.ttlLeftMs).toBeLessThanOrEqual(10_000);
    expect(found?.waiters).toEqual([{ identity: 'waiter-B' }, { identity: 'waiter-C' }]);
    giveUp.abort();
    await Promise.allSettled(pending);
    await lease.release();
    expect(await holder.inspect?.('invoice-42')).toEqual({ holder: null, waiters: [] });
    await Promise.all([holder, ...waiters].map((provider) => provider.close()));
  });

  it('lists the held keys under a prefix, sorted, and nothing that is free', async () => {
    const provider = createMemoryProvider({ identity: 'lister' });
    const held = await Promise.all(
      ['orders/2', 'orders/1', 'invoices/1'].map((key) => provider.acquire(key)),
    );
    const freed = await provider.acquire('orders/3');
    await freed.release();
    expect(await provider.heldKeys?.('orders/')).toEqual(['orders/1', 'orders/2']);
    expect(await provider.heldKeys?.('')).toEqual(['invoices/1', 'orders/1', 'orders/2']);
    await expect(provider.heldKeys?.(7 as unknown as string)).rejects.toBeInstanceOf(InvalidArgumentError);
    await Promise.all(held.map((lease) => lease.release()));
    expect(await provider.heldKeys?.('')).toEqual([]);
    await provider.close();
  });
});
