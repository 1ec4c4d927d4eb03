import { now } from '@dlock/core';
import type { RedisClient } from './scripts.js';

/**
 * A waiter's state between attempts (part of the driver's ticket): whether a wake-up arrived that no
 * attempt has answered yet, and when the holder the last attempt saw will expire if it does not extend.
 */
export interface WaitState {
  readonly channel: string;
  /** Whether a message on the channel concerns this waiter (default: every message does). */
  readonly accepts?: (message: string) => boolean;
  /** A lock waiter's owner prefix: admit notices on the provider's inbox name it (see `inboxWaiter`). */
  readonly owner?: string;
  changed: boolean;
  holderExpiresAt: number | undefined;
  listening: boolean;
  wake: (() => void) | undefined;
}

interface ChannelState {
  readonly waiters: Set<WaitState>;
  /** Settles true once SUBSCRIBE is confirmed, false when it failed (the waiters then poll). */
  subscribed: Promise<boolean>;
  failed: boolean;
  /** The last SUBSCRIBE is confirmed (and no reconnect has happened since it was sent). */
  confirmed: boolean;
}

/** An admit notice on an inbox: `admit:` and the owner prefix of the waiter at the head of a line. */
const ADMIT = 'admit:';

/**
 * Push wake-ups over one subscriber connection shared by the provider: lock waiters on the provider's
 * inbox (below), semaphore and read-write waiters on their name's channel, which is subscribed while
 * anybody in this provider waits for that name, and unsubscribed when the last one stops. Redis does
 * not announce a lock that expires (keyspace notifications are off by default), so a waiter also wakes
 * when the holder it saw is due to expire, and at core's fallback re-check at the latest.
 */
export class ReleaseWakeups {
  /**
   * The provider's own wake-up channel for lock waiters (issue 13): a lock's waiting line records it
   * beside each waiter's place, and a release publishes `admit:<owner prefix>` there for the head of
   * the line only, so one message goes to one provider per hand-off. Subscribed when a lock request of
   * this provider first waits, and kept until close (one channel per provider), so later waits start
   * with it already confirmed.
   */
  readonly inbox: string;
  readonly #createSubscriber: () => RedisClient;
  readonly #channels = new Map<string, ChannelState>();
  /** Lock waiters listening on the inbox, by owner prefix. */
  readonly #admits = new Map<string, WaitState>();
  #subscriber: RedisClient | undefined;
  #subscriberWasReady = false;
  #closed = false;

  constructor(createSubscriber: () => RedisClient, inbox: string) {
    this.#createSubscriber = createSubscriber;
    this.inbox = inbox;
  }

