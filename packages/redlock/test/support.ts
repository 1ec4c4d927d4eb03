import { type RedisNodes, freePort } from '@dlock/testkit';
import { Redis } from 'ioredis';

/** Plain ioredis clients to look at (or tamper with) the nodes directly, as an operator would. */
export function rawClients(urls: readonly string[]): Redis[] {
  return urls.map((url) => {
    const client = new Redis(url, { commandTimeout: 2_000, connectTimeout: 2_000, maxRetriesPerRequest: 0 });
    client.on('error', () => {});
    return client;
  });
}

export async function closeRawClients(clients: readonly Redis[]): Promise<void> {
  await Promise.allSettled(clients.map((client) => client.quit()));
  for (const client of clients) client.disconnect();
}

/** What each node stores at `lockKey`, as `address=value` for the nodes that have it. */
export async function storedValues(clients: readonly Redis[], lockKey: string): Promise<string[]> {
  const values = await Promise.all(clients.map((client) => client.get(lockKey)));
  return values.flatMap((value, index) =>
    value === null ? [] : [`${clients[index]!.options.port}=${value}`],
  );
}

/** URLs of loopback ports nobody listens on. */
export async function deadUrls(count: number): Promise<string[]> {
  const urls: string[] = [];
  for (let i = 0; i < count; i++) urls.push(`redis://127.0.0.1:${await freePort()}`);
  return urls;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Every node up and running again (resumed if paused, restarted if killed), for the next test. */
export async function restoreNodes(cluster: RedisNodes): Promise<void> {
  await Promise.all(
    cluster.nodes.map(async (node) => {
      node.resume();
      if (!node.running) await node.restart();
    }),
  );
}
