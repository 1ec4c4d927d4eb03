export type {
  BackendConnectOptions,
  BackendDescriptor,
  AcquireOptions,
  Attempt,
  Capabilities,
  DriverLimits,
  Grant,
  GrantLoss,
  HolderInfo,
  KeyInspection,
  Lease,
  LeaseDriver,
  LockDriver,
  LockProvider,
  LockRequest,
  PermitAcquireOptions,
  PermitHolder,
  PermitLease,
  PermitRequest,
  PermitTryAcquireOptions,
  QueuedWaiter,
  ReadWriteDriver,
  ReadWriteHolder,
  ReadWriteLease,
  ReadWriteLock,
  ReadWriteMode,
  ReadWriteRequest,
  ReadWriteSide,
  Semaphore,
  SemaphoreDriver,
  SemaphoreOptions,
  TryAcquireOptions,
} from './contract.js';
export {
  type AcquireMessage,
  type AcquireOutcome,
  type CleanupMessage,
  type ElectorTermMessage,
  type ExtendMessage,
  type LeaseKind,
  type LostMessage,
  type LostReason,
  type ReleasedMessage,
  type ReleaseFailedMessage,
  channelNames,
} from './diagnostics.js';
export {
  type RetryPolicy,
  type RetryPolicyOptions,
  defaultRetryPolicy,
  isTransient,
  resolveRetryPolicy,
} from './retry.js';
export { MAX_SEMAPHORE_LIMIT } from './semaphore.js';
export {
  BackendUnavailableError,
  type BackendUnavailableOptions,
  InvalidArgumentError,
  KeyConflictError,
  LockError,
  type LockErrorCode,
  LockLostError,
  LockTimeoutError,
  NotHeldError,
  ProviderClosedError,
  SemaphoreLimitMismatchError,
  UnsupportedError,
} from './errors.js';
export { type BackendParts, createLockProvider, type ProviderOptions } from './provider.js';
export {
  renewInBackground,
  runWithLease,
  withLock,
  withPermit,
  withReadLock,
  withWriteLock,
  type Renewal,
  type RenewalOptions,
  type WithLockOptions,
  type WithPermitOptions,
} from './renewal.js';
export {
  createMemoryDriver,
  createMemoryProvider,
  MemoryLockStore,
  type MemoryProviderOptions,
  type MemoryTicket,
} from './memory.js';
export { type Deadline, defaultIdentity, pause, raceAbort, now, SharedDeadlines } from './timing.js';
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
