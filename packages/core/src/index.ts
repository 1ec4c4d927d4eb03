export type {
  BackendConnectOptions,
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
  createMemoryDriver,
  createMemoryProvider,
  MemoryLockStore,
  type MemoryProviderOptions,
  type MemoryTicket,
} from './memory.js';
export { defaultIdentity, pause, raceAbort, now } from './timing.js';
export { validateDuration, validateKey, validateOptionalDuration } from './validation.js';
export {
  LeaderElector,
  type LeaderElectorErrorSource,
  type LeaderElectorOptions,
  type LeaderTerm,
} from './recipes/leader-elector.js';
export { type InstanceRole, leaderOf, roleOf } from './recipes/roles.js';
export {
  scheduleExclusive,
  type ScheduledJob,
  type ScheduledTick,
  type ScheduleHandle,
  type ScheduleOptions,
} from './recipes/schedule.js';
export type { ExclusiveRunOptions, ScheduleMode } from './recipes/exclusive-run.js';
export { synchronized, type SynchronizedOptions } from './recipes/synchronized.js';
export { currentLease } from './recipes/lease-scope.js';
export {
  type ProviderSource,
  type SchedulerLockOptions,
  schedulerLock,
  type SynchronizedLockOptions,
  synchronizedLock,
} from './recipes/decorators.js';
