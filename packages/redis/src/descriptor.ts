import type { BackendDescriptor } from '@dlock/core';
import { createRedisProvider } from './provider.js';

/** How tooling (the lab) connects this backend: one redis URL. */
export const dlockBackend: BackendDescriptor = {
  name: 'redis',
  servers: { kind: 'redis', count: 1 },
  async createProvider(endpoints, options = {}) {
    return createRedisProvider({
      url: endpoints[0],
      identity: options.identity,
      connectTimeoutMs: options.connectTimeoutMs,
      retry: options.retry,
    });
  },
};
