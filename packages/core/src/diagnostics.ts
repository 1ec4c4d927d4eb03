import { channel, tracingChannel } from 'node:diagnostics_channel';
import type { Lease } from './contract.js';

/**
 * dlock's events on `node:diagnostics_channel`, the platform's standard for library instrumentation
 * (undici and Node's own http publish the same way). Nothing is built or sent when nobody subscribes.
 * This module is the only publisher; drivers never publish. `@dlock/opentelemetry` turns these into
 * metrics and spans, and anyone can subscribe directly:
 *
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe('dlock:lease:lost', (message) => console.warn('lost', message));
 * ```
 *
 * Message shapes are the exported interfaces below; every duration is in ms and says so in its name.
 */

/** What a lease is: a lock, a semaphore permit, or one side of a read-write lock. */
export type LeaseKind = 'lock' | 'permit' | 'read' | 'write';

/** How an acquire ended. */
export type AcquireOutcome =
  | 'granted'
  | 'busy'
  | 'timeout'
  | 'aborted'
  | 'unavailable'
  | 'closed'
  | 'invalid';

/** Why a lease's signal aborted. */
export type LostReason =
  /** Its validity window closed without a successful extension (ttl backends). */
  | 'expired'
  /** The driver could no longer vouch for it: session or connection lost. */
  | 'session'
  /** An extension found another owner, or no owner, at the backend. */
  | 'taken-over'
  /** Its provider was closed while it was held. */
  | 'closed';

/** The context object of the `dlock:acquire` tracing channel (start, end, asyncStart, asyncEnd, error). */
export interface AcquireMessage {
  readonly backend: string;
  readonly key: string;
  readonly kind: LeaseKind;
  /** 'wait': acquire (waits up to waitMs); 'try': tryAcquire (one attempt). */
  readonly mode: 'wait' | 'try';
  readonly identity: string;
  /** The caller's waitMs (Infinity when unbounded; 0 for tryAcquire). */
  readonly waitMs: number;
  /** Set when the acquire settles. */
  outcome?: AcquireOutcome;
  /** Time from the call to the outcome (ms). */
  waitedMs?: number;
  /** Attempts sent (transient failures included). */
  tries?: number;
  /** The fencing token, when granted. */
  token?: bigint;
  /** Set by diagnostics_channel on asyncEnd: the lease, or null when busy. */
  result?: unknown;
  /** Set by diagnostics_channel on error. */
  error?: unknown;
}

/** `dlock:lease:released`: a lease was released (the backend confirmed it). */
export interface ReleasedMessage {
  /** The lease, the same object the acquire returned (and `dlock:acquire` carried as its result). */
  readonly lease: Lease;
  readonly backend: string;
  readonly key: string;
  readonly kind: LeaseKind;
  readonly identity: string;
  readonly token: bigint;
  /** From the grant to the confirmed release (ms). */
  readonly heldMs: number;
  /** Release tries it took (1 unless transient failures were retried). */
  readonly tries: number;
}

/** `dlock:lease:release-failed`: release gave up (the lock ends by its ttl or session). */
export interface ReleaseFailedMessage {
  /** The lease, the same object the acquire returned. */
  readonly lease: Lease;
  readonly backend: string;
  readonly key: string;
  readonly kind: LeaseKind;
  readonly identity: string;
  readonly token: bigint;
  readonly error: unknown;
  readonly tries: number;
  /** From the grant to the give-up (ms). */
  readonly heldMs: number;
}

/** `dlock:lease:extended` / `dlock:lease:extend-failed`: one extension, and its result. */
export interface ExtendMessage {
  /** The lease, the same object the acquire returned. */
  readonly lease: Lease;
  readonly backend: string;
  readonly key: string;
  readonly kind: LeaseKind;
  readonly token: bigint;
  readonly ttlMs: number;
  /** Only on extend-failed. */
  readonly error?: unknown;
}

/** `dlock:lease:lost`: a lease's signal aborted. */
export interface LostMessage {
  /** The lease, the same object the acquire returned. */
  readonly lease: Lease;
  readonly backend: string;
  readonly key: string;
  readonly kind: LeaseKind;
  readonly identity: string;
  readonly token: bigint;
  readonly reason: LostReason;
  readonly error: unknown;
  /** From the grant to the loss (ms). */
  readonly heldMs: number;
}

/** `dlock:cleanup`: core undid an unknown outcome or a place in line in the background. */
export interface CleanupMessage {
  readonly backend: string;
  readonly key: string;
  readonly kind: LeaseKind;
  readonly outcome: 'done' | 'gave-up';
  readonly tries: number;
  readonly error?: unknown;
}

/** `dlock:elector:term`: a LeaderElector term started or stopped. */
export interface ElectorTermMessage {
  readonly key: string;
  readonly identity: string;
  readonly event: 'started' | 'stopped';
  readonly token: bigint;
  /** On 'stopped': why the term ended. */
  readonly ending?: string;
  /** On 'stopped': how long the term lasted (ms). */
  readonly termMs?: number;
}

/** The channel names, for subscribers. */
export const channelNames = {
  acquire: 'dlock:acquire',
  released: 'dlock:lease:released',
  releaseFailed: 'dlock:lease:release-failed',
  extended: 'dlock:lease:extended',
  extendFailed: 'dlock:lease:extend-failed',
  lost: 'dlock:lease:lost',
  cleanup: 'dlock:cleanup',
  electorTerm: 'dlock:elector:term',
} as const;

export const acquireChannel = tracingChannel<AcquireMessage, AcquireMessage>(channelNames.acquire);
const releasedChannel = channel(channelNames.released);
const releaseFailedChannel = channel(channelNames.releaseFailed);
const extendedChannel = channel(channelNames.extended);
const extendFailedChannel = channel(channelNames.extendFailed);
const lostChannel = channel(channelNames.lost);
const cleanupChannel = channel(channelNames.cleanup);
const electorTermChannel = channel(channelNames.electorTerm);

/** @internal Each publisher builds its message only when someone listens. */
export const publish = {
  released(message: () => ReleasedMessage): void {
    if (releasedChannel.hasSubscribers) releasedChannel.publish(message());
  },
  releaseFailed(message: () => ReleaseFailedMessage): void {
    if (releaseFailedChannel.hasSubscribers) releaseFailedChannel.publish(message());
  },
  extended(message: () => ExtendMessage): void {
    if (extendedChannel.hasSubscribers) extendedChannel.publish(message());
  },
  extendFailed(message: () => ExtendMessage): void {
    if (extendFailedChannel.hasSubscribers) extendFailedChannel.publish(message());
  },
  lost(message: () => LostMessage): void {
    if (lostChannel.hasSubscribers) lostChannel.publish(message());
  },
  cleanup(message: () => CleanupMessage): void {
    if (cleanupChannel.hasSubscribers) cleanupChannel.publish(message());
  },
  electorTerm(message: () => ElectorTermMessage): void {
    if (electorTermChannel.hasSubscribers) electorTermChannel.publish(message());
  },
};
