import type { Redis } from 'ioredis';
import { closeClients } from './node.js';

export interface ReleaseSubscription {
  /** Settles once every node has confirmed (or failed) the subscription. */
  readonly ready: Promise<void>;
  close(): void;
}

interface Channel {
  readonly listeners: Set<() => void>;
  readonly ready: Promise<void>;
}

/**
 * Release notices from every node, for waiters. One subscriber connection per node, opened on the first
 * wait and shared by all keys; a channel is subscribed while at least one waiter listens to it. A
 * notice from any node is enough: a release publishes on every node where it deleted the lock. Notices
 * are a shortcut, never needed for correctness: a notice lost to a disconnect costs a waiter at most
 * the fallback re-check (core's fallbackRecheckMs).
 */
export class ReleaseNotices {
  readonly #openers: ReadonlyArray<() => Redis>;
  readonly #channels = new Map<string, Channel>();
  /** Per subscriber connection that is not ready: channels to unsubscribe once it is. */
  readonly #unsubscribeWhenReady = new Map<Redis, Set<string>>();
  #subscribers: Redis[] | undefined;

  /** `openers`: one per node, each opening that node's subscriber connection. */
  constructor(openers: ReadonlyArray<() => Redis>) {
    this.#openers = openers;
  }

  subscribe(channelName: string, listener: () => void): ReleaseSubscription {
    let channel = this.#channels.get(channelName);
    if (!channel) {
      const subscribed = this.#connections().map((subscriber) => subscriber.subscribe(channelName));
      channel = { listeners: new Set(), ready: Promise.allSettled(subscribed).then(() => {}) };
      this.#channels.set(channelName, channel);
    }
    const current = channel;
    current.listeners.add(listener);
    return {
      ready: current.ready,
      close: () => {
        current.listeners.delete(listener);
        if (current.listeners.size > 0 || this.#channels.get(channelName) !== current) return;
        this.#channels.delete(channelName);
        for (const subscriber of this.#subscribers ?? []) this.#unsubscribe(subscriber, channelName);
      },
    };
  }

  /**
   * Commands on one ready connection run in order, so a later SUBSCRIBE of this name still wins. Before
   * the connection is ready they may not: ioredis writes (UN)SUBSCRIBE straight to a connection that is
   * still completing its handshake, while a SUBSCRIBE made earlier waits in its offline queue, so an
   * unsubscribe sent then would overtake its own subscribe and leave the channel subscribed for good.
   * Until the connection is ready, unsubscribes wait (one set per connection, not a listener each).
   */
  #unsubscribe(subscriber: Redis, channelName: string): void {
    if (subscriber.status === 'ready') {
      subscriber.unsubscribe(channelName).catch(() => {});
      return;
    }
    this.#unsubscribeWhenReady.get(subscriber)?.add(channelName);
  }

  async close(): Promise<void> {
    this.#channels.clear();
    this.#unsubscribeWhenReady.clear();
    const subscribers = this.#subscribers ?? [];
    this.#subscribers = [];
    await closeClients(subscribers);
  }

  #connections(): Redis[] {
    if (!this.#subscribers) {
      this.#subscribers = this.#openers.map((open) => {
        const subscriber = open();
        subscriber.on('error', () => {});
        subscriber.on('message', (channelName: string) => {
          for (const listener of this.#channels.get(channelName)?.listeners ?? []) listener();
        });
        const waiting = new Set<string>();
        this.#unsubscribeWhenReady.set(subscriber, waiting);
        // Emitted after ioredis has sent its own queue (and re-subscribed after a reconnect).
        subscriber.on('ready', () => {
          for (const channelName of waiting) {
            if (!this.#channels.has(channelName)) subscriber.unsubscribe(channelName).catch(() => {});
          }
          waiting.clear();
        });
        return subscriber;
      });
    }
    return this.#subscribers;
  }
}
