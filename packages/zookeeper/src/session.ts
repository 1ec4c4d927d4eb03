import { BackendUnavailableError, ProviderClosedError } from '@dlock/core';
import { type ACL, type Client, createClient } from 'node-zookeeper-client';
import { BACKEND, type CallsOptions, ZooKeeperCalls } from './client.js';
import { WatchFans } from './watches.js';

/**
 * What a `disconnected` event means for the leases of the session:
 * - 'abort': they are lost at once (Curator's standard policy: SUSPENDED counts as lost). A waiter's
 *   place in line is lost too; it queues again in a fresh session.
 * - 'session-timeout': they stay valid until the server could have expired the session (the last
 *   answered request's send time + sessionTimeout − a margin), so a short blip costs nothing.
 */
export type DisconnectPolicy = 'abort' | 'session-timeout';

export interface DigestAuth {
  readonly scheme: string;
  readonly auth: string;
}

export interface SessionOptions {
  readonly connectString: string;
  readonly sessionTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly callTimeoutMs: number;
  readonly onDisconnect: DisconnectPolicy;
  readonly auth: readonly DigestAuth[];
  readonly acl: ACL[];
}

/** node-zookeeper-client's WatcherManager: one EventEmitter per watched path and kind. */
interface WatcherManager {
  dataWatchers: Record<string, NodeJS.EventEmitter>;
  childWatchers: Record<string, NodeJS.EventEmitter>;
  existenceWatchers: Record<string, NodeJS.EventEmitter>;
}

/** node-zookeeper-client's ConnectionManager, whose reconnect loop has no off switch of its own. */
interface ConnectionManager {
  state: number;
  watcherManager: WatcherManager;
  socket?: { destroy(): void };
  connectTimeoutHandler: NodeJS.Timeout | null;
  connect(): void;
  findNextServer(callback: (server: unknown) => void): void;
  on(event: 'state', listener: (state: number) => void): void;
}

/** ConnectionManager.STATES in node-zookeeper-client 1.1.3. */
const CONNECTING = 1;

/** Pause between rounds over all servers while reconnecting (the library's default is 1 s). */
const SPIN_DELAY_MS = 200;

type ReconnectGate = 'open' | 'held' | 'shut';

/**
 * One ZooKeeper session and the client that owns it. It connects within a connect timeout, keeps the
 * session honest about its liveness, and aborts `lost` when its leases can no longer be vouched for:
 * on `disconnected` under the 'abort' policy, when no reply proves the session alive for
 * sessionTimeout − margin, on expiry, on an authentication failure, or on close. A lost session is
 * never used again (the driver opens a fresh one) and is closed as soon as it can be, which deletes
 * its ephemeral nodes at once instead of after the session timeout.
 */
export class ZooKeeperSession {
  readonly calls: ZooKeeperCalls;
  /** The session's shared watchers: one library watcher per (kind, path). */
  readonly watches = new WatchFans();
  readonly #client: Client;
  readonly #connection: ConnectionManager;
  readonly #options: SessionOptions;
  readonly #callsOptions: CallsOptions;
  readonly #lost = new AbortController();
  #farewell: ((calls: ZooKeeperCalls) => Promise<void>) | undefined;
  readonly #listeners = new Set<() => void>();
  #id = 0n;
  #timeoutMs: number;
  #gate: ReconnectGate = 'open';
  #heldReconnect: (() => void) | undefined;
  #connected = false;
  #connectingSince = performance.now();
  #lastAnswerAt = performance.now();
  #lastAnsweredSentAt = performance.now();
  #heartbeat: NodeJS.Timeout | undefined;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;
  #stopWaiting: (() => void) | undefined;
  #whyLost: string | undefined;