  /**
   * A lock waiter's state, listening on the inbox from now on if the inbox subscription is confirmed
   * (undefined otherwise). Called before an attempt that may join the line is sent: an admit notice
   * published any time after that attempt joined is then delivered to it. Dropped on grant or withdraw.
   */
  inboxWaiterIfReady(owner: string): WaitState | undefined {
    if (!this.#channels.get(this.inbox)?.confirmed || this.#closed) return undefined;
    const waiter = this.inboxWaiter(owner, -1);
    waiter.listening = true;
    this.#channels.get(this.inbox)!.waiters.add(waiter);
    this.#admits.set(owner, waiter);
    return waiter;
  }

  /** A lock waiter's state on the inbox, for `wait` to start listening (see `waiter`). */
  inboxWaiter(owner: string, holderTtlMs: number): WaitState {
    return this.waiter(this.inbox, holderTtlMs, undefined, owner);
  }

  waiter(
    channel: string,
    holderTtlMs: number,
    accepts?: (message: string) => boolean,
    owner?: string,
  ): WaitState {
    const waiter: WaitState = {
      channel,
      accepts,
      owner,
      changed: false,
      holderExpiresAt: undefined,
      listening: false,
      wake: undefined,
    };
    this.sawHolder(waiter, holderTtlMs);
    return waiter;
  }

  /** Called right before an attempt is sent: every wake-up received so far is answered by that attempt. */
  beforeAttempt(waiter: WaitState): void {
    waiter.changed = false;
  }

  /** Records the PTTL the busy attempt returned (negative would mean no expiry: then no expiry wake-up). */
  sawHolder(waiter: WaitState, holderTtlMs: number): void {
    // +1 ms: PTTL is rounded down, and a key is gone only once its expiry time has passed.
    waiter.holderExpiresAt = holderTtlMs >= 0 ? now() + holderTtlMs + 1 : undefined;
  }

  wait(waiter: WaitState, signal: AbortSignal, maxWaitMs: number): Promise<void> {
    if (!waiter.listening && !signal.aborted && !this.#closed) this.#listen(waiter, signal);
    return new Promise((resolve) => {
      if (waiter.changed || signal.aborted) return resolve();
      const untilExpiry =
        waiter.holderExpiresAt === undefined ? maxWaitMs : Math.max(0, waiter.holderExpiresAt - now());
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        if (waiter.wake === done) waiter.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.min(maxWaitMs, untilExpiry));
      signal.addEventListener('abort', done, { once: true });
      waiter.wake = done;
    });
  }

  /** Stops listening for `waiter`; unsubscribes the channel when nobody else in this provider waits on it. */
  drop(waiter: WaitState): void {
    if (!waiter.listening) return;
    waiter.listening = false;
    const state = this.#channels.get(waiter.channel);
    if (waiter.owner !== undefined && this.#admits.get(waiter.owner) === waiter) {
      this.#admits.delete(waiter.owner);
    }
    // The inbox stays subscribed (see `inbox`).
    if (!state?.waiters.delete(waiter) || state.waiters.size > 0 || waiter.channel === this.inbox) return;
    this.#channels.delete(waiter.channel);
    this.#subscriber?.unsubscribe(waiter.channel).catch(() => {});
  }

  close(): void {
    this.#closed = true;
    this.#channels.clear();
    this.#admits.clear();
    this.#subscriber?.disconnect();
  }

  #listen(waiter: WaitState, signal: AbortSignal): void {
    waiter.listening = true;
    signal.addEventListener('abort', () => this.drop(waiter), { once: true });
    let state = this.#channels.get(waiter.channel);
    if (!state) {
      state = { waiters: new Set(), subscribed: Promise.resolve(false), failed: true, confirmed: false };
      this.#channels.set(waiter.channel, state);
    }
    if (state.failed) this.#subscribe(waiter.channel, state);
    state.waiters.add(waiter);
    if (waiter.owner !== undefined) this.#admits.set(waiter.owner, waiter);
    const current = state;
    // A release published after the busy attempt but before this subscription took effect is not
    // delivered to us: once subscribed, have core attempt once more instead of waiting for the next one.
    current.subscribed.then((subscribed) => {
      if (subscribed && current.waiters.has(waiter)) markChanged(waiter);
    });
  }

  #subscribe(channel: string, state: ChannelState): void {
    state.failed = false;
    state.confirmed = false;
    const subscribed = this.#subscriberClient()
      .subscribe(channel)
      .then(
        () => {
          if (state.subscribed === subscribed) state.confirmed = true;
          return true;
        },
        () => {
          state.failed = true;
          return false;
        },
      );
    state.subscribed = subscribed;
  }

  #subscriberClient(): RedisClient {
    if (this.#subscriber) return this.#subscriber;
    const subscriber = this.#createSubscriber();
    // Errors surface as failed subscriptions (the waiters fall back to polling); the event must be handled.
    subscriber.on('error', () => {});
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.inbox) {
        const waiter = message.startsWith(ADMIT) ? this.#admits.get(message.slice(ADMIT.length)) : undefined;
        if (waiter) markChanged(waiter);
        return;
      }
      for (const waiter of this.#channels.get(channel)?.waiters ?? []) {
        if (!waiter.accepts || waiter.accepts(message)) markChanged(waiter);
      }
    });
    // Messages published while the connection is down are lost: no subscription counts as confirmed
    // until it is confirmed again after the reconnect.
    subscriber.on('close', () => {
      for (const state of this.#channels.values()) state.confirmed = false;
    });
    subscriber.on('ready', () => {
      this.#afterReady(this.#subscriberWasReady);
      this.#subscriberWasReady = true;
    });
    this.#subscriber = subscriber;
    return subscriber;
  }

  /**
   * Messages published while the subscriber was disconnected are lost, and a SUBSCRIBE queued during
   * an outage may have failed. After a reconnect every channel is subscribed again (ioredis also
   * resubscribes on its own; this confirms when it has taken effect), after the first connect every
   * channel whose subscription failed; once confirmed, each of their waiters re-checks once.
   */
  #afterReady(reconnected: boolean): void {
    for (const [channel, state] of this.#channels) {
      if (!reconnected && !state.failed) continue;
      this.#subscribe(channel, state);
      state.subscribed.then((subscribed) => {
        if (subscribed) for (const waiter of state.waiters) markChanged(waiter);
      });
    }
  }
}

function markChanged(waiter: WaitState): void {
  waiter.changed = true;
  waiter.wake?.();
}
