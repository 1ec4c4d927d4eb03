import type { LockProvider } from '@dlock/core';
import { Etcd3 } from 'etcd3';
import { type EtcdLockProvider, type EtcdProviderOptions, createEtcdProvider } from '../src/index.js';

/** Session ttl used by the tests: short, with room for a busy shared machine. */
export const SESSION_TTL_SEC = 2;

export function openProvider(hosts: string | string[], options: Partial<EtcdProviderOptions> = {}) {
  return createEtcdProvider({ hosts, sessionTtlSec: SESSION_TTL_SEC, callTimeoutMs: 3_000, ...options });
}

export const asEtcd = (provider: LockProvider) => provider as EtcdLockProvider;

/** A plain etcd3 client, as an operator's tool would use, to look at and change what dlock stores. */
export class RawEtcd {
  readonly client: Etcd3;

  constructor(hosts: string | string[]) {
    this.client = new Etcd3({ hosts });
  }

  keys(prefix: string): Promise<string[]> {
    return this.client.getAll().prefix(prefix).keys();
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.client.delete().prefix(prefix);
  }

  /** Resolves once etcd no longer has the lease `hex` (expired or revoked), polling every 50 ms. */
  async leaseGone(hex: string, timeoutMs: number): Promise<void> {
    const id = BigInt(`0x${hex}`).toString();
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const { TTL } = await this.client.leaseClient.leaseTimeToLive({ ID: id });
      if (BigInt(TTL) < 0n) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`etcd still has lease ${hex} after ${timeoutMs} ms`);
  }

  close(): void {
    this.client.close();
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The outcome of `work` as a value, so a rejection is handled the moment it happens. */
export function settle<T>(work: Promise<T>): Promise<{ value: T | undefined; error: unknown }> {
  return work.then(
    (value) => ({ value, error: undefined }),
    (error: unknown) => ({ value: undefined, error }),
  );
}

/**
 * Polls `condition` every 20 ms until it holds; resolves with the time it took (ms). Rejects after
 * `timeoutMs` naming `what`.
 */
export async function within(
  what: string,
  timeoutMs: number,
  condition: () => Promise<boolean>,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await condition()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Prints a measured figure in a form the README and the closing report quote. */
export function figure(label: string, ms: number): void {
  console.log(`[etcd figure] ${label}: ${Math.round(ms)} ms`);
}
