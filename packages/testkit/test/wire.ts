import { type Socket, connect } from 'node:net';
import { encodeCommand } from '../src/resp.js';
import { pollUntil } from '../src/wait.js';

/** A bare TCP client speaking RESP, recording every byte it receives and how its connection ended. */
export interface WireClient {
  readonly socket: Socket;
  /** Resolves once the TCP handshake completed (the proxy accepted). */
  readonly connected: Promise<void>;
  /** Resolves when the socket closes: the error code (`ECONNRESET`, ...), or `'closed'` for a clean close. */
  readonly ended: Promise<string>;
  /** Whether the socket has closed, and how (see `ended`). */
  readonly endedWith: string | undefined;
  /** Everything received so far, as text. */
  received(): string;
  send(...command: string[]): void;
  /** Resolves once `text` has been received; rejects after `timeoutMs`. */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
}

export function wireClient(port: number): WireClient {
  const socket = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  let endedWith: string | undefined;
  let errorCode: string | undefined;
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', (error: NodeJS.ErrnoException) => {
    errorCode = error.code ?? error.message;
  });
  const ended = new Promise<string>((resolve) => {
    socket.once('close', () => {
      endedWith = errorCode ?? 'closed';
      resolve(endedWith);
    });
  });
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const received = () => Buffer.concat(chunks).toString('utf8');
  return {
    socket,
    connected,
    ended,
    get endedWith() {
      return endedWith;
    },
    received,
    send: (...command) => socket.write(encodeCommand(command)),
    waitFor: (text, timeoutMs = 5_000) =>
      pollUntil(
        `${JSON.stringify(text)} on the wire`,
        async () => (received().includes(text) ? true : undefined),
        {
          timeoutMs,
          intervalMs: 10,
        },
      ).then(() => undefined),
  };
}
