import { InvalidArgumentError } from './errors.js';

/** A lock key: a non-empty string of at most `maxKeyBytes` UTF-8 bytes. */
export function validateKey(key: unknown, maxKeyBytes: number): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidArgumentError('key', key, 'a non-empty string');
  }
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > maxKeyBytes) {
    throw new InvalidArgumentError('key', key, `at most ${maxKeyBytes} UTF-8 bytes, got ${bytes}`);
  }
}

/** A finite number of milliseconds, at least `min`. */
export function validateDuration(field: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(field, value, `a finite number of milliseconds >= ${min}`);
  }
}

export function validateOptionalDuration(field: string, value: unknown, min: number): void {
  if (value !== undefined) validateDuration(field, value, min);
}

export function validateSignal(field: string, value: unknown): asserts value is AbortSignal | undefined {
  if (value !== undefined && !(value instanceof AbortSignal)) {
    throw new InvalidArgumentError(field, value, 'an AbortSignal');
  }
}

export function validateIdentity(value: unknown): asserts value is string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value.length === 0 || value.length > 512)) {
    throw new InvalidArgumentError('identity', value, 'a non-empty string of at most 512 chars');
  }
}
