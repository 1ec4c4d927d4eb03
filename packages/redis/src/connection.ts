import { BackendUnavailableError, now } from '@dlock/core';
import { Command, type Redis, ReplyError } from 'ioredis';
import type { LuaScript, RedisClient } from './scripts.js';

const AUTH_FAILURE = /^(WRONGPASS|NOAUTH|NOPERM|ERR invalid password|ERR AUTH)/;
/**
 * Other error replies that come back the same until someone changes the server, the ACL or dlock: a
 * command or script the server does not run, keys in different Cluster slots.
 */
const PERMANENT_REPLY =
  /^(ERR unknown command|ERR Error compiling script|ERR Error running script|ERR user_script|CROSSSLOT)/;
/** ioredis, with enableOfflineQueue off, when the socket is not writable: the command was not sent. */
const NOT_WRITABLE = "Stream isn't writeable";

/** What dlock says for NOT_WRITABLE (ioredis' text names an option dlock sets, not the user). */
const NOT_SENT_DOWN = 'not sent: the connection was down';
/**
 * ioredis' MaxRetriesPerRequestError ("Reached the max retries per request limit (which is 0). Refer
 * to "maxRetriesPerRequest" option") and "Connection is closed.": the connection closed with the
 * command written and unanswered (dlock runs its scripts only on a ready connection, with
 * maxRetriesPerRequest 0 and no resend on reconnect), so the server may have applied it.
 */
const CLOSED_IN_FLIGHT = 'the connection closed before the reply arrived';

