import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ResourceEvent, SafetyChecker } from './checker.js';
import type { CheckedPrimitive } from './results.js';

/** The body a contender posts: an event with its token as a decimal string (JSON has no bigint). */
export interface ResourceRequest {
  readonly type: ResourceEvent['type'];
  readonly hold: string;
  readonly token: string;
  readonly acquiredAt?: number;
  readonly requestedAt?: number;
  readonly mode?: 'read' | 'write';
  readonly basedOn?: number;
  readonly basedOnFenced?: number;
}

const MAX_BODY_BYTES = 4096;

function parseEvent(body: ResourceRequest): ResourceEvent {
  const token = BigInt(body.token);
  if (typeof body.hold !== 'string') throw new Error('hold must be a string');
  switch (body.type) {
    case 'begin':
      if (body.mode !== undefined && body.mode !== 'read' && body.mode !== 'write')
        throw new Error(`unknown mode ${JSON.stringify(body.mode)}`);
      return {
        type: 'begin',
        hold: body.hold,
        token,
        acquiredAt: Number(body.acquiredAt),
        requestedAt: body.requestedAt === undefined ? undefined : Number(body.requestedAt),
        mode: body.mode,
      };
    case 'read':
    case 'end':
      return { type: body.type, hold: body.hold, token };
    case 'write':
      return {
        type: 'write',
        hold: body.hold,
        token,
        basedOn: Number(body.basedOn),
        basedOnFenced: Number(body.basedOnFenced),
      };
    default:
      throw new Error(`unknown event type ${JSON.stringify(body.type)}`);
  }
}

/**
 * The thing the lock protects (or the semaphore, or the read-write lock): a counter behind a tiny HTTP server on 127.0.0.1 in the lab process.
 * It stamps every request with its own clock (this process's performance.now()) on arrival — never
 * the writer's — and hands it to the checker, so overlaps are judged where the damage would happen.
 */
export class SharedResource {
  readonly checker: SafetyChecker;
  #server: Server | undefined;
  #url = '';

  /**
   * `leaseMs`: the lease contenders hold, so the checker can tell an overlap past a lease;
   * `primitive`: what the contenders hold — a lock, a semaphore or a read-write lock (see SafetyChecker).
   */
  constructor(options: { readonly leaseMs?: number; readonly primitive?: CheckedPrimitive } = {}) {
    this.checker = new SafetyChecker({
      leaseMs: options.leaseMs,
      clockOrigin: performance.timeOrigin,
      primitive: options.primitive,
    });
  }

  get url(): string {
    return this.#url;
  }

  async start(): Promise<void> {
    const server = createServer((request, response) => this.#handle(request, response));
    // A contender frozen with SIGSTOP must find its connection still open when it wakes: an idle socket
    // the server had closed meanwhile fails the late write, hiding exactly what the pause scenario shows.
    server.keepAliveTimeout = 0;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.#url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    // GET is a contender warming up its HTTP client before it contends: answered, never recorded.
    if (request.method === 'GET') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    request.on('end', () => {
      const at = performance.now();
      try {
        if (size > MAX_BODY_BYTES) throw new Error('body too large');
        const event = parseEvent(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ResourceRequest);
        const versions = this.checker.observe(event, at);
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(versions));
      } catch (error) {
        response.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
      }
    });
  }
}
