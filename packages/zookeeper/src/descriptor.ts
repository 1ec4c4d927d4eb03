import type { BackendDescriptor } from '@dlock/core';
import { createZooKeeperProvider } from './provider.js';

/** How tooling (the lab) connects this backend: ZooKeeper host:port pairs of one ensemble. */
export const dlockBackend: BackendDescriptor = {
  name: 'zookeeper',
  servers: { kind: 'zookeeper', count: 1 },
  async createProvider(endpoints, options = {}) {
    return createZooKeeperProvider({
      connectString: endpoints.join(','),
      identity: options.identity,
      connectTimeoutMs: options.connectTimeoutMs,
      sessionTimeoutMs: options.sessionTimeoutMs,
      retry: options.retry,
    });
  },
};