/** An ioredis failure of a written command, in dlock's words where ioredis' names its own options. */
function inDlockWords(error: unknown, detail: string): string {
  const name = error instanceof Error ? error.name : '';
  if (name === 'MaxRetriesPerRequestError' || detail === 'Connection is closed.') return CLOSED_IN_FLIGHT;
  return detail;
}

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
  readonly #deadlines: ReplyDeadlines;
  readonly #commandOptions: { readonly replyEncoding: 'utf8'; readonly keyPrefix: string | undefined };
  #lastError: Error | undefined;
  #closedConnections = 0;
  readonly #lossListeners = new Set<(reason: Error) => void>();
  #readiness: Promise<void> | undefined;
  /** A connect attempt failed since the connection was last ready: the server is down, not blipping. */
  #connectFailed = false;
  readonly #onError = (error: Error) => {
    this.#lastError = error;
    // An error of a ready connection (ECONNRESET) precedes its close; one in any other state is a
    // connect attempt that failed (refused, timed out, rejected at the ready check).
    if (this.client.status !== 'ready') this.#connectFailed = true;
  };
  readonly #onReady = () => {
    this.#lastError = undefined;
    this.#connectFailed = false;
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
    // What ioredis' generated `evalsha` would pass to its Command for this client.
    this.#commandOptions = {
      replyEncoding: 'utf8',
      keyPrefix: (this.client as Redis).options?.keyPrefix,
    } as const;
    this.#deadlines = new ReplyDeadlines(options.commandTimeoutMs, (operation) =>
      unanswered(this.#unavailable(operation, `no reply within commandTimeoutMs=${this.#commandTimeoutMs}`)),
    );
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
   * Runs `script` (EVALSHA; EVAL when the server does not have it cached: first use, a restart,
   * SCRIPT FLUSH, a failover) once the connection is ready, and turns every failure into
   * BackendUnavailableError. Whether the script may have been applied is part of the failure (see
   * `mayHaveBeenApplied`):
   * - not connected within connectTimeoutMs, a refused password, the request over (`request.signal`
   *   aborted: the wait for the connection is raced with it, and its listener removed after) before the
   *   connection was ready, a request already over when called (a withdraw) while connects to the
   *   server fail, a stream that would not take the write: never sent, so not applied;
   * - an error reply: the server answered and refused (dlock's scripts write nothing before the
   *   first write Redis may refuse), so not applied; non-transient for authentication, ACL and
   *   unknown-command replies, transient otherwise (READONLY after a failover, OOM, LOADING, BUSY);
   * - written, and no reply within commandTimeoutMs or the connection closed with it in flight: it
   *   may have been applied. The reply, should it still come, is dropped: what a command obtained is
   *   undone by what was sent (the owner prefix), through core's withdraw, on this same connection —
   *   Redis runs one connection's commands in order, so a clean-up always runs after the command it
   *   cleans up; after a close, what the server had received on the old connection is run (or dropped)
   *   before the client's reconnect back-off is over, and nothing is replayed on the new one.
   *
   * `tracker.inFlight` counts the scripts written and not yet answered (or failed). The script is sent
   * with ioredis' own Command (not through its generated `evalsha` method, whose argument flattening
   * and wrapper cost more than the rest of the call), with the client's key prefix as that method
   * would apply it; the command timeout is one timer per connection, not one per command.
   */
  script(
    operation: string,
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    request?: { readonly signal: AbortSignal },
    tracker?: { inFlight: number },
  ): Promise<unknown> {
    if (this.client.status !== 'ready') {
      if (!request?.signal.aborted) {
        return this.#scriptWhenReady(operation, script, keys, args, request?.signal, tracker);
      }
      // Sent for a request that is over (core's withdraw of it): it waits for a reconnect in
      // progress (a reset, a failover), so that a caller is answered with nothing left behind, but
      // not for a server whose connects fail — that would hold the caller's answer (an abort, say)
      // for up to connectTimeoutMs; core retries the withdraw in the background instead.
      if (this.#connectFailed) return Promise.reject(this.#notConnected(operation));
      return this.#scriptWhenReady(operation, script, keys, args, undefined, tracker);
    }
    return this.#send(operation, script, keys, args, tracker);
  }

  async #scriptWhenReady(
    operation: string,
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    signal: AbortSignal | undefined,
    tracker: { inFlight: number } | undefined,
  ): Promise<unknown> {
    await this.#whenReady(operation, signal);
    if (signal?.aborted) throw this.#notConnected(operation);
    return this.#send(operation, script, keys, args, tracker);
  }

  #send(
    operation: string,
    script: LuaScript,
    keys: readonly string[],
    args: readonly (string | number)[],
    tracker: { inFlight: number } | undefined,
  ): Promise<unknown> {
    let sent: Command;
    try {
      sent = this.#command(operation, 'evalsha', script.sha1, keys, args);
    } catch (error) {
      // Thrown before ioredis queued anything: not sent.
      return Promise.reject(this.#unavailable(operation, describe(error), error));
    }
    if (tracker) tracker.inFlight++;
    const settled = (reply: unknown) => {
      if (tracker) tracker.inFlight--;
      return reply;
    };
    const failed = (error: unknown) => {
      // ioredis marks a Command `isResolved` only when it resolves; the deadlines drop a rejected one
      // (an error reply, a dropped connection) without waiting for its timer once it is marked too.
      sent.isResolved = true;
      if (evaluated) evaluated.isResolved = true;
      if (tracker) tracker.inFlight--;
      throw this.#failure(operation, error);
    };
    let evaluated: Command | undefined;
    return sent.promise.then(settled, (error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) return failed(error);
      sent.isResolved = true;
      try {
        evaluated = this.#command(operation, 'eval', script.source, keys, args);
      } catch (thrown) {
        // The EVALSHA was answered; the EVAL was not sent.
        return failed(this.#unavailable(operation, describe(thrown), thrown));
      }
      return evaluated.promise.then(settled, failed);
    });
  }

  /** Writes one command and registers its reply deadline. */
  #command(
    operation: string,
    name: 'evalsha' | 'eval',
    script: string,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Command {
    const { options } = this.client as Redis;
    const command = new Command(
      name,
      [script, keys.length, ...keys, ...args],
      options?.showFriendlyErrorStack
        ? { ...this.#commandOptions, errorStack: new Error() }
        : this.#commandOptions,
    );
    this.client.sendCommand(command);
    this.#deadlines.track(command, operation);
    return command;
  }

  /** Classifies a failed command: refused by the server, never sent, or sent without a reply. */
  /**
   * Runs a read that is not one of dlock's scripts (SCAN, a Cluster's master list: `inspect` and
   * `heldKeys`, for `dlock inspect`) once the connection is ready, within commandTimeoutMs; every
   * failure is a BackendUnavailableError. Off the hot path, so one timer per call is fine.
   */
  async run<T>(operation: string, command: (client: RedisClient) => Promise<T>): Promise<T> {
    if (this.client.status !== 'ready') await this.#whenReady(operation);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(this.#unavailable(operation, `no reply within commandTimeoutMs=${this.#commandTimeoutMs}`)),
        this.#commandTimeoutMs,
      );
    });
    const reply = command(this.client).catch((error: unknown) => {
      throw this.#failure(operation, error);
    });
    reply.catch(() => {});
    try {
      return await Promise.race([reply, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  #failure(operation: string, error: unknown): BackendUnavailableError {
    if (error instanceof BackendUnavailableError) return error;
    const detail = describe(error);
    if (error instanceof ReplyError) {
      const permanent = AUTH_FAILURE.test(detail) || PERMANENT_REPLY.test(detail);
      return this.#unavailable(operation, detail, error, !permanent);
    }
    if (detail.startsWith(NOT_WRITABLE)) return this.#unavailable(operation, NOT_SENT_DOWN, error);
    return unanswered(this.#unavailable(operation, `${inDlockWords(error, detail)} (sent; no reply)`, error));
  }

  async close(): Promise<void> {
    this.#deadlines.stop();
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

  /** The request ended before the connection was ready: nothing was sent. */
  #notConnected(operation: string): BackendUnavailableError {
    return this.#unavailable(
      operation,
      `not sent: the connection was down when the request ended${this.#lastErrorDetail()}`,
    );
  }

  /**
   * Settles when the connection is ready (within connectTimeoutMs), or rejects at once when `signal`
   * aborts first (nothing sent); its abort listener is removed when the wait settles either way.
   */
  #whenReady(operation: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(this.#notConnected(operation));
    const ready = this.#connected(operation);
    if (!signal) return ready;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(this.#notConnected(operation));
      signal.addEventListener('abort', onAbort, { once: true });
      ready.then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  #connected(operation: string): Promise<void> {
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

/**
 * The reply deadlines of one connection's commands in flight, with one timer armed for the oldest
 * instead of a timer per command: every command gets the same timeout, so deadlines come in send
 * order, and answered commands at the head are dropped as new ones are sent. A command still
 * unanswered at its deadline is rejected with `timedOut(operation)`; its late reply is then ignored by
 * ioredis (the command's promise has settled).
 */
class ReplyDeadlines {
  readonly #timeoutMs: number;
  readonly #timedOut: (operation: string) => Error;
  // A ring buffer (oldest at #head): no allocation per command once it has grown to the load.
  #commands: Array<Command | undefined> = new Array(16);
  #operations: Array<string | undefined> = new Array(16);
  #dueAt: number[] = new Array(16).fill(0);
  #head = 0;
  #size = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number, timedOut: (operation: string) => Error) {
    this.#timeoutMs = timeoutMs;
    this.#timedOut = timedOut;
  }

  track(command: Command, operation: string): void {
    while (this.#size > 0 && this.#commands[this.#head]!.isResolved) this.#drop();
    if (this.#size === this.#commands.length) this.#grow();
    const dueAt = now() + this.#timeoutMs;
    const slot = (this.#head + this.#size) % this.#commands.length;
    this.#commands[slot] = command;
    this.#operations[slot] = operation;
    this.#dueAt[slot] = dueAt;
    this.#size++;
    if (!this.#timer) this.#arm(dueAt);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #arm(dueAt: number): void {
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(dueAt - now())));
    // In flight, the socket keeps the process alive; the timer alone must not (after close(), say).
    this.#timer.unref();
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    const current = now() + 1;
    while (this.#size > 0) {
      const command = this.#commands[this.#head]!;
      if (!command.isResolved) {
        const dueAt = this.#dueAt[this.#head]!;
        if (dueAt > current) {
          this.#arm(dueAt);
          return;
        }
        command.reject(this.#timedOut(this.#operations[this.#head]!));
      }
      this.#drop();
    }
  };

  #drop(): void {
    this.#commands[this.#head] = undefined;
    this.#operations[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#commands.length;
    this.#size--;
  }

  #grow(): void {
    const order = (from: unknown[]) =>
      Array.from({ length: from.length * 2 }, (_, i) =>
        i < this.#size ? from[(this.#head + i) % from.length] : undefined,
      );
    this.#commands = order(this.#commands) as Array<Command | undefined>;
    this.#operations = order(this.#operations) as Array<string | undefined>;
    this.#dueAt = (order(this.#dueAt) as Array<number | undefined>).map((due) => due ?? 0);
    this.#head = 0;
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
