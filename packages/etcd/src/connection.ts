import type { EventEmitter } from 'node:events';
import { BackendUnavailableError, type Deadline, LockError, SharedDeadlines, now, pause } from '@dlock/core';
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  type IDuplexStream,
  type IOptions,
  type KVClient,
  isRecoverableError,
} from 'etcd3';

export const BACKEND = 'etcd';

export interface ConnectionSettings {
  readonly hosts: readonly string[];
  readonly callTimeoutMs: number;
  readonly auth: { readonly username: string; readonly password: string } | undefined;
  readonly tls: IOptions['credentials'];
}

/** gRPC call options (etcd3 does not re-export @grpc/grpc-js, which is not a dependency of this package). */
export type CallOptions = NonNullable<Parameters<KVClient['range']>[1]>;
type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;
type Execute = <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) => Promise<T>;

const neverAborted = new AbortController().signal;

/**
 * gRPC's reconnect back-off. etcd3 1.1.2 passes no channel options, so grpc-js uses its defaults: 1 s
 * after the first failed connect, × 1.6 per failure, up to 120 s. After an outage of half a minute a
 * channel then waits up to ~25 s more before it even tries the server that is back, and every call
 * fails fast in the meantime. Capped here so a channel retries its server at least every ~0.6 s
 * (500 ms ± grpc-js's 20 % jitter): "reachable again → usable" within about a second.
 */
const GRPC_CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 500,
};

/** etcd3 only ever calls `execute` on its policies, so that is all these provide. */
function policy(execute: Execute): FaultPolicy {
  return { execute } as unknown as FaultPolicy;
}

/**
 * Per host: no circuit breaker. etcd3's default opens a host's circuit for 5 s after three failures
 * in a row, and a leader election answers every member's calls with transient errors for a moment,
 * so the default would shut out the healthy members right when they are needed.
 */
const passThrough = policy(async (fn) => fn({ signal: neverAborted }));

/**
 * Across hosts: a call that failed on one member for a transport reason is tried on another (etcd3
 * picks a new host per try). Bounded by `tries`; the per-call deadline bounds it in time, since every
 * try carries the same absolute deadline. Only idempotent requests are sent (see queue.ts).
 */
function failover(tries: number): FaultPolicy {
  return policy(async (fn) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn({ signal: neverAborted });
      } catch (error) {
        if (attempt >= tries || !(error instanceof Error) || !isRecoverableError(error)) throw error;
        await pause(50 * attempt);
      }
    }
  });
}

/** A unary call in flight: its local deadline, and what to do when it passes. */
type PendingCall = Deadline;

/**
 * One etcd3 client with a deadline on every call. etcd3 ignores its `dialTimeout` option and, by
 * default, lets a unary call to a dead server wait forever, so every unary request goes through
 * `call`, which gives it a gRPC deadline and a local timer of `callTimeoutMs`.
 */
export class EtcdConnection {
  readonly client: Etcd3;
  readonly address: string;
  readonly callTimeoutMs: number;
  /** Unary calls in flight, each with its local deadline. */
  readonly #pending = new Set<PendingCall>();
  /**
   * One timer for the local deadlines of every call in flight, rather than a setTimeout and a
   * clearTimeout per call: every call has the same callTimeoutMs, so the timer armed for the oldest
   * call is rarely re-armed. (A timer per call emptied and re-created Node's timer list for that
   * duration on every call: about 7 µs of a 2 ms acquire + release, issue 13.)
   */
  readonly #deadlines = new SharedDeadlines(this.#pending);

  constructor(settings: ConnectionSettings) {
    this.address = settings.hosts.join(',');
    this.callTimeoutMs = settings.callTimeoutMs;
    const callTimeoutMs = settings.callTimeoutMs;
    this.client = new Etcd3({
      hosts: [...settings.hosts],
      ...(settings.auth ? { auth: { ...settings.auth } } : {}),
      ...(settings.tls ? { credentials: settings.tls } : {}),
      grpcOptions: GRPC_CHANNEL_OPTIONS,
      // Also bounds the password-to-token exchange, which etcd3 runs before the first call.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      faultHandling: { host: () => passThrough, global: failover(settings.hosts.length + 1) },
    });
  }

