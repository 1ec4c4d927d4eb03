import type { BackendDescriptor } from '@dlock/core';
import { createRedlockProvider } from './provider.js';

/** How tooling (the lab) connects this backend: one redis URL per independent node (an odd count). */
export const dlockBackend: BackendDescriptor = {
  name: 'redlock',
  servers: { kind: 'redis', count: 5 },
  async createProvider(endpoints, options = {}) {
    return createRedlockProvider({
      urls: [...endpoints],
      identity: options.identity,
      connectTimeoutMs: options.connectTimeoutMs,
      retry: options.retry,
    });
  },
};
