import { randomBytes } from 'node:crypto';
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

/** An admit notice on an inbox: `admit:` and the owner value of the waiter at the head of a line. */
const ADMIT = 'admit:';

/**
 * Release notices from every node, for waiters. One subscriber connection per node, opened on the first
 * wait and shared by all keys; a channel is subscribed while at least one waiter listens to it. A
 * notice from any node is enough: a release publishes on every node where it deleted the lock. Notices
 * are a shortcut, never needed for correctness: a notice lost to a disconnect costs a waiter at most
 * the fallback re-check (core's fallbackRecheckMs), or for a lock waiter its next place refresh.
 *
 * Lock waiters listen on the provider's inbox instead (issue 13): a lock's release wakes only the head
 * of the key's waiting line, by publishing `admit:<its owner value>` on the inbox its entry names
 * (scripts.ts, RELEASE_SCRIPT). The inbox is subscribed on the first lock wait and stays subscribed
 * until close (one channel per provider, as in @dlock/redis).
 */
export class ReleaseNotices {
  /** The provider's admit inbox: a channel name of its own on every node. */
  readonly inbox: string;
  readonly #openers: ReadonlyArray<() => Redis>;
  readonly #channels = new Map<string, Channel>();
  /** Lock waiters listening on the inbox, by owner value. */
  readonly #admits = new Map<string, () => void>();
  #inboxReady: Promise<void> | undefined;
  #inboxConfirmed = false;
  /** Per subscriber connection that is not ready: channels to unsubscribe once it is. */
  readonly #unsubscribeWhenReady = new Map<Redis, Set<string>>();
  #subscribers: Redis[] | undefined;

  /**
   * `openers`: one per node, each opening that node's subscriber connection. `keyPrefix` is put before
   * the inbox's name (`<keyPrefix>dlock-redlock-inbox:<16 random hex digits>`), so an ACL that scopes
   * this provider's channels by prefix covers it.
   */
  constructor(openers: ReadonlyArray<() => Redis>, keyPrefix = '') {
    this.#openers = openers;
    this.inbox = `${keyPrefix}dlock-redlock-inbox:${randomBytes(8).toString('hex')}`;
  }

  /** Whether every node has answered the inbox's SUBSCRIBE: from then on no admit notice is missed. */
  get inboxConfirmed(): boolean {
    return this.#inboxConfirmed;
  }

  /**
   * Calls `listener` when an admit notice names `owner` (a lock request's owner value). `ready`
   * settles once every node has answered the inbox's subscription (or failed it).
   */
  listenForAdmit(owner: string, listener: () => void): ReleaseSubscription {
    if (!this.#inboxReady) {
      const subscribed = this.#connections().map((subscriber) => subscriber.subscribe(this.inbox));
      this.#inboxReady = Promise.allSettled(subscribed).then(() => {
        this.#inboxConfirmed = true;
      });
    }
    this.#admits.set(owner, listener);
    return {
      ready: this.#inboxReady,
      close: () => {
        if (this.#admits.get(owner) === listener) this.#admits.delete(owner);
      },
    };
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
    this.#admits.clear();
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
        subscriber.on('message', (channelName: string, message: string) => {
          if (channelName === this.inbox) {
            if (message.startsWith(ADMIT)) this.#admits.get(message.slice(ADMIT.length))?.();
            return;
          }
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
