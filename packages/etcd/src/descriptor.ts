import type { BackendDescriptor } from '@dlock/core';
import { createEtcdProvider } from './provider.js';

/** How tooling (the lab) connects this backend: one or more etcd client URLs. */
export const dlockBackend: BackendDescriptor = {
  name: 'etcd',
  servers: { kind: 'etcd', count: 1 },
  async createProvider(endpoints, options = {}) {
    return createEtcdProvider({
      hosts: [...endpoints],
      identity: options.identity,
      callTimeoutMs: options.connectTimeoutMs,
      retry: options.retry,
      // etcd lease TTLs are whole seconds; round up so the session never lives shorter than asked.
      sessionTtlSec:
        options.sessionTimeoutMs === undefined ? undefined : Math.ceil(options.sessionTimeoutMs / 1000),
    });
  },
};
