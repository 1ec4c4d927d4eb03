import {
  type TracingChannelSubscribers,
  subscribe,
  tracingChannel,
  unsubscribe,
} from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AcquireMessage,
  type ExtendMessage,
  type Lease,
  type LostMessage,
  type ReleasedMessage,
  channelNames,
  createMemoryProvider,
} from '../src/index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('diagnostics messages', () => {
  const undo: (() => void)[] = [];
  afterEach(() => {
    for (const step of undo.splice(0)) step();
  });
  function listen<T>(name: string): T[] {
    const seen: T[] = [];
    const onMessage = (message: unknown) => seen.push(message as T);
    subscribe(name, onMessage);
    undo.push(() => unsubscribe(name, onMessage));
    return seen;
  }

  it('carry the lease the acquire returned, so a subscriber can follow one lease from grant to end', async () => {
    const granted: Lease[] = [];
    const acquires = tracingChannel<AcquireMessage, AcquireMessage>(channelNames.acquire);
    // Node takes any subset of the handlers; @types/node 20 asks for all five.
    const handlers = {
      asyncEnd: (message: AcquireMessage) => {
        if (message.result) granted.push(message.result as Lease);
      },
    } as TracingChannelSubscribers<AcquireMessage>;
    acquires.subscribe(handlers);
    undo.push(() => acquires.unsubscribe(handlers));
    const extended = listen<ExtendMessage>(channelNames.extended);
    const released = listen<ReleasedMessage>(channelNames.released);
    const lost = listen<LostMessage>(channelNames.lost);
    const provider = createMemoryProvider();

    const kept = await provider.acquire('followed', { ttlMs: 5_000 });
    await kept.extend();
    await kept.release();
    const lapsed = await provider.acquire('lapsed', { ttlMs: 30 });
    await sleep(80);

    expect(granted).toEqual([kept, lapsed]);
    expect(extended.map((message) => message.lease)).toEqual([kept]);
    expect(released.map((message) => message.lease)).toEqual([kept]);
    expect(released[0]!.heldMs).toBeGreaterThanOrEqual(0);
    expect(lost.map((message) => [message.lease, message.reason])).toEqual([[lapsed, 'expired']]);
    await provider.close();
  });
});
