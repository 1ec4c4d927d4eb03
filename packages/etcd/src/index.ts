export {
  createEtcdProvider,
  type EtcdElectionProvider,
  type EtcdFaults,
  type EtcdLockProvider,
  type EtcdProviderOptions,
} from './provider.js';
export { etcdCapabilities } from './queue.js';
export { entryKey, queuePrefix } from './layout.js';
export {
  etcdSemaphoreCapabilities,
  permitQueuePrefix,
  permitValue,
  semaphorePrefix,
} from './semaphore.js';
export { etcdReadWriteCapabilities, readWritePrefix, readWriteSidePrefix } from './read-write.js';
export { dlockBackend } from './descriptor.js';
