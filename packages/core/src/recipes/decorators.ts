import type { LockProvider } from '../contract.js';
import { InvalidArgumentError } from '../errors.js';
import { validateKey } from '../validation.js';
import {
  type ExclusiveGuard,
  type ExclusiveRunOptions,
  runExclusive,
  validateExclusiveRunOptions,
} from './exclusive-run.js';
import { LeaderElector } from './leader-elector.js';
import { type SynchronizedOptions, runSynchronized, validateSynchronizedOptions } from './synchronized.js';

/** What the decorators read of their context (the parts that do not depend on the class type). */
type MethodContext = Pick<ClassMethodDecoratorContext, 'kind' | 'name' | 'private' | 'static'>;

/** The provider itself, or a function reading it from the instance (`(self) => self.locks`). */
export type ProviderSource<This> = LockProvider | ((self: This) => LockProvider);

export interface SynchronizedLockOptions extends SynchronizedOptions {
  /** The lock key. Default: `ClassName.methodName` of the class that declares the method. */
  key?: string;
}

export interface SchedulerLockOptions<This> extends ExclusiveRunOptions {
  /** The job's lock key. Default: `ClassName.methodName` of the class that declares the method. */
  name?: string;
  /** The elector whose leader decides (mode 'followers', or 'leader' to run only on the leader). */
  elector?: LeaderElector | ((self: This) => LeaderElector);
}

/**
 * `@synchronizedLock(provider, { holdDurationMs })` on an async method — Java's @SynchronizedLock: at
 * most one call of it runs at a time across the cluster; see synchronized(). The lease is
 * currentLease() inside the method.
 */
export function synchronizedLock<This>(source: ProviderSource<This>, options: SynchronizedLockOptions) {
  validateSource(source);
  validateSynchronizedOptions(options);
  const { key: explicitKey, ...lockOptions } = options;
  if (explicitKey !== undefined) validateKey(explicitKey, Number.POSITIVE_INFINITY);
  return <A extends unknown[], R>(
    method: (this: This, ...args: A) => Promise<R>,
    context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>,
  ): ((this: This, ...args: A) => Promise<R>) => {
    requireNameable(context, explicitKey, 'key');
    let key = explicitKey;
    const replacement = function (this: This, ...args: A): Promise<R> {
      key ??= declaringMethodKey(this, replacement, context);
      return runSynchronized(resolveProvider(source, this), key, lockOptions, () => method.apply(this, args));
    };
    return replacement;
  };
}

/**
 * `@schedulerLock(provider, { mode, lockAtMostForMs, lockAtLeastForMs })` on a method a scheduler calls
 * — Java's @SchedulerLock: a call runs the method only where `mode` allows (see scheduleExclusive) and,
 * in mode 'leader', only when the job's lock is free — otherwise the call returns without running it.
 * It rejects with the method's error, or LockLostError when the lock was lost while it ran.
 */
export function schedulerLock<This>(source: ProviderSource<This>, options: SchedulerLockOptions<This>) {
  validateSource(source);
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object');
  }
  const { elector } = options;
  if (elector !== undefined && typeof elector !== 'function' && !(elector instanceof LeaderElector)) {
    throw new InvalidArgumentError('elector', elector, 'a LeaderElector or a function returning one');
  }
  const mode = validateExclusiveRunOptions(options, elector !== undefined);
  if (options.name !== undefined) validateKey(options.name, Number.POSITIVE_INFINITY);
  return <A extends unknown[]>(
    method: (this: This, ...args: A) => void | Promise<void>,
    context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => void | Promise<void>>,
  ): ((this: This, ...args: A) => Promise<void>) => {
    requireNameable(context, options.name, 'name');
    let name = options.name;
    const never = new AbortController().signal;
    const replacement = async function (this: This, ...args: A): Promise<void> {
      name ??= declaringMethodKey(this, replacement, context);
      const guard: ExclusiveGuard = {
        provider: resolveProvider(source, this),
        name,
        mode,
        lockAtMostForMs: options.lockAtMostForMs ?? 0,
        lockAtLeastForMs: options.lockAtLeastForMs ?? 0,
        identity: options.identity,
      };
      const resolvedElector = typeof elector === 'function' ? elector(this) : elector;
      await runExclusive(guard, resolvedElector, never, () => method.apply(this, args));
    };
    return replacement;
  };
}

function validateSource(source: unknown): void {
  const isProvider = typeof source === 'object' && source !== null && 'acquire' in source;
  if (!isProvider && typeof source !== 'function') {
    throw new InvalidArgumentError('provider', source, 'a LockProvider or a function returning one');
  }
}

function resolveProvider<This>(source: ProviderSource<This>, self: This): LockProvider {
  return typeof source === 'function' ? source(self) : source;
}

function requireNameable(context: MethodContext, explicit: string | undefined, field: string): void {
  if (context.kind !== 'method') {
    throw new InvalidArgumentError('decorator target', context.kind, 'a class method');
  }
  if (explicit === undefined && context.private) {
    throw new InvalidArgumentError(
      field,
      undefined,
      `given explicitly for the private method ${String(context.name)}`,
    );
  }
}

/**
 * `ClassName.methodName` of the class that declares the method — found by walking from the receiver
 * to the prototype (or constructor, for static methods) that owns this very function, so a call
 * through a subclass instance uses the same key as one through the base class.
 */
function declaringMethodKey(self: unknown, replacement: unknown, context: MethodContext): string {
  let owner: unknown = context.static ? self : Object.getPrototypeOf(self);
  while ((typeof owner === 'object' && owner !== null) || typeof owner === 'function') {
    if (Object.getOwnPropertyDescriptor(owner, context.name)?.value === replacement) break;
    owner = Object.getPrototypeOf(owner);
  }
  const declaringClass = context.static ? owner : (owner as { constructor?: unknown } | null)?.constructor;
  const className = typeof declaringClass === 'function' ? declaringClass.name : '';
  if (!className) {
    throw new InvalidArgumentError(
      'key',
      undefined,
      `given explicitly: the class declaring ${String(context.name)} has no name`,
    );
  }
  return `${className}.${String(context.name)}`;
}
