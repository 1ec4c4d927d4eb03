import { BackendUnavailableError } from '@dlock/core';
import type { RedisClient } from './scripts.js';

const AUTH_FAILURE = /^(WRONGPASS|NOAUTH|NOPERM|ERR invalid password|ERR AUTH)/;

export interface ConnectionOptions {
  readonly client: RedisClient;
  /** True when this provider created the client (from a URL) and so must close it. */
  readonly owned: boolean;
  /** Where the server is, for error messages: host:port, never credentials. */
  readonly address: string;
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
}

/**
 * The provider's command connection. Every command goes through `run`, which bounds both the wait for
 * a usable connection (connectTimeoutMs) and the command itself (commandTimeoutMs), whatever retry and
 * offline-queue settings the client has, and turns every failure into BackendUnavailableError.
 */
export class RedisConnection {
  readonly client: RedisClient;
  readonly address: string;
  readonly #owned: boolean;
  readonly #connectTimeoutMs: number;
  readonly #commandTimeoutMs: number;
  #lastError: Error | undefined;
  #closedConnections = 0;
  readonly #lossListeners = new Set<(reason: Error) => void>();
  #readiness: Promise<void> | undefined;
  readonly #onError = (error: Error) => {
    this.#lastError = error;
  };
  readonly #onReady = () => {
    this.#lastError = undefined;
  };
  readonly #onClose = () => {
    this.#closedConnections++;
    const reason = this.closedError();
    for (const listener of this.#lossListeners) listener(reason);
  };

  constructor(options: ConnectionOptions) {
    this.client = options.client;
    this.address = options.address;
    this.#owned = options.owned;
    this.#connectTimeoutMs = options.connectTimeoutMs;
    this.#commandTimeoutMs = options.commandTimeoutMs;
    // Also keeps ioredis from printing "Unhandled error event" for every failed reconnect.
    this.client.on('error', this.#onError);
    this.client.on('ready', this.#onReady);
    this.client.on('close', this.#onClose);
  }

  /** Changes whenever a connection closes: a grant whose attempt saw another epoch may be on a dead one. */
  get epoch(): number {
    return this.#closedConnections;
  }

  closedError(): Error {
    return new Error(`the connection to redis at ${this.address} closed`);
  }

  /** Calls `listener` every time the connection closes (ioredis may then reconnect). */
  onConnectionLost(listener: (reason: Error) => void): void {
    this.#lossListeners.add(listener);
  }

  /**
   * Runs `command` once the connection is ready. When the command outlives commandTimeoutMs the caller
   * gets BackendUnavailableError at once, and a result that still arrives later goes to `onLateResult`
   * (so an acquire that succeeded after the caller was told it failed can be undone).
   */
  async run<T>(
    operation: string,
    command: (client: RedisClient) => Promise<T>,
    onLateResult?: (result: T) => void,
  ): Promise<T> {
    if (this.client.status !== 'ready') await this.#whenReady(operation);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(this.#unavailable(operation, `no reply within commandTimeoutMs=${this.#commandTimeoutMs}`));
      }, this.#commandTimeoutMs);
      const onReply = (result: T) => {
        if (settled) return onLateResult?.(result);
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const onError = (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(this.#unavailable(operation, describe(error), error));
      };
      try {
        command(this.client).then(onReply, onError);
      } catch (error) {
        onError(error);
      }
    });
  }

  async close(): Promise<void> {
    this.#lossListeners.clear();
    this.client.off('error', this.#onError);
    this.client.off('ready', this.#onReady);
    this.client.off('close', this.#onClose);
    // A client the application handed in is the application's to close.
    if (!this.#owned) return;
    if (this.client.status === 'ready') {
      const quitTimer = setTimeout(() => this.client.disconnect(), this.#commandTimeoutMs);
      await this.client.quit().catch(() => this.client.disconnect());
      clearTimeout(quitTimer);
    } else {
      this.client.disconnect();
    }
  }

  #whenReady(operation: string): Promise<void> {
    const { client } = this;
    if (client.status === 'ready') return Promise.resolve();
    if (client.status === 'end') {
      return Promise.reject(
        this.#unavailable(operation, `the connection was closed${this.#lastErrorDetail()}`),
      );
    }
    // A rejected password does not fix itself on the next reconnect: fail now, not at the timeout.
    if (this.#lastError && AUTH_FAILURE.test(this.#lastError.message)) {
      return Promise.reject(this.#unavailable(operation, this.#lastError.message, this.#lastError));
    }
    if (client.status === 'wait') client.connect().catch(() => {});
    // One wait per connection attempt, shared by every command queued behind it: hundreds of waiters
    // must not each hang listeners on the (possibly the application's own) client.
    this.#readiness ??= this.#waitUntilReady().finally(() => {
      this.#readiness = undefined;
    });
    return this.#readiness.catch((failure: ReadinessFailure) => {
      throw this.#unavailable(operation, failure.detail, failure.cause);
    });
  }

  #waitUntilReady(): Promise<void> {
    const { client } = this;
    return new Promise((resolve, reject) => {
      const settle = (failure?: ReadinessFailure) => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('error', onError);
        client.off('end', onEnd);
        if (failure) reject(failure);
        else resolve();
      };
      const onReady = () => settle();
      const onError = (error: Error) => {
        if (AUTH_FAILURE.test(error.message)) settle({ detail: error.message, cause: error });
      };
      const onEnd = () => settle({ detail: `the connection was closed${this.#lastErrorDetail()}` });
      const timer = setTimeout(
        () =>
          settle({
            detail: `not connected within connectTimeoutMs=${this.#connectTimeoutMs}${this.#lastErrorDetail()}`,
          }),
        this.#connectTimeoutMs,
      );
      client.on('ready', onReady);
      client.on('error', onError);
      client.on('end', onEnd);
    });
  }

  #lastErrorDetail(): string {
    return this.#lastError ? ` (last error: ${this.#lastError.message})` : '';
  }

  #unavailable(operation: string, detail: string, cause?: unknown): BackendUnavailableError {
    return new BackendUnavailableError('redis', this.address, `${operation}: ${detail}`, { cause });
  }
}

interface ReadinessFailure {
  readonly detail: string;
  readonly cause?: unknown;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
