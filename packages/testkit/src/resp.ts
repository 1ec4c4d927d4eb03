import { connect } from 'node:net';

/** An error reply (`-ERR ...`) from Redis. */
export class RedisReplyError extends Error {
  override readonly name = 'RedisReplyError';
}

export type RedisReply = string | number | null | RedisReplyError | RedisReply[];

type Parsed = { value: RedisReply; next: number } | undefined;

function parseReply(buffer: Buffer, offset: number): Parsed {
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset] ?? 0);
  const line = buffer.toString('utf8', offset + 1, lineEnd);
  const afterLine = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, next: afterLine };
    case '-':
      return { value: new RedisReplyError(line), next: afterLine };
    case ':':
      return { value: Number(line), next: afterLine };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, next: afterLine };
      if (buffer.length < afterLine + length + 2) return undefined;
      return { value: buffer.toString('utf8', afterLine, afterLine + length), next: afterLine + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: afterLine };
      const items: RedisReply[] = [];
      let next = afterLine;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buffer, next);
        if (item === undefined) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`unexpected RESP type byte ${JSON.stringify(type)}`);
  }
}

export function encodeCommand(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`;
}

/**
 * Sends commands over one fresh connection and resolves with one reply per command. Error replies are
 * returned, not thrown; connection failures and `timeoutMs` without all replies reject.
 */
export function redisCommands(
  port: number,
  commands: readonly (readonly string[])[],
  { host = '127.0.0.1', timeoutMs = 1_000 }: { host?: string; timeoutMs?: number } = {},
): Promise<RedisReply[]> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (error: Error | undefined, replies?: RedisReply[]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else resolve(replies ?? []);
    };
    const timer = setTimeout(
      () => finish(new Error(`no reply from redis at ${host}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('connect', () => socket.write(commands.map(encodeCommand).join('')));
    socket.on('error', (error) => finish(error));
    socket.on('close', () => finish(new Error(`redis at ${host}:${port} closed the connection`)));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      const replies: RedisReply[] = [];
      let offset = 0;
      try {
        while (replies.length < commands.length) {
          const parsed = parseReply(received, offset);
          if (parsed === undefined) return;
          replies.push(parsed.value);
          offset = parsed.next;
        }
      } catch (error) {
        finish(error as Error);
        return;
      }
      finish(undefined, replies);
    });
  });
}
