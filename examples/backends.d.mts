import type { LockProvider, ProviderOptions } from '@dlock/core';

export declare const realBackendNames: readonly string[];
export declare function isBuilt(name: string): boolean;
export declare function createProvider(
  name: string,
  address: string | undefined,
  options?: Omit<ProviderOptions, 'election'>,
): Promise<LockProvider>;
export declare function instanceProviders(
  count: number,
  env?: Record<string, string | undefined>,
): Promise<LockProvider[]>;
