import { now } from '@dlock/core';
import type { RedisClient } from './scripts.js';

/**
 * A waiter's state between attempts (the driver's ticket): whether a wake-up arrived that no attempt has
 * answered yet, and when the holder the last attempt saw will expire if it does not extend.
 */
export interface RedisTicket {
  readonly channel: string;
  /** Whether a message on the channel concerns this waiter (default: every message does). */
  readonly accepts?: (message: string) => boolean;
  changed: boolean;
  holderExpiresAt: number | undefined;
  listening: boolean;
  wake: (() => void) | undefined;
}

interface ChannelState {
  readonly tickets: Set<RedisTicket>;
  /** Settles true once SUBSCRIBE is confirmed, false when it failed (the waiters then poll). */
  subscribed: Promise<boolean>;
  failed: boolean;
}

/**
 * Push wake-ups over one subscriber connection shared by the provider. A key's release channel is
 * subscribed while anybody in this provider waits for that key, and unsubscribed when the last one
 * stops. Redis does not announce a lock that expires (keyspace notifications are off by default), so a
 * waiter also wakes when the holder it saw is due to expire, and at core's fallback re-check at the latest.
 */
export class ReleaseWakeups {
  readonly #createSubscriber: () => RedisClient;
  readonly #channels = new Map<string, ChannelState>();
  #subscriber: RedisClient | undefined;
  #subscriberWasReady = false;
  #closed = false;

  constructor(createSubscriber: () => RedisClient) {
    this.#createSubscriber = createSubscriber;
  }

  ticket(channel: string, holderTtlMs: number, accepts?: (message: string) => boolean): RedisTicket {
    const ticket: RedisTicket = {
      channel,
      accepts,
      changed: false,
      holderExpiresAt: undefined,
      listening: false,
      wake: undefined,
    };
    this.sawHolder(ticket, holderTtlMs);
    return ticket;
  }

  /** Called right before an attempt is sent: every wake-up received so far is answered by that attempt. */
  beforeAttempt(ticket: RedisTicket): void {
    ticket.changed = false;
  }

  /** Records the PTTL the busy attempt returned (negative: the key has no expiry, e.g. a foreign lock). */
  sawHolder(ticket: RedisTicket, holderTtlMs: number): void {
    // +1 ms: PTTL is rounded down, and a key is gone only once its expiry time has passed.
    ticket.holderExpiresAt = holderTtlMs >= 0 ? now() + holderTtlMs + 1 : undefined;
  }

  wait(ticket: RedisTicket, signal: AbortSignal, maxWaitMs: number): Promise<void> {
    if (!ticket.listening && !signal.aborted && !this.#closed) this.#listen(ticket, signal);
    return new Promise((resolve) => {
      if (ticket.changed || signal.aborted) return resolve();
      const untilExpiry =
        ticket.holderExpiresAt === undefined ? maxWaitMs : Math.max(0, ticket.holderExpiresAt - now());
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (ticket.wake === done) ticket.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.min(maxWaitMs, untilExpiry));
      signal.addEventListener('abort', done, { once: true });
      ticket.wake = done;
    });
  }

  /** Stops listening for `ticket`; unsubscribes the channel when nobody else in this provider waits on it. */
  drop(ticket: RedisTicket): void {
    if (!ticket.listening) return;
    ticket.listening = false;
    const state = this.#channels.get(ticket.channel);
    if (!state?.tickets.delete(ticket) || state.tickets.size > 0) return;
    this.#channels.delete(ticket.channel);
    this.#subscriber?.unsubscribe(ticket.channel).catch(() => {});
  }

  close(): void {
    this.#closed = true;
    this.#channels.clear();
    this.#subscriber?.disconnect();
  }

  #listen(ticket: RedisTicket, signal: AbortSignal): void {
    ticket.listening = true;
    signal.addEventListener('abort', () => this.drop(ticket), { once: true });
    let state = this.#channels.get(ticket.channel);
    if (!state) {
      state = { tickets: new Set(), subscribed: Promise.resolve(false), failed: true };
      this.#channels.set(ticket.channel, state);
    }
    if (state.failed) this.#subscribe(ticket.channel, state);
    state.tickets.add(ticket);
    const current = state;
    // A release published after the busy attempt but before this subscription took effect is not
    // delivered to us: once subscribed, have core attempt once more instead of waiting for the next one.
    current.subscribed.then((subscribed) => {
      if (subscribed && current.tickets.has(ticket)) markChanged(ticket);
    });
  }

  #subscribe(channel: string, state: ChannelState): void {
    state.failed = false;
    state.subscribed = this.#subscriberClient()
      .subscribe(channel)
      .then(
        () => true,
        () => {
          state.failed = true;
          return false;
        },
      );
  }

  #subscriberClient(): RedisClient {
    if (this.#subscriber) return this.#subscriber;
    const subscriber = this.#createSubscriber();
    // Errors surface as failed subscriptions (the waiters fall back to polling); the event must be handled.
    subscriber.on('error', () => {});
    subscriber.on('message', (channel: string, message: string) => {
      for (const ticket of this.#channels.get(channel)?.tickets ?? []) {
        if (!ticket.accepts || ticket.accepts(message)) markChanged(ticket);
      }
    });
    subscriber.on('ready', () => {
      if (this.#subscriberWasReady) this.#afterReconnect(subscriber);
      this.#subscriberWasReady = true;
    });
    this.#subscriber = subscriber;
    return subscriber;
  }

  /**
   * Messages published while the subscriber was disconnected are lost. ioredis resubscribes on its own;
   * subscribing again here confirms when that has taken effect, and then every waiter re-checks once.
   */
  #afterReconnect(subscriber: RedisClient): void {
    const channels = [...this.#channels.keys()];
    if (channels.length === 0) return;
    subscriber.subscribe(...channels).then(
      () => {
        for (const state of this.#channels.values()) for (const ticket of state.tickets) markChanged(ticket);
      },
      () => {},
    );
  }
}

function markChanged(ticket: RedisTicket): void {
  ticket.changed = true;
  ticket.wake?.();
}
