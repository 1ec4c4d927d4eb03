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
  | 'LIMIT_MISMATCH'
  | 'KEY_CONFLICT'
  | 'UNSUPPORTED'
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
  /** `what` names the lease: 'lock' (default), 'semaphore permit on', 'read lease on', 'write lease on'. */
  constructor(key: string, operation: string, what = 'lock') {
    super('NOT_HELD', `cannot ${operation} ${what} "${key}": the lease was already released`);
    this.key = key;
  }
}

export interface BackendUnavailableOptions {
  cause?: unknown;
  /**
   * Whether trying again may help: true (the default) for timeouts, resets, refused connects and
   * reconnects in progress; false for failures that repeat until someone changes something
   * (authentication, authorisation, a missing chroot). Core retries only transient failures.
   */
  transient?: boolean;
  /** How many tries this error sums up, when core gave up after retrying. */
  tries?: number;
}

/** The backend could not be reached (or could not reach a quorum) in time. */
export class BackendUnavailableError extends LockError {
  readonly backend: string;
  readonly address: string;
  readonly transient: boolean;
  /** What went wrong, without the backend and address prefix. */
  readonly detail: string;
  /** How many tries were made before giving up (1 when core did not retry). */
  readonly tries: number;
  constructor(backend: string, address: string, detail: string, options: BackendUnavailableOptions = {}) {
    super('BACKEND_UNAVAILABLE', `${backend} at ${address} is unavailable: ${detail}`, {
      cause: options.cause,
    });
    this.backend = backend;
    this.address = address;
    this.detail = detail;
    this.transient = options.transient ?? true;
    this.tries = options.tries ?? 1;
  }
}

/**
 * Two clients use one semaphore name with different limits. The limit stored with the semaphore (by
 * whoever created it while idle) wins, and a request with another limit fails fast, because two
 * limits on one name silently admit the larger number of holders.
 */
export class SemaphoreLimitMismatchError extends LockError {
  readonly semaphore: string;
  readonly limit: number;
  readonly storedLimit: number;
  constructor(name: string, limit: number, storedLimit: number) {
    super(
      'LIMIT_MISMATCH',
      `semaphore "${name}" is in use with limit ${storedLimit}; this request asked for limit ${limit} ` +
        '(every client of one semaphore must use the same limit; it can change once the semaphore is idle)',
    );
    this.semaphore = name;
    this.limit = limit;
    this.storedLimit = storedLimit;
  }
}

/**
 * The backend key (or node) a lock name maps to holds something no lock writes: application data with
 * no expiry, another type, a foreign value (issue 12: `SET orders:1 '{"x":1}'`, then
 * `acquire('orders:1')` waited forever). Such a key never frees up the way a lock does, so acquire,
 * tryAcquire and holder fail at once and nothing retries it. The data is left untouched. `found`
 * describes what is there, in the backend's terms.
 */
export class KeyConflictError<Found = unknown> extends LockError {
  /** The lock name as the caller gave it. */
  readonly key: string;
  /** The backend key holding the data (with its prefix), or the name's auxiliary key (a counter). */
  readonly backendKey: string;
  readonly found: Found;
  constructor(key: string, backendKey: string, found: Found, description: string) {
    super('KEY_CONFLICT', `lock "${key}" cannot use ${backendKey}: ${description}`);
    this.key = key;
    this.backendKey = backendKey;
    this.found = found;
  }
}

/** The provider does not offer this primitive (for example a semaphore on etcd's `provider.election`). */
export class UnsupportedError extends LockError {
  readonly operation: string;
  constructor(backend: string, operation: string, hint: string) {
    super('UNSUPPORTED', `the ${backend} provider does not support ${operation}: ${hint}`);
    this.operation = operation;
  }
}

/** A caller passed a value outside what is allowed. */
export class InvalidArgumentError extends LockError {
  readonly field: string;
  readonly value: unknown;
  /** What the field allows, in words. */
  readonly allowed: string;
  constructor(field: string, value: unknown, allowed: string) {
    super('INVALID_ARGUMENT', `invalid ${field}: ${describeValue(value)} (allowed: ${allowed})`);
    this.field = field;
    this.value = value;
    this.allowed = allowed;
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
  // JSON.stringify would print NaN and ±Infinity as null.
  if (typeof value === 'number') return String(value);
  if (typeof value === 'function') return 'a function';
  try {
    return String(JSON.stringify(value) ?? value);
  } catch {
    return String(value);
  }
}
