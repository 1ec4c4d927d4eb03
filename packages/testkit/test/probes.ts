import { readFileSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { type RedisReply, redisCommands } from '../src/resp.js';

export async function redis(port: number, command: string[], timeoutMs = 1_000): Promise<RedisReply> {
  const [reply] = await redisCommands(port, [command], { timeoutMs });
  return reply ?? null;
}

/** Resolves true when nothing listens on the port any more. */
export function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

/** True when the pid no longer names a live process (a zombie awaiting its reaper counts as gone). */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Pids of this process's live children, from /proc. */
export function livingChildren(): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') children.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return children;
}
