import { BackendUnavailableError, LockError, pause } from '@dlock/core';
import { Etcd3, EtcdLeaseInvalidError, type IOptions, type KVClient, isRecoverableError } from 'etcd3';

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

/**
 * One etcd3 client with a deadline on every call. etcd3 ignores its `dialTimeout` option and, by
 * default, lets a unary call to a dead server wait forever, so every unary request goes through
 * `call`, which gives it a gRPC deadline and a local timer of `callTimeoutMs`.
 */
export class EtcdConnection {
  readonly client: Etcd3;
  readonly address: string;
  readonly callTimeoutMs: number;

  constructor(settings: ConnectionSettings) {
    this.address = settings.hosts.join(',');
    this.callTimeoutMs = settings.callTimeoutMs;
    const callTimeoutMs = settings.callTimeoutMs;
    this.client = new Etcd3({
      hosts: [...settings.hosts],
      ...(settings.auth ? { auth: { ...settings.auth } } : {}),
      ...(settings.tls ? { credentials: settings.tls } : {}),
      // Also bounds the password-to-token exchange, which etcd3 runs before the first call.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      faultHandling: { host: () => passThrough, global: failover(settings.hosts.length + 1) },
    });
  }

  /**
   * Runs one unary request with a deadline. Rejects BackendUnavailableError naming the hosts when the
   * cluster does not answer in time or answers with an error; EtcdLeaseInvalidError passes through
   * untranslated because its callers turn it into a lost session.
   */
  async call<T>(what: string, request: (options: CallOptions) => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new BackendUnavailableError(
              BACKEND,
              this.address,
              `${what}: no answer within callTimeoutMs=${this.callTimeoutMs}`,
            ),
          ),
        this.callTimeoutMs,
      );
    });
    try {
      return await Promise.race([request({ deadline: Date.now() + this.callTimeoutMs }), timedOut]);
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) throw error;
      throw this.unavailable(what, error);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The typed error for a failed request (LockErrors pass through). */
  unavailable(what: string, error: unknown): unknown {
    if (error instanceof LockError) return error;
    const detail = error instanceof Error ? error.message : String(error);
    return new BackendUnavailableError(BACKEND, this.address, `${what}: ${detail}`, { cause: error });
  }

  close(): void {
    this.client.close();
  }
}
