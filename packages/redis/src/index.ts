export { type ConnectionLossPolicy, FOREIGN_HOLDER, redisCapabilities } from './driver.js';
export type { KeyConflictFound } from './errors.js';
export { KeyConflictError } from '@dlock/core';
export { DEFAULT_KEY_PREFIX, type RedisKeyLayout, redisKeyLayout } from './layout.js';
export { type RedisProviderOptions, createRedisProvider, redisRetryDefaults } from './provider.js';
export type { RedisClient } from './scripts.js';
export { dlockBackend } from './descriptor.js';
