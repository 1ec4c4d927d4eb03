/**
 * The part of `redlock@5.0.0-beta.2` dlock uses. The package ships `dist/index.d.ts`, but its `exports`
 * map has no `types` condition, so TypeScript's NodeNext resolution cannot find it. Only this package's
 * sources see these declarations: nothing from 'redlock' appears in dlock's public types.
 */
declare module 'redlock' {
  import type { EventEmitter } from 'node:events';
  import type { Redis } from 'ioredis';

  /** How the nodes voted on one operation. Resolves once every node has answered (or failed). */
  export interface ExecutionStats {
    readonly membershipSize: number;
    readonly quorumSize: number;
    readonly votesFor: Set<Redis>;
    /** Node → why it voted against: ResourceLockedError when the script refused, else its transport error. */
    readonly votesAgainst: Map<Redis, Error>;
  }

  export interface ExecutionResult {
    readonly attempts: ReadonlyArray<Promise<ExecutionStats>>;
  }

  export interface Settings {
    readonly driftFactor: number;
    readonly retryCount: number;
    readonly retryDelay: number;
    readonly retryJitter: number;
    readonly automaticExtensionThreshold: number;
  }

  /** A node's script answered that the key is held under another value (or, for extend/release, not ours). */
  export class ResourceLockedError extends Error {}

  /** The operation did not reach a quorum. `attempts` is empty when extend refused a lock past its expiration. */
  export class ExecutionError extends Error {
    readonly attempts: ReadonlyArray<Promise<ExecutionStats>>;
  }

  export class Lock {
    readonly resources: string[];
    readonly value: string;
    readonly attempts: ReadonlyArray<Promise<ExecutionStats>>;
    /** Date.now()-based; dlock keeps its own monotonic validity instead. */
    expiration: number;
  }

  /** Its own types also allow a plain string, which the code silently ignores: only functions apply. */
  export interface ScriptOverrides {
    readonly acquireScript?: (script: string) => string;
    readonly extendScript?: (script: string) => string;
    readonly releaseScript?: (script: string) => string;
  }

  export default class Redlock extends EventEmitter {
    constructor(clients: Iterable<Redis>, settings?: Partial<Settings>, scripts?: ScriptOverrides);
    /** Private in the library's own types; dlock overrides it to choose the owner value (see library.ts). */
    protected _random(): string;
    acquire(resources: string[], duration: number, settings?: Partial<Settings>): Promise<Lock>;
    extend(existing: Lock, duration: number, settings?: Partial<Settings>): Promise<Lock>;
    release(lock: Lock, settings?: Partial<Settings>): Promise<ExecutionResult>;
  }
}
