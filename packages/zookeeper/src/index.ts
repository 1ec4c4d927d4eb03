export { type ZooKeeperWatchEvent, zooKeeperCapabilities } from './driver.js';
export { encodeKey, lockPath } from './layout.js';
export {
  type ZooKeeperAcl,
  type ZooKeeperProviderOptions,
  createZooKeeperProvider,
  zooKeeperRetryDefaults,
} from './provider.js';
export { zooKeeperReadWriteCapabilities } from './read-write.js';
export { zooKeeperSemaphoreCapabilities } from './semaphore.js';
export type { DigestAuth, DisconnectPolicy } from './session.js';
export { dlockBackend } from './descriptor.js';
