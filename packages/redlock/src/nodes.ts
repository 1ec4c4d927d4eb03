import { Redis, type RedisOptions } from 'ioredis';

/** One independent Redis node: its command connection and where it is (host:port, never credentials). */
export interface RedisNode {
  readonly client: Redis;
  readonly address: string;
}

export interface NodeTimeouts {
  readonly connectTimeoutMs: number;
  readonly commandTimeoutMs: number;
}

/**
 * ioredis settings that bound every command, so an operation on a node that is down, restarting or
 * paused ends with an error (a vote against) instead of waiting: a quorum decision needs every vote.
 */
function boundedConnectionOptions({ connectTimeoutMs, commandTimeoutMs }: NodeTimeouts): RedisOptions {
  // Reconnects are cheap on a LAN; a short cap means a command queued for a dead node fails at its next
  // refused reconnect, well inside the connect timeout.
  const reconnectCapMs = Math.max(10, Math.min(1_000, connectTimeoutMs / 4));
  return {
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
    // A command waiting for a node that is down is failed at the node's next failed reconnect,
    // rather than after 20 of them (the default).
    maxRetriesPerRequest: 0,
    // A command cut off by a disconnect is failed, never re-sent after the reconnect: a re-sent acquire
    // could take a lock on a node long after its caller counted that vote as lost.
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt: number) => Math.min(25 * 2 ** attempt, reconnectCapMs),
  };
}

export function connectNode(url: string, timeouts: NodeTimeouts): RedisNode {
  const client = new Redis(url, boundedConnectionOptions(timeouts));
  // Failures reach callers as votes against; without a listener ioredis prints every failed reconnect.
  client.on('error', () => {});
  return { client, address: addressOf(client) };
}

export function adoptNode(client: Redis): RedisNode {
  return { client, address: addressOf(client) };
}

export function addressOf(client: Redis): string {
  const { host, port, path } = client.options;
  return path ? path : `${host ?? '127.0.0.1'}:${port ?? 6379}`;
}

/** Closes connections: a polite QUIT where the node answers, then a hard disconnect regardless. */
export async function closeClients(clients: readonly Redis[]): Promise<void> {
  await Promise.allSettled(clients.map((client) => client.quit()));
  for (const client of clients) client.disconnect();
}
