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
  #closed = false;

  constructor(options: SessionOptions) {
    this.#options = options;
  }

  current(): Promise<ZooKeeperSession> {
    if (this.#closed) return Promise.reject(new ProviderClosedError(BACKEND));
    if (this.#current && !this.#current.lost.aborted) return Promise.resolve(this.#current);
    this.#opening ??= ZooKeeperSession.open(this.#options)
      .then((session) => {
        if (this.#closed) {
          session.close().catch(() => {});
          throw new ProviderClosedError(BACKEND);
        }
        this.#current = session;
        this.#sessions.add(session);
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

  /** Closes every session, including lost ones still saying goodbye to the server. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#opening?.catch(() => {});
    await Promise.all([...this.#sessions].map((session) => session.close()));
  }

  async #forgetWhenClosed(session: ZooKeeperSession): Promise<void> {
    await session.closed;
    this.#sessions.delete(session);
  }
}
