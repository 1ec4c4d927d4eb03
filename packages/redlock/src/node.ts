import { Redis, type RedisOptions } from 'ioredis';

/** Why one node failed a request. */
export interface NodeFailure {
  readonly address: string;
  /**
   * Whether the request may have been applied: true once it was written to the connection (the reply
   * was lost, timed out, or the connection closed with it in flight); false when it never left the
   * client (not connected) or the node answered with an error.
   */
  readonly mayHaveApplied: boolean;
  /** False when trying again cannot help until someone changes something (authentication, ACLs). */
  readonly transient: boolean;
  /** What went wrong, in terms a user can act on (an address, a timeout option, the server's words). */
  readonly detail: string;
}

/** What one node answered, or why it did not. Never a rejection: every failure is a value to count. */
export type NodeAnswer<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly failure: NodeFailure };

export interface NodeTimeouts {
  /** Longest wait for a connection that is being (re)established before a request fails unsent (ms). */
  readonly connectTimeoutMs: number;
  /** The client's own per-command timeout (ms), named in messages. */
  readonly commandTimeoutMs: number;
}

const AUTH_FAILURE = /^(WRONGPASS|NOAUTH|NOPERM|ERR invalid password|ERR AUTH)/;
const NOT_WRITABLE = /enableOfflineQueue/;

/**
 * One independent Redis node: its command connection, where it is (host:port, never credentials), and
 * the few requests RedLock sends to it. Every request waits for a ready connection (bounded by
 * connectTimeoutMs; a node whose last connect failed fails at once, so a node that is down costs
 * nothing), is written only to a ready connection, and ends in a NodeAnswer that says whether the
 * request may have been applied. That distinction is what lets an attempt tell "certainly not taken"
 * from "outcome unknown" (dlock issue 11).
 */
export class RedisNode {
  readonly client: Redis;
  readonly address: string;
  readonly #timeouts: NodeTimeouts;
  #ready: boolean;
  /** The last connect attempt failed, and no connection has been ready since. */
  #connectFailed = false;
  #lastError: Error | undefined;
  /** A request got no reply within the command timeout, and nothing has answered since. */
  #unresponsive = false;
  #readiness: Promise<NodeFailure | undefined> | undefined;

