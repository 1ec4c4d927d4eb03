// What the package's benchmarks share: histograms in microseconds, and the hand-off measurement.
import { createConnection } from 'node:net';
import { text } from 'node:stream/consumers';
import * as hdr from 'hdr-histogram-js';

export const histogram = () => hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3 });
/** Milliseconds with two decimals from a histogram of microseconds. */
export const ms = (h, percentile) => (h.getValueAtPercentile(percentile) / 1000).toFixed(2);
/** Microseconds since `start` (a performance.now() value), at least 1. */
export const since = (start) => Math.max(1, Math.round((performance.now() - start) * 1000));
export const sleep = (delay) => new Promise((resolve) => setTimeout(resolve, delay));

/**
 * Time from `release()` by the holder to the waiter's acquire resolving, alternating between two
 * providers `rounds` times (after 20 warm-up rounds). `take(provider, options)` acquires the lease.
 */
export async function handoffs(a, b, take, rounds) {
  const h = histogram();
  let lease = await take(a, {});
  let waiter = b;
  for (let i = 0; i < rounds + 20; i++) {
    const next = take(waiter, { waitMs: 10_000 });
    // Let the waiter queue and set its watch before the release.
    await sleep(15);
    const start = performance.now();
    await lease.release();
    lease = await next;
    if (i >= 20) h.recordValue(since(start));
    waiter = waiter === a ? b : a;
  }
  await lease.release();
  return h;
}

/**
 * Requests the server has received so far (`zk_packets_received` from the `mntr` four-letter word):
 * the difference over a run counts what a client sent, whatever the machine's load.
 */
export async function packetsReceived(server) {
  const socket = createConnection({ host: '127.0.0.1', port: server.port });
  socket.setTimeout(2_000, () => socket.destroy(new Error(`no answer to mntr from port ${server.port}`)));
  socket.end('mntr');
  const answer = await text(socket);
  const received = /zk_packets_received\s+(\d+)/.exec(answer)?.[1];
  if (received === undefined) throw new Error(`unexpected mntr answer: ${answer}`);
  return Number(received);
}
