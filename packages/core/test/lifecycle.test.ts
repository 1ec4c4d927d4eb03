import { describe, expect, it } from 'vitest';
import {
  type Lease,
  LockLostError,
  MemoryLockStore,
  ProviderClosedError,
  createMemoryProvider,
  renewInBackground,
  withLock,
} from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('the lease lifecycle in core', () => {
  it('aborts the lease signal with LockLostError when the ttl passes without an extension', async () => {
    const provider = createMemoryProvider();
    const lease = await provider.acquire('lapse', { ttlMs: 50 });
    await sleep(80);
    expect(lease.signal.aborted).toBe(true);
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    await provider.close();
  });

  it('close() releases held leases, aborts their signals and rejects pending acquires', async () => {
    const store = new MemoryLockStore();
    const holder = createMemoryProvider({ store });
    const waiter = createMemoryProvider({ store });
    const lease = await holder.acquire('closing', { ttlMs: 5_000 });
    const pending = waiter.acquire('closing');
    await sleep(20);
    await waiter.close();
    await expect(pending).rejects.toBeInstanceOf(ProviderClosedError);
    await holder.close();
    expect(lease.signal.reason).toBeInstanceOf(LockLostError);
    expect(store.residue('closing')).toEqual([]);
    await expect(holder.acquire('other')).rejects.toBeInstanceOf(ProviderClosedError);
  });

  it('withLock releases when fn throws and reports the error of fn', async () => {
    const provider = createMemoryProvider();
    const failure = new Error('job failed');
    await expect(
      withLock(provider, 'throws', () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await provider.holder('throws')).toBeNull();
    await provider.close();
  });

  it('renewInBackground keeps a lease alive and stops when asked', async () => {
    // Renewing every ttl / 3, the watchdog keeps a lease whose process falls up to two thirds of the ttl
    // behind: 400 ms here, generous for a busy machine (a 60 ms ttl, lost to a 40 ms stall, failed under
    // a CPU hog). The lease outlives three ttls; once renewal stops, it expires within one.
    const ttlMs = 600;
    const store = new MemoryLockStore();
    const provider = createMemoryProvider({ store });
    const lease: Lease = await provider.acquire('renewed', { ttlMs });
    const renewal = renewInBackground(lease);
    await sleep(ttlMs * 3);
    expect(lease.signal.aborted).toBe(false);
    renewal.stop();
    await sleep(ttlMs * 2);
    expect(lease.signal.aborted).toBe(true);
    expect(store.residue('renewed')).toEqual([]);
    await provider.close();
  });

  it('await using releases the lease at the end of the block', async () => {
    const provider = createMemoryProvider();
    {
      await using lease = await provider.acquire('scoped');
      expect((await provider.holder('scoped'))?.token).toBe(lease.token);
    }
    expect(await provider.holder('scoped')).toBeNull();
    await provider.close();
  });

  it('rejects invalid provider configuration with a typed error', () => {
    expect(() => createMemoryProvider({ defaultTtlMs: 0 })).toThrow(/defaultTtlMs/);
    expect(() => createMemoryProvider({ fallbackRecheckMs: Number.NaN })).toThrow(/fallbackRecheckMs/);
  });
});