  readonly #onError = (error: Error) => {
    this.#lastError = error;
  };
  readonly #onReady = () => {
    this.#ready = true;
    this.#connectFailed = false;
    this.#lastError = undefined;
  };
  readonly #onClose = () => {
    // A connection that closes before it was ever ready is a failed connect: until one succeeds,
    // requests fail at once rather than each waiting for a node that is down.
    if (!this.#ready) this.#connectFailed = true;
    this.#ready = false;
  };

  constructor(client: Redis, timeouts: NodeTimeouts) {
    this.client = client;
    this.address = addressOf(client);
    this.#timeouts = timeouts;
    this.#ready = client.status === 'ready';
    // Also keeps ioredis from printing "Unhandled error event" for every failed reconnect.
    client.on('error', this.#onError);
    client.on('ready', this.#onReady);
    client.on('close', this.#onClose);
  }

  /** Removes this node's listeners from the client (a caller's client outlives the provider). */
  detach(): void {
    this.client.off('error', this.#onError);
    this.client.off('ready', this.#onReady);
    this.client.off('close', this.#onClose);
  }

  /**
   * Whether the node's last request timed out and nothing has answered since (a paused or hung node).
   * Clean-ups do not make their caller wait for such a node: core retries them in the background. A node
   * that is reconnecting is not hung: a request to it fails at once if its connect fails, and otherwise
   * waits at most connectTimeoutMs.
   */
  get hung(): boolean {
    return this.#unresponsive;
  }

  /**
   * Runs a script (EVAL, see scripts.ts) on one key or several and answers its integer result. `wanted` is asked right
   * before the request is written: when it says no (the lease was released, the request withdrawn while
   * this one waited for the connection), nothing is sent and the answer is a failure that was not applied.
   */
  evaluate(
    script: string,
    keys: string | readonly string[],
    args: readonly (string | number)[],
    wanted?: () => boolean,
  ): Promise<NodeAnswer<number>> {
    const keyList = typeof keys === 'string' ? [keys] : keys;
    return this.#request(
      (client) => client.eval(script, keyList.length, ...keyList, ...args) as Promise<number>,
      wanted,
    );
  }

  /** Any other request, with the same readiness wait, `wanted` check and classification of failures. */
  run<T>(send: (client: Redis) => Promise<T>, wanted?: () => boolean): Promise<NodeAnswer<T>> {
    return this.#request(send, wanted);
  }

  pttl(key: string): Promise<NodeAnswer<number>> {
    return this.#request((client) => client.pttl(key));
  }

  async #request<T>(send: (client: Redis) => Promise<T>, wanted?: () => boolean): Promise<NodeAnswer<T>> {
    // Requests that find a readiness wait in progress queue behind it, so they go out in the order made.
    const notReady = this.client.status === 'ready' && !this.#readiness ? undefined : await this.#whenReady();
    if (notReady) return { ok: false, failure: notReady };
    // Checked in the same tick as the write: a request handed to a client that is not ready would sit in
    // its offline queue and could be sent long after its caller counted it as failed.
    if (this.client.status !== 'ready') return { ok: false, failure: this.#notConnected() };
    if (wanted && !wanted()) {
      return {
        ok: false,
        failure: { ...this.#unknown('not sent: no longer wanted'), mayHaveApplied: false },
      };
    }
    let pending: Promise<T>;
    try {
      pending = send(this.client);
    } catch (error) {
      return { ok: false, failure: this.#failure(error) };
    }
    try {
      const value = await pending;
      this.#unresponsive = false;
      return { ok: true, value };
    } catch (error) {
      return { ok: false, failure: this.#failure(error) };
    }
  }

  #whenReady(): Promise<NodeFailure | undefined> {
    const { client } = this;
    if (this.#readiness) return this.#readiness;
    if (client.status === 'ready') return Promise.resolve(undefined);
    if (client.status === 'end') return Promise.resolve(this.#notConnected('the connection was closed'));
    if (this.#connectFailed || (this.#lastError && AUTH_FAILURE.test(this.#lastError.message))) {
      return Promise.resolve(this.#notConnected());
    }
    if (client.status === 'wait') client.connect().catch(() => {});
    // One wait per connection attempt, shared by every request queued behind it.
    this.#readiness ??= this.#waitUntilReady().finally(() => {
      this.#readiness = undefined;
    });
    return this.#readiness;
  }

  #waitUntilReady(): Promise<NodeFailure | undefined> {
    const { client } = this;
    return new Promise((resolve) => {
      const settle = (failure?: NodeFailure) => {
        clearTimeout(timer);
        client.off('ready', onReady);
        client.off('close', onClose);
        client.off('end', onClose);
        resolve(failure);
      };
      // 'ready' is emitted on the tick after ioredis has re-sent what it queued itself, so requests
      // released here go out behind those, in the order they were made.
      const onReady = () => settle();
      const onClose = () => settle(this.#notConnected());
      const timer = setTimeout(
        () =>
          settle(
            this.#notConnected(`not connected within connectTimeoutMs=${this.#timeouts.connectTimeoutMs}`),
          ),
        this.#timeouts.connectTimeoutMs,
      );
      client.on('ready', onReady);
      client.on('close', onClose);
      client.on('end', onClose);
    });
  }

  #failure(error: unknown): NodeFailure {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof Error && error.name === 'ReplyError') return this.#serverRefused(message);
    if (NOT_WRITABLE.test(message)) return this.#notConnected();
    if (message === 'Command timed out') {
      this.#unresponsive = true;
      return this.#unknown(`no reply within commandTimeoutMs=${this.#timeouts.commandTimeoutMs}`);
    }
    // ioredis fails a request cut off by a disconnect with its own retry-limit or "closed" errors,
    // whose texts name client options the user never set: say what happened instead.
    return this.#unknown('the connection closed before the reply arrived');
  }

  #notConnected(detail = 'not connected'): NodeFailure {
    // A rejected password does not fix itself on the next reconnect.
    if (this.#lastError && AUTH_FAILURE.test(this.#lastError.message))
      return this.#serverRefused(this.#lastError.message);
    const last = this.#lastError ? ` (${this.#lastError.message})` : '';
    return { address: this.address, mayHaveApplied: false, transient: true, detail: `${detail}${last}` };
  }

  #serverRefused(message: string): NodeFailure {
    return {
      address: this.address,
      mayHaveApplied: false,
      transient: !AUTH_FAILURE.test(message),
      detail: `the server answered: ${message}`,
    };
  }

  #unknown(detail: string): NodeFailure {
    return { address: this.address, mayHaveApplied: true, transient: true, detail };
  }
}

/**
 * ioredis settings for the connections opened from `urls`: every request is bounded, nothing waits in
 * ioredis's offline queue (RedisNode waits for readiness itself, bounded by connectTimeoutMs), and a
 * request cut off by a disconnect is never re-sent after the reconnect (a re-sent acquire could take a
 * lock on a node long after its caller counted that vote as lost).
 */
function boundedConnectionOptions({ connectTimeoutMs, commandTimeoutMs }: NodeTimeouts): RedisOptions {
  // Reconnects are cheap on a LAN; a short cap means a node that is back is used again soon.
  const reconnectCapMs = Math.max(10, Math.min(1_000, connectTimeoutMs / 4));
  return {
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt: number) => Math.min(25 * 2 ** attempt, reconnectCapMs),
  };
}

export function connectNode(url: string, timeouts: NodeTimeouts): RedisNode {
  return new RedisNode(new Redis(url, boundedConnectionOptions(timeouts)), timeouts);
}

/** A caller's client: used, never closed. Its own commandTimeout bounds each request. */
export function adoptNode(client: Redis, connectTimeoutMs: number): RedisNode {
  return new RedisNode(client, { connectTimeoutMs, commandTimeoutMs: client.options.commandTimeout ?? 0 });
}

/**
 * A connection for release notices that copies the node's settings, except that SUBSCRIBE may wait in
 * ioredis's offline queue for the connection to come up (a notice is a shortcut, never needed for
 * correctness, so nothing depends on when it is sent).
 */
export function openSubscriber(node: RedisNode, owned: boolean): Redis {
  return owned ? node.client.duplicate({ enableOfflineQueue: true }) : node.client.duplicate();
}

export function addressOf(client: Redis): string {
  const { host, port, path } = client.options;
  return path ? path : `${host ?? '127.0.0.1'}:${port ?? 6379}`;
}

/** Closes connections: a polite QUIT where the node answers, then a hard disconnect regardless. */
export async function closeClients(clients: readonly Redis[]): Promise<void> {
  await Promise.allSettled(clients.map((client) => (client.status === 'ready' ? client.quit() : undefined)));
  for (const client of clients) client.disconnect();
}
