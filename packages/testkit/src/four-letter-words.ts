import { connect } from 'node:net';

export type FourLetterWord = 'ruok' | 'srvr' | 'conf' | 'envi' | 'stat' | 'mntr' | 'cons';

/** Sends a ZooKeeper four-letter word and resolves with everything the server wrote before closing. */
export function fourLetterWord(
  port: number,
  word: FourLetterWord,
  { host = '127.0.0.1', timeoutMs = 1_000 }: { host?: string; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error === undefined) resolve(Buffer.concat(chunks).toString('utf8'));
      else reject(error);
    };
    const timer = setTimeout(
      () => finish(new Error(`no answer to ${word} from ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('connect', () => socket.write(word));
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (error) => finish(error));
  });
}

export type ZooKeeperMode = 'standalone' | 'leader' | 'follower' | 'observer';

/** The `Mode:` line of `srvr`, or undefined while the server is not serving (e.g. no quorum yet). */
export async function zooKeeperMode(port: number, timeoutMs = 1_000): Promise<ZooKeeperMode | undefined> {
  const answer = await fourLetterWord(port, 'srvr', { timeoutMs });
  const mode = /^Mode: (\w+)/m.exec(answer)?.[1];
  return mode === 'standalone' || mode === 'leader' || mode === 'follower' || mode === 'observer'
    ? mode
    : undefined;
}
