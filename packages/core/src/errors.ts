/**
 * Every error dlock raises is a LockError with a stable `code`, so callers can branch on the kind
 * without string-matching messages. Messages name the offending field and value, or the backend and
 * address, because "lock failed" is useless at 3 a.m.
 */
export type LockErrorCode =
  | 'LOCK_TIMEOUT'
  | 'LOCK_LOST'
  | 'NOT_HELD'
  | 'BACKEND_UNAVAILABLE'
  | 'INVALID_ARGUMENT'
  | 'PROVIDER_CLOSED';

export class LockError extends Error {
  readonly code: LockErrorCode;
  constructor(code: LockErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** `acquire` did not get the lock within `waitMs`. */
export class LockTimeoutError extends LockError {
  readonly key: string;
  readonly waitMs: number;
  constructor(key: string, waitMs: number) {
    super('LOCK_TIMEOUT', `lock "${key}" was not acquired within waitMs=${waitMs}`);
    this.key = key;
    this.waitMs = waitMs;
  }
}

/** Ownership of a lease can no longer be guaranteed: it expired, was taken over, or its session was lost. */
export class LockLostError extends LockError {
  readonly key: string;
  constructor(key: string, why: string, options?: { cause?: unknown }) {
    super('LOCK_LOST', `lock "${key}" lost: ${why}`, options);
    this.key = key;
  }
}

/** An operation needs a lease that is held, and this one has been released. */
export class NotHeldError extends LockError {
  readonly key: string;
  constructor(key: string, operation: string) {
    super('NOT_HELD', `cannot ${operation} lock "${key}": the lease was already released`);
    this.key = key;
  }
}

/** The backend could not be reached (or could not reach a quorum) in time. */
export class BackendUnavailableError extends LockError {
  readonly backend: string;
  readonly address: string;
  constructor(backend: string, address: string, detail: string, options?: { cause?: unknown }) {
    super('BACKEND_UNAVAILABLE', `${backend} at ${address} is unavailable: ${detail}`, options);
    this.backend = backend;
    this.address = address;
  }
}

/** A caller passed a value outside what is allowed. */
export class InvalidArgumentError extends LockError {
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, allowed: string) {
    super('INVALID_ARGUMENT', `invalid ${field}: ${describeValue(value)} (allowed: ${allowed})`);
    this.field = field;
    this.value = value;
  }
}

/** The provider was closed while the operation was pending, or before it started. */
export class ProviderClosedError extends LockError {
  constructor(backend: string) {
    super('PROVIDER_CLOSED', `the ${backend} lock provider is closed`);
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > 64 ? `"${value.slice(0, 61)}..." (${value.length} chars)` : JSON.stringify(value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  try {
    return String(JSON.stringify(value) ?? value);
  } catch {
    return String(value);
  }
}
