export {
  createEtcdProvider,
  type EtcdElectionProvider,
  type EtcdFaults,
  type EtcdLockProvider,
  type EtcdProviderOptions,
} from './provider.js';
export { etcdCapabilities } from './queue.js';
export { entryKey, queuePrefix } from './layout.js';
export { dlockBackend } from './descriptor.js';
