import { BackendUnavailableError } from '@dlock/core';
import { ReplyError } from 'ioredis';
import type { RedisClient } from './scripts.js';

const AUTH_FAILURE = /^(WRONGPASS|NOAUTH|NOPERM|ERR invalid password|ERR AUTH)/;
/**
 * Other error replies that come back the same until someone changes the server, the ACL or dlock: a
 * command or script the server does not run, keys in different Cluster slots.
 */
const PERMANENT_REPLY =
  /^(ERR unknown command|ERR Error compiling script|ERR Error running script|ERR user_script|CROSSSLOT)/;
/** ioredis, with enableOfflineQueue off, when the socket is not writable: the command was not sent. */
const NOT_WRITABLE = "Stream isn't writeable";

/** Failures of commands that were written and got no reply. */
const unansweredFailures = new WeakSet<BackendUnavailableError>();

function unanswered(error: BackendUnavailableError): BackendUnavailableError {
  unansweredFailures.add(error);
  return error;
}

/**
 * True when `error` is a failure of `RedisConnection.run` whose command was written but got no reply
 * (timeout, connection closed with it in flight): the server may or may not have applied it.
 */
export function mayHaveBeenApplied(error: unknown): boolean {
  return error instanceof BackendUnavailableError && unansweredFailures.has(error);
}

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
   * Runs `command` once the connection is ready, and turns every failure into BackendUnavailableError.
   * Whether the command may have been applied is part of the failure (see `mayHaveBeenApplied`):
   * - not connected within connectTimeoutMs, a refused password, the request over (`signal` aborted)
   *   before the connection was ready, a stream that would not take the write: never sent, so not
   *   applied;
   * - an error reply: the server answered and refused (dlock's scripts write nothing before the
   *   first write Redis may refuse), so not applied; non-transient for authentication, ACL and
   *   unknown-command replies, transient otherwise (READONLY after a failover, OOM, LOADING, BUSY);
   * - written, and no reply within commandTimeoutMs or the connection closed with it in flight: it
   *   may have been applied. The reply, should it still come, is dropped: what a command obtained is
   *   undone by what was sent (the owner prefix), through core's withdraw, on this same connection —
   *   Redis runs one connection's commands in order, so a clean-up always runs after the command it
   *   cleans up; after a close, what the server had received on the old connection is run (or dropped)
   *   before the client's reconnect back-off is over, and nothing is replayed on the new one.
   */
  async run<T>(
    operation: string,
    command: (client: RedisClient) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    if (this.client.status !== 'ready') await this.#whenReady(operation);
    if (signal?.aborted) throw this.#unavailable(operation, 'not sent: the request ended while connecting');
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const fail = (error: BackendUnavailableError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
      };
      const timer = setTimeout(
        () =>
          fail(
            unanswered(
              this.#unavailable(operation, `no reply within commandTimeoutMs=${this.#commandTimeoutMs}`),
            ),
          ),
        this.#commandTimeoutMs,
      );
      const onReply = (result: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      try {
        command(this.client).then(onReply, (error: unknown) => fail(this.#failure(operation, error)));
      } catch (error) {
        // Thrown before ioredis queued anything: not sent.
        fail(this.#unavailable(operation, describe(error), error));
      }
    });
  }

  /** Classifies a failed command: refused by the server, never sent, or sent without a reply. */
  #failure(operation: string, error: unknown): BackendUnavailableError {
    const detail = describe(error);
    if (error instanceof ReplyError) {
      const permanent = AUTH_FAILURE.test(detail) || PERMANENT_REPLY.test(detail);
      return this.#unavailable(operation, detail, error, !permanent);
    }
    if (detail.startsWith(NOT_WRITABLE)) return this.#unavailable(operation, detail, error);
    return unanswered(this.#unavailable(operation, `${detail} (sent; no reply)`, error));
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
    // A client that ended does not reconnect by itself, and a rejected password does not fix itself
    // on the next reconnect: fail now (not at the timeout), and tell core that retrying will not help.
    if (client.status === 'end') {
      return Promise.reject(
        this.#unavailable(operation, `the connection was closed${this.#lastErrorDetail()}`, undefined, false),
      );
    }
    if (this.#lastError && AUTH_FAILURE.test(this.#lastError.message)) {
      return Promise.reject(this.#unavailable(operation, this.#lastError.message, this.#lastError, false));
    }
    if (client.status === 'wait') client.connect().catch(() => {});
    // One wait per connection attempt, shared by every command queued behind it: hundreds of waiters
    // must not each hang listeners on the (possibly the application's own) client.
    this.#readiness ??= this.#waitUntilReady().finally(() => {
      this.#readiness = undefined;
    });
    return this.#readiness.catch((failure: ReadinessFailure) => {
      throw this.#unavailable(operation, failure.detail, failure.cause, failure.transient);
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
        if (AUTH_FAILURE.test(error.message)) {
          settle({ detail: error.message, cause: error, transient: false });
        }
      };
      const onEnd = () =>
        settle({ detail: `the connection was closed${this.#lastErrorDetail()}`, transient: false });
      const timer = setTimeout(
        () =>
          settle({
            detail: `not connected within connectTimeoutMs=${this.#connectTimeoutMs}${this.#lastErrorDetail()}`,
            transient: true,
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

  #unavailable(
    operation: string,
    detail: string,
    cause?: unknown,
    transient = true,
  ): BackendUnavailableError {
    return new BackendUnavailableError('redis', this.address, `${operation}: ${detail}`, {
      cause,
      transient,
    });
  }
}

interface ReadinessFailure {
  readonly detail: string;
  readonly cause?: unknown;
  readonly transient: boolean;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