  /**
   * Runs one unary request with a deadline. Rejects BackendUnavailableError naming the hosts when the
   * cluster does not answer in time or answers with an error (transient unless it is an authentication
   * or permission failure); EtcdLeaseInvalidError passes through untranslated because its callers turn
   * it into a lost session.
   *
   * The deadline rejects the one promise returned here and nothing else: the request's own late
   * failure settles a promise that has already settled, so no rejection is ever left unhandled
   * (issue 12 #4 was a test that left its own `.then()` chain unawaited while the acquire rejected).
   */
  call<T>(what: string, request: (options: CallOptions) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: PendingCall = {
        dueAt: now() + this.callTimeoutMs,
        deadlinePassed: () => {
          if (this.#settle(pending)) reject(this.#noAnswer(what));
        },
      };
      this.#pending.add(pending);
      this.#deadlines.schedule(pending);
      const failed = (error: unknown) => {
        if (this.#settle(pending)) {
          reject(error instanceof EtcdLeaseInvalidError ? error : this.unavailable(what, error));
        }
      };
      try {
        request({ deadline: Date.now() + this.callTimeoutMs }).then((value) => {
          if (this.#settle(pending)) resolve(value);
        }, failed);
      } catch (error) {
        failed(error);
      }
    });
  }

  /** Whether `call` was still pending (and so is the one to settle its promise). */
  #settle(call: PendingCall): boolean {
    if (!this.#pending.delete(call)) return false;
    this.#deadlines.left();
    return true;
  }

  /** The typed error for a failed request (LockErrors pass through). */
  unavailable(what: string, error: unknown): LockError {
    if (error instanceof LockError) return error;
    if (error instanceof GRPCDeadlineExceededError) return this.#noAnswer(what, error);
    return new BackendUnavailableError(BACKEND, this.address, `${what}: ${describeFailure(error)}`, {
      cause: error,
      transient: !isPermanent(error),
    });
  }

  close(): void {
    this.client.close();
  }

  #noAnswer(what: string, cause?: unknown): BackendUnavailableError {
    return new BackendUnavailableError(
      BACKEND,
      this.address,
      `${what}: no answer within callTimeoutMs=${this.callTimeoutMs}`,
      { cause },
    );
  }
}

/** Failures that repeat until someone changes the credentials or the cluster's roles. */
function isPermanent(error: unknown): boolean {
  return (
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdPermissionDeniedError ||
    error instanceof GRPCUnauthenticatedError
  );
}

/**
 * The part of an etcd3 / grpc-js error text a user can act on. grpc-js ends a failed connect with
 * "Resolution note: " and nothing after it, prefixes the numeric status code, and etcd3 asks to report
 * its internal errors upstream; none of that helps whoever reads a lock error (issue 16).
 */
export function describeFailure(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  const cleaned = text
    .replace(/\s*Please report this error at \S+/g, '')
    .replace(/\.?\s*Resolution note:\s*\.?\s*$/, '')
    .replace(/^\d+ [A-Z_]+: /, '')
    .replace(/^No connection established\. Last error: (?:Error: )?/, 'no connection: ')
    .trim();
  return cleaned === '' ? (error instanceof Error ? error.name : 'unknown failure') : cleaned;
}

/**
 * Closes a gRPC stream dlock no longer uses. etcd3 listens for errors on every stream it opens and,
 * while the stream is writable, takes any error — the CANCELLED status of a stream closed on purpose
 * included — for a failed host and resets all of that host's service clients (`markFailed`); that
 * listener is replaced by one that ignores the stream's last error. The stream is cancelled without
 * being ended first: a half-close followed at once by the reset made Node's http2 layer spin forever
 * inside `rstStream` (nghttp2_session_pack_data), blocking the event loop.
 */
/**
 * Ends a LeaseKeepAlive stream without resetting it: the client half-closes, and etcd ends the call
 * (its keepalive loop returns on the client's end of stream), so no RST_STREAM is sent. Cancelling a
 * keepalive stream — Node's `Http2Stream.close()` half-closes and then resets at once — made Node
 * 20's http2 layer spin forever inside `rstStream` (`SendPendingData`, memory growing by gigabytes)
 * when another call shared the HTTP/2 connection: reproduced by closing two providers with
 * LeaderElectors on one etcd, about one run in two on a loaded machine. A stream still open after
 * `fallbackMs` (a member that stopped answering) is cancelled after all.
 */
export function endStream(stream: IDuplexStream<unknown, unknown>, fallbackMs: number): void {
  const emitter = stream as unknown as EventEmitter;
  emitter.removeAllListeners('error');
  stream.on('error', () => {});
  const fallback = setTimeout(() => closeStream(stream), fallbackMs).unref();
  const ended = () => clearTimeout(fallback);
  for (const event of ['end', 'close', 'status']) emitter.once(event, ended);
  emitter.removeAllListeners('data');
  (stream as unknown as { resume(): void }).resume();
  try {
    stream.end();
  } catch {
    closeStream(stream);
  }
}

export function closeStream(stream: IDuplexStream<unknown, unknown>): void {
  // etcd3 types its streams narrowly; at run time they are grpc-js ClientDuplexStreams (EventEmitters).
  (stream as unknown as EventEmitter).removeAllListeners('error');
  stream.on('error', () => {});
  try {
    stream.cancel();
  } catch {
    // Already closed.
  }
}
