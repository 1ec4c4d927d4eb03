export { type ConnectionLossPolicy, FOREIGN_HOLDER, redisCapabilities } from './driver.js';
export { type RedisKeyLayout, redisKeyLayout } from './layout.js';
export { type RedisProviderOptions, createRedisProvider } from './provider.js';
export type { RedisClient } from './scripts.js';
export { dlockBackend } from './descriptor.js';
export { type PermitLayout, type PermitPrimitive, permitLayout } from './permit-layout.js';
export { redisSemaphoreCapabilities } from './semaphore.js';
export { redisReadWriteCapabilities } from './read-write.js';
