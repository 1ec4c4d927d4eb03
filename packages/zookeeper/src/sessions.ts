import { ProviderClosedError } from '@dlock/core';
import { BACKEND } from './client.js';
import { type SessionOptions, ZooKeeperSession } from './session.js';

/**
 * Hands out the provider's current session, opening a fresh one when the last was lost, so that after
 * an expiry later acquires are served transparently. Opening is single-flight: concurrent acquires
 * share one connect.
 */
export class SessionSource {
  readonly #options: SessionOptions;
  readonly #sessions = new Set<ZooKeeperSession>();
  #current: ZooKeeperSession | undefined;
  #opening: Promise<ZooKeeperSession> | undefined;
  /** Aborted by close(): a connect still in flight stops at once (it has no session to clean up). */
  readonly #closing = new AbortController();
  #closed = false;

  constructor(options: SessionOptions) {
    this.#options = options;
  }

  current(): Promise<ZooKeeperSession> {
    if (this.#closed) return Promise.reject(new ProviderClosedError(BACKEND));
    if (this.#current && !this.#current.lost.aborted) return Promise.resolve(this.#current);
    this.#opening ??= ZooKeeperSession.open(this.#options, this.#closing.signal)
      .then((session) => {
        this.#sessions.add(session);
        // Connected just as close() began: close() closes it with the others.
        if (this.#closed) throw new ProviderClosedError(BACKEND);
        this.#current = session;
        session.lost.addEventListener('abort', () => this.#forgetWhenClosed(session), { once: true });
        return session;
      })
      .finally(() => {
        this.#opening = undefined;
      });
    return this.#opening;
  }

  /** Sessions that are not lost yet (for tests that crash or expire them). */
  live(): ZooKeeperSession[] {
    return [...this.#sessions].filter((session) => !session.lost.aborted);
  }

  /**
   * Closes every session, including lost ones still saying goodbye to the server. A connect still in
   * flight (a server that is down) is given up at once rather than waited for up to connectTimeoutMs:
   * nothing is sent on a session before it connects, so it has nothing to delete (a session the server
   * may have opened meanwhile holds no node and expires on its own). Before, close() after a failed
   * acquire against a dead server waited out the connect: 4 s with the defaults.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#closing.abort();
    await this.#opening?.catch(() => {});
    await Promise.all([...this.#sessions].map((session) => session.close()));
  }

  async #forgetWhenClosed(session: ZooKeeperSession): Promise<void> {
    await session.closed;
    this.#sessions.delete(session);
  }
}