  private constructor(client: Client, options: SessionOptions) {
    this.#client = client;
    this.#options = options;
    this.#timeoutMs = options.sessionTimeoutMs;
    this.#connection = (client as unknown as { connectionManager: ConnectionManager }).connectionManager;
    this.#callsOptions = {
      address: options.connectString,
      callTimeoutMs: options.callTimeoutMs,
      acl: options.acl,
      watches: this.watches,
      onAnswer: (sentAt) => {
        this.#lastAnswerAt = performance.now();
        if (sentAt > this.#lastAnsweredSentAt) this.#lastAnsweredSentAt = sentAt;
      },
    };
    this.calls = new ZooKeeperCalls(client, this.#callsOptions);
    this.#installReconnectGate();
  }

  /**
   * Connects a new session, or rejects BackendUnavailableError naming the connect string within
   * connectTimeoutMs. `closing` (the provider's close()) stops connecting at once and rejects
   * ProviderClosedError: no session was established, so there is nothing to say goodbye on.
   */
  static async open(options: SessionOptions, closing?: AbortSignal): Promise<ZooKeeperSession> {
    const client = createClient(options.connectString, {
      sessionTimeout: options.sessionTimeoutMs,
      spinDelay: SPIN_DELAY_MS,
      // The library's retries re-send a create after a connection loss, which can leave a duplicate
      // sequential node nobody knows about; recovery goes through the protected-name lookup instead.
      retries: 0,
    });
    const session = new ZooKeeperSession(client, options);
    for (const { scheme, auth } of options.auth) client.addAuthInfo(scheme, Buffer.from(auth, 'utf8'));
    type Failure = { detail: string; transient: boolean } | 'closed' | undefined;
    const failure = await new Promise<Failure>((resolve) => {
      const timer = setTimeout(
        () =>
          resolve({
            detail: `no session within connectTimeoutMs=${options.connectTimeoutMs}`,
            transient: true,
          }),
        options.connectTimeoutMs,
      );
      const settle = (outcome: Failure) => {
        clearTimeout(timer);
        client.removeListener('connected', onConnected);
        client.removeListener('authenticationFailed', onAuthFailed);
        closing?.removeEventListener('abort', onClosing);
        resolve(outcome);
      };
      const onConnected = () => settle(undefined);
      // Wrong credentials stay wrong: retrying cannot help.
      const onAuthFailed = () =>
        settle({ detail: 'authentication failed (check the auth option)', transient: false });
      const onClosing = () => settle('closed');
      if (closing?.aborted) return settle('closed');
      client.once('connected', onConnected);
      client.once('authenticationFailed', onAuthFailed);
      closing?.addEventListener('abort', onClosing, { once: true });
      client.connect();
    });
    if (failure === 'closed') {
      session.#stop();
      throw new ProviderClosedError(BACKEND);
    }
    if (failure !== undefined) {
      session.#stop();
      throw new BackendUnavailableError(BACKEND, options.connectString, failure.detail, {
        transient: failure.transient,
      });
    }
    session.#start();
    return session;
  }

  /** The session id, as ZooKeeper stores it in an ephemeral node's `ephemeralOwner`. */
  get id(): bigint {
    return this.#id;
  }

  /** `0x…`, for messages. */
  get name(): string {
    return `0x${this.#id.toString(16)}`;
  }

  /** The timeout the server granted (it clamps the requested one to [2, 20] ticks by default). */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Completes "session 0x… …" once the session is lost, e.g. "expired". */
  get whyLost(): string | undefined {
    return this.#whyLost;
  }

  /** Whether the client is connected now (a live session may be reconnecting under 'session-timeout'). */
  get connected(): boolean {
    return this.#connected;
  }

  /** Aborted once this session's leases can no longer be vouched for; see the class comment. */
  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  /**
   * Calls `listener` when the session reconnects (watches may have fired unseen in between, so waiters
   * re-check) and when it is lost. Returns the unsubscribe function.
   */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Registers what to send before the session is closed on purpose (retired sessions included, once
   * they reconnect): the driver deletes the nodes it still has in this session, then their empty
   * parents, which the session's close would not remove. `calls` is a channel of its own: this
   * session's `calls` fail for good once it is retired.
   */
  onFarewell(farewell: (calls: ZooKeeperCalls) => Promise<void>): void {
    this.#farewell = farewell;
  }

  /** Declares the session lost (`why` completes "session 0x… …") and closes it as soon as it can. */
  retire(why: string): void {
    if (this.#lost.signal.aborted) return;
    this.#whyLost = why;
    const reason = new BackendUnavailableError(
      BACKEND,
      this.#options.connectString,
      `session ${this.name} ${why}`,
    );
    clearInterval(this.#heartbeat);
    clearTimeout(this.#deadlineTimer);
    this.calls.failAll(reason);
    // Deferred by a microtask: the farewell must start only once `lost` has aborted below, so no lease
    // of this session is still believed held while its node is deleted.
    this.#closed ??= Promise.resolve().then(() => this.#closeGracefully());
    this.#lost.abort(reason);
    this.#notify();
  }

  /** Settles once a lost session's client is stopped (closed gracefully or given up on). */
  get closed(): Promise<void> {
    return this.#closed ?? Promise.resolve();
  }

  /**
   * Closes the session, which deletes its ephemeral nodes at once. A disconnected session gets
   * connectTimeoutMs to reconnect and say goodbye (a blip then leaves nothing behind); after that the
   * client stops and the server expires the session — waiting a whole session timeout would hold
   * close() up too long. Settles within about connectTimeoutMs + 2 × callTimeoutMs (the farewell, then
   * the close request).
   */
  close(): Promise<void> {
    this.retire('closed');
    const closed = this.#closed ?? Promise.resolve();
    if (!this.#connected) {
      const hurry = setTimeout(() => this.#stopWaiting?.(), this.#options.connectTimeoutMs);
      closed.finally(() => clearTimeout(hurry)).catch(() => {});
    }
    return closed;
  }

  /**
   * Watcher functions node-zookeeper-client holds for this session, over all paths and kinds (for
   * tests: they must stay bounded by the paths watched, however many waiters come and go).
   */
  libraryWatchers(): number {
    const { dataWatchers, childWatchers, existenceWatchers } = this.#connection.watcherManager;
    let count = 0;
    for (const table of [dataWatchers, childWatchers, existenceWatchers]) {
      for (const emitter of Object.values(table)) count += emitter.listenerCount('notification');
    }
    return count;
  }

  /**
   * For tests: the process "crashes" — the connection drops, nothing is closed or released, and the
   * server expires the session after its timeout.
   */
  abandon(): void {
    this.#gate = 'shut';
    this.#closed ??= Promise.resolve();
    this.retire('abandoned');
    this.#connection.socket?.destroy();
  }

  /** For tests: the id and password another client can present to take this session over. */
  credentials(): { sessionId: Buffer; sessionPassword: Buffer } {
    return { sessionId: this.#client.getSessionId(), sessionPassword: this.#client.getSessionPassword() };
  }

  /**
   * For tests: drop the connection as a network fault would. With `holdReconnect`, the reconnect waits
   * for `resumeReconnecting()`, so the session can be expired meanwhile and the expiry is then learnt
   * the way the library learns it.
   */
  dropConnection(options: { holdReconnect?: boolean } = {}): void {
    if (options.holdReconnect && this.#gate === 'open') this.#gate = 'held';
    this.#connection.socket?.destroy();
  }

  resumeReconnecting(): void {
    if (this.#gate !== 'held') return;
    this.#gate = 'open';
    const reconnect = this.#heldReconnect;
    this.#heldReconnect = undefined;
    reconnect?.();
  }

  /**
   * node-zookeeper-client reconnects from its socket's close handler in every state but CLOSING,
   * SESSION_EXPIRED and AUTHENTICATION_FAILED, and even a client that was closed while connecting
   * keeps dialling (alexguan/node-zookeeper-client issues #60 and #71). Routing its two entry points
   * through a gate is the only way to stop it for good.
   */
  #installReconnectGate(): void {
    const connection = this.#connection;
    const connect = connection.connect.bind(connection);
    const findNextServer = connection.findNextServer.bind(connection);
    connection.connect = () => this.#throughGate(connect);
    connection.findNextServer = (callback) =>
      findNextServer((server) => this.#throughGate(() => callback(server)));
    connection.on('state', (state) => {
      if (state === CONNECTING) this.#connectingSince = performance.now();
    });
  }

  #throughGate(reconnect: () => void): void {
    if (this.#gate === 'open') reconnect();
    else if (this.#gate === 'held') this.#heldReconnect = reconnect;
  }

  #start(): void {
    this.#connected = true;
    this.#id = this.#client.getSessionId().readBigUInt64BE();
    this.#timeoutMs = this.#client.getSessionTimeout();
    const now = performance.now();
    this.#lastAnswerAt = now;
    this.#lastAnsweredSentAt = now;
    this.#client.on('connected', () => this.#onConnected());
    this.#client.on('disconnected', () => this.#onDisconnected());
    this.#client.on('expired', () => this.retire('expired'));
    this.#client.on('authenticationFailed', () => this.retire('failed to authenticate'));
    this.#heartbeat = setInterval(() => this.#beat(), Math.max(1, Math.floor(this.#timeoutMs / 3)));
    this.#heartbeat.unref();
    this.#armDeadline();
  }

  /** Java's client gives up on a connection after 2/3 of the session timeout without a reply. */
  get #readTimeoutMs(): number {
    return Math.floor((this.#timeoutMs * 2) / 3);
  }

  /**
   * The server expires the session sessionTimeout after it last heard from us, and it heard from us
   * no earlier than when we sent the last request it answered. Leases are vouched for until then
   * minus this margin (timers fire late on a busy event loop, never early).
   */
  get #lossMarginMs(): number {
    return Math.max(100, Math.floor(this.#timeoutMs / 5));
  }

  #beat(): void {
    if (this.#lost.signal.aborted) return;
    const now = performance.now();
    if (this.#connected) {
      // node-zookeeper-client has no read timeout: a connection to a server that stopped answering
      // (paused, partitioned) would look healthy forever. Dropping it makes the library reconnect
      // elsewhere, as the Java client does.
      if (now - this.#lastAnswerAt > this.#readTimeoutMs) this.#connection.socket?.destroy();
      else this.calls.exists('/').catch(() => {});
    } else if (this.#connection.state === CONNECTING && now - this.#connectingSince > this.#readTimeoutMs) {
      // A server that accepted the TCP connection but never answers the handshake: try the next one.
      this.#connection.socket?.destroy();
    }
  }

  #armDeadline(): void {
    const remaining = this.#lastAnsweredSentAt + this.#timeoutMs - this.#lossMarginMs - performance.now();
    this.#deadlineTimer = setTimeout(
      () => {
        if (this.#lost.signal.aborted) return;
        const stillDue =
          this.#lastAnsweredSentAt + this.#timeoutMs - this.#lossMarginMs - performance.now() <= 0;
        if (stillDue) {
          this.retire(
            `had no reply for ${Math.round(performance.now() - this.#lastAnsweredSentAt)} ms: the server may have expired it (sessionTimeout ${this.#timeoutMs} ms)`,
          );
        } else {
          this.#armDeadline();
        }
      },
      Math.max(0, remaining),
    );
    this.#deadlineTimer.unref();
  }

  #onConnected(): void {
    this.#connected = true;
    this.#lastAnswerAt = performance.now();
    if (this.#lost.signal.aborted) return;
    this.calls.exists('/').catch(() => {});
    this.#notify();
  }

  #onDisconnected(): void {
    this.#connected = false;
    this.#connectingSince = performance.now();
    if (this.#lost.signal.aborted) return;
    if (this.#options.onDisconnect === 'abort') {
      this.retire("was disconnected (onDisconnect: 'abort')");
      return;
    }
    this.#notify();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }

  /**
   * A connected client sends CLOSE_SESSION; a disconnected one gets until the server would expire the
   * session anyway to reconnect and close it — unless close() is in a hurry. Either way the client is
   * stopped within a bound.
   */
  async #closeGracefully(): Promise<void> {
    if (!this.#connected && this.#gate !== 'shut') {
      this.#connected = await this.#until('connected', this.#timeoutMs);
    }
    if (this.#connected && this.#gate !== 'shut' && this.#farewell) {
      await this.#farewell(new ZooKeeperCalls(this.#client, this.#callsOptions)).catch(() => {});
    }
    if (this.#connected && this.#gate !== 'shut') {
      const closed = this.#until('disconnected', this.#options.callTimeoutMs);
      try {
        this.#client.close();
        await closed;
      } catch {
        // The connection went away under us: stopping below is all that is left to do.
      }
    }
    this.#stop();
  }

  /** Resolves true when `event` happens, false on expiry, timeout or `#hurry()`. */
  #until(event: 'connected' | 'disconnected', timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const settle = (happened: boolean) => {
        clearTimeout(timer);
        this.#client.removeListener(event, onEvent);
        this.#client.removeListener('expired', onExpired);
        this.#stopWaiting = undefined;
        resolve(happened);
      };
      const onEvent = () => settle(true);
      const onExpired = () => settle(false);
      const timer = setTimeout(() => settle(false), timeoutMs);
      this.#client.once(event, onEvent);
      this.#client.once('expired', onExpired);
      this.#stopWaiting = () => settle(false);
    });
  }

  #stop(): void {
    this.#gate = 'shut';
    this.#heldReconnect = undefined;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#deadlineTimer);
    this.#connection.socket?.destroy();
    // The library clears its TCP connect timer only on a socket error; a destroyed socket to a
    // black-holed host would otherwise keep the process alive until the timer fires.
    if (this.#connection.connectTimeoutHandler) clearTimeout(this.#connection.connectTimeoutHandler);
    this.calls.failAll(
      new BackendUnavailableError(BACKEND, this.#options.connectString, 'the session is closed'),
    );
  }
}
