export type {
  BackendDescriptor,
  AcquireOptions,
  Attempt,
  Capabilities,
  DriverLimits,
  Grant,
  HolderInfo,
  Lease,
  LockDriver,
  LockProvider,
  LockRequest,
  TryAcquireOptions,
} from './contract.js';
export {
  BackendUnavailableError,
  InvalidArgumentError,
  LockError,
  type LockErrorCode,
  LockLostError,
  LockTimeoutError,
  NotHeldError,
  ProviderClosedError,
} from './errors.js';
export { createLockProvider, type ProviderOptions } from './provider.js';
export {
  renewInBackground,
  withLock,
  type Renewal,
  type RenewalOptions,
  type WithLockOptions,
} from './renewal.js';
export {
  createMemoryProvider,
  MemoryLockStore,
  type MemoryProviderOptions,
  type MemoryTicket,
} from './memory.js';
export { defaultIdentity, pause, raceAbort, now } from './timing.js';
export { validateDuration, validateKey, validateOptionalDuration } from './validation.js';
