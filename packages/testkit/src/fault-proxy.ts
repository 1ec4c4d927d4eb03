import { type Server, type Socket, connect, createServer, isIPv4 } from 'node:net';
import { performance } from 'node:perf_hooks';
import pRetry, { AbortError } from 'p-retry';
import { trackResource, untrackResource } from './cleanup.js';
import {
  FaultCancelledError,
  FaultProxyClosedError,
  InvalidArgumentError,
  ProxyRebindError,
} from './errors.js';
import { releasePort, reservePort } from './ports.js';
import { LOOPBACK } from './server.js';
import { settleWithin } from './wait.js';

/**
 * A TCP proxy on 127.0.0.1 that forwards to one loopback server and injects the network's grey zone on
 * demand: lost replies, resets, refused connects, black holes and delays (dlock issue 11).
 *
 * No maintained Node library fits: Toxiproxy needs its own Go server (not packaged for Debian, and
 * `@testcontainers/toxiproxy` needs Docker), and the in-process proxies on npm (`node-tcp-proxy`,
 * `tcp-proxy.js`) inject no faults. This one uses `node:net` only. Its fault names follow Toxiproxy's
 * vocabulary (`latency` → `delay`, `timeout` → `blackhole`, `reset_peer` → `reset`).
 */

/** `upstream`: client → server bytes; `downstream`: server → client bytes. */
export type FaultDirection = 'upstream' | 'downstream' | 'both';

export interface FaultProxyTarget {
  readonly host: string;
  readonly port: number;
}

export interface FaultProxyOptions {
  /** The server to forward to: `{ host, port }` or `'host:port'` (`'[::1]:port'`). Loopback hosts only. */
  target: FaultProxyTarget | string;
  /**
   * How long `refuseConnections` keeps retrying to listen on the same port when the port is taken
   * (EADDRINUSE) as its window ends; default 5000 ms. Past it, `whenListening()` rejects with
   * `ProxyRebindError`.
   */
  rebindTimeoutMs?: number;
}

export interface DropNextReplyOptions {
  /**
   * Default true: reset the connection right after swallowing the reply, so the client sees the request
   * fail with a connection error. False: keep the connection open and swallow everything the server sends
   * on it until `heal()` or `reset()`, so the client sees its request time out.
   */
  thenReset?: boolean;
}

export interface FaultProxy {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `'127.0.0.1:<port>'`, e.g. a ZooKeeper connect string. */
  readonly address: string;
  /** The server the proxy forwards to, with `localhost` resolved to `127.0.0.1`. */
  readonly target: FaultProxyTarget;
  /** Open client connections (accepted and not yet closed or reset). */
  readonly connections: number;
  /** False while `refuseConnections` / `outage` keeps the port closed, or after `close()`. */
  readonly listening: boolean;
  /** `'<scheme>://127.0.0.1:<port>'`: `url('redis')` for ioredis, `url('http')` for etcd3. */
  url(scheme: string): string;
  /**
   * Sends a TCP RST on every open connection, to the client and to the server, now. New connections
   * are still accepted. Clients see ECONNRESET.
   */
  reset(): void;
  /**
   * From now until `heal()`, open and new connections forward nothing in either direction: new
   * connects are accepted (the upstream connection is opened only at `heal()`), nothing is read, so no
   * FIN and no RST passes either. At `heal()`, forwarding resumes on the held connections and the bytes
   * sent meanwhile are delivered in order, as TCP's retransmission would after a partition.
   */
  blackhole(): void;
  /**
   * Arms a lost reply. The next client → server bytes forwarded (on any connection) reach the server;
   * the next bytes the server sends on that connection are swallowed, then that connection is reset on
   * both sides (unless `thenReset: false`). The client sees a lost reply to a request that WAS applied.
   * Resolves once the reply was swallowed. A connection that closes before its reply arrives passes the
   * armed drop on to the next request. Calling it twice arms two drops, used in turn.
   * @throws FaultCancelledError (rejection) when `heal()` runs first; FaultProxyClosedError when the
   * proxy closes first. The promise is marked handled, so an unobserved cancellation is no unhandled
   * rejection.
   */
  dropNextReply(options?: DropNextReplyOptions): Promise<void>;
  /**
   * Stops listening for `ms` (connects get ECONNREFUSED), then listens again on the same port. Open
   * connections are untouched. Calling it again while refusing extends the window to the later end. If
   * the port is taken when the window ends, re-listening is retried with backoff for up to
   * `rebindTimeoutMs`; `whenListening()` reports the outcome.
   */
  refuseConnections(ms: number): void;
  /**
   * Holds every chunk read from now on in `direction` for `ms` before forwarding it; order is preserved.
   * `delay(0, direction)` ends the delay for bytes read from then on.
   */
  delay(ms: number, direction: FaultDirection): void;
  /** A blip: `refuseConnections(ms)`, then `reset()`, so reconnects are refused for the window. */
  outage(ms: number): void;
  /**
   * Back to pass-through: ends the black hole (held connections resume), every delay (held bytes are
   * delivered now), swallowed replies, a refusal window (listens again now) and pending drops (their
   * promises reject with FaultCancelledError).
   */
  heal(): void;
  /**
   * Resolves once the proxy accepts connections (at once unless refusing).
   * @throws ProxyRebindError (rejection) when the port could not be bound again after a refusal window;
   * FaultProxyClosedError after `close()`.
   */
  whenListening(): Promise<void>;
  /** Stops listening, destroys every connection, cancels pending faults. Idempotent; `stopAll()` calls it. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const DEFAULT_REBIND_TIMEOUT_MS = 5_000;
/** The longest delay `setTimeout` honours; larger values would fire after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;
/** Bytes a lane may hold (delay, slow receiver) before it stops reading its source: TCP backpressure. */
const MAX_HELD_BYTES_PER_LANE = 1024 * 1024;
const CLOSE_WAIT_MS = 2_000;

const noop = () => {};

interface PendingDrop {
  readonly thenReset: boolean;
  resolve(): void;
  reject(error: Error): void;
}

/** The faults in force, consulted by every connection. */
class Faults {
  blackholed = false;
  readonly delayMs = { upstream: 0, downstream: 0 };
  readonly armedDrops: PendingDrop[] = [];

  constructor(readonly target: FaultProxyTarget) {}
}

/** Bytes of one direction of one connection on their way from `source` to `sink`, in order. */
class Lane {
  readonly #queue: { chunk: Buffer; dueAt: number }[] = [];
  #heldBytes = 0;
  #sourceEnded = false;
  #sinkBlocked = false;
  #reading = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    readonly direction: 'upstream' | 'downstream',
    private readonly source: Socket,
    private readonly sink: Socket,
    private readonly faults: Faults,
    private readonly hooks: {
      /** False: swallow the chunk just read. */
      accept?: (chunk: Buffer) => boolean;
      /** Called just before a chunk is written to the sink. */
      beforeForward?: () => void;
    } = {},
  ) {
    source.on('data', (chunk: Buffer) => {
      if (hooks.accept?.(chunk) === false) return;
      this.#queue.push({ chunk, dueAt: performance.now() + faults.delayMs[direction] });
      this.#heldBytes += chunk.length;
      this.pump();
    });
    source.on('end', () => this.endOfSource());
    this.pump();
  }

  /** The source will send nothing more: forward what is held, then end the sink (FIN). */
  endOfSource(): void {
    this.#sourceEnded = true;
    this.pump();
  }

  /** Makes every held chunk due now (heal). */
  release(): void {
    for (const item of this.#queue) item.dueAt = 0;
    this.pump();
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
    this.#heldBytes = 0;
  }

  pump(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.sink.destroyed) {
      this.dispose();
      return;
    }
    while (this.#queue.length > 0 && !this.faults.blackholed && !this.#sinkBlocked) {
      const head = this.#queue[0]!;
      const waitMs = head.dueAt - performance.now();
      if (waitMs > 0) {
        this.#timer = setTimeout(() => this.pump(), Math.ceil(waitMs));
        this.#timer.unref();
        break;
      }
      this.#queue.shift();
      this.#heldBytes -= head.chunk.length;
      this.hooks.beforeForward?.();
      if (this.sink.destroyed) return;
      if (!this.sink.write(head.chunk)) {
        this.#sinkBlocked = true;
        this.sink.once('drain', () => {
          this.#sinkBlocked = false;
          this.pump();
        });
      }
    }
    if (this.#queue.length === 0 && this.#sourceEnded && !this.faults.blackholed && !this.sink.writableEnded)
      this.sink.end();
    this.#updateReading();
  }

  #updateReading(): void {
    const shouldRead =
      !this.faults.blackholed &&
      !this.#sinkBlocked &&
      !this.#sourceEnded &&
      this.#heldBytes < MAX_HELD_BYTES_PER_LANE;
    if (shouldRead === this.#reading || this.source.destroyed) return;
    this.#reading = shouldRead;
    if (shouldRead) this.source.resume();
    else this.source.pause();
  }
}

function resetSocket(socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** One accepted client and its connection to the target. */
class ProxiedConnection {
  #upstream: Socket | undefined;
  #lanes: Lane[] = [];
  #drop: PendingDrop | undefined;
  #swallowReplies = false;
  #clientClosed = false;
  #upstreamClosed = true;
  #finished = false;

  constructor(
    private readonly client: Socket,
    private readonly faults: Faults,
    private readonly onFinished: (connection: ProxiedConnection) => void,
  ) {
    client.setNoDelay(true);
    // ECONNRESET / EPIPE from either side are expected; 'close' reports them.
    client.on('error', noop);
    client.on('close', (hadError) => {
      this.#clientClosed = true;
      this.#onClose(hadError, this.#upstream, this.#lanes[0]);
    });
    if (!faults.blackholed) this.open();
  }

  /** False from the moment the client socket is reset or destroyed, before its 'close' event. */
  get clientOpen(): boolean {
    return !this.client.destroyed;
  }

  /** Connects to the target; deferred while a black hole holds new connections. */
  open(): void {
    if (this.#upstream !== undefined || this.client.destroyed) return;
    const upstream = connect({
      host: this.faults.target.host,
      port: this.faults.target.port,
      allowHalfOpen: true,
    });
    this.#upstream = upstream;
    this.#upstreamClosed = false;
    upstream.setNoDelay(true);
    upstream.on('error', noop);
    upstream.on('close', (hadError) => {
      this.#upstreamClosed = true;
      // A target that refuses or dies shows up to the client as a reset.
      this.#onClose(hadError, this.client, this.#lanes[1]);
    });
    this.#lanes = [
      new Lane('upstream', this.client, upstream, this.faults, {
        beforeForward: () => this.#claimArmedDrop(),
      }),
      new Lane('downstream', upstream, this.client, this.faults, {
        accept: () => this.#acceptReply(),
      }),
    ];
  }

  reset(): void {
    resetSocket(this.client);
    resetSocket(this.#upstream);
  }

  destroy(): void {
    this.client.destroy();
    this.#upstream?.destroy();
  }

  /** Re-applies the faults in force (after blackhole or heal). */
  refresh(): void {
    if (!this.faults.blackholed) this.open();
    for (const lane of this.#lanes) lane.pump();
  }

  /** Ends swallowed replies and a drop claimed by this connection, which rejects with `reason`. */
  cancelDrop(reason: Error): void {
    this.#swallowReplies = false;
    this.#drop?.reject(reason);
    this.#drop = undefined;
  }

  heal(): void {
    this.refresh();
    for (const lane of this.#lanes) lane.release();
  }

  #claimArmedDrop(): void {
    if (this.#drop !== undefined || this.#swallowReplies) return;
    this.#drop = this.faults.armedDrops.shift();
  }

  #acceptReply(): boolean {
    if (this.#swallowReplies) return false;
    const drop = this.#drop;
    if (drop === undefined) return true;
    this.#drop = undefined;
    if (drop.thenReset) this.reset();
    else this.#swallowReplies = true;
    drop.resolve();
    return false;
  }

  #onClose(hadError: boolean, other: Socket | undefined, laneToOther: Lane | undefined): void {
    if (hadError) resetSocket(other);
    // A clean close: what is still held toward the other side is delivered, then the other side is ended.
    else laneToOther?.endOfSource();
    if (!this.#clientClosed || !this.#upstreamClosed || this.#finished) return;
    this.#finished = true;
    for (const lane of this.#lanes) lane.dispose();
    // The request went out but no reply came before the connection closed: the drop has not happened.
    if (this.#drop !== undefined) this.faults.armedDrops.unshift(this.#drop);
    this.#drop = undefined;
    this.onFinished(this);
  }
}

interface Deferred {
  readonly promise: Promise<void>;
  settled: boolean;
  resolve(): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve = noop;
  let reject: (error: Error) => void = noop;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Callers await it when they care; an unobserved rejection must not crash the test process.
  promise.catch(noop);
  const result: Deferred = {
    promise,
    settled: false,
    resolve: () => {
      result.settled = true;
      resolve();
    },
    reject: (error) => {
      result.settled = true;
      reject(error);
    },
  };
  return result;
}

function listenOn(port: number, onConnection: (socket: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port }, () => {
      server.off('error', reject);
      // EMFILE and the like on accept must not crash the test process; the client sees its connect fail.
      server.on('error', noop);
      resolve(server);
    });
  });
}

class LoopbackFaultProxy implements FaultProxy {
  readonly host = LOOPBACK;
  readonly #faults: Faults;
  readonly #connections = new Set<ProxiedConnection>();
  readonly #rebindTimeoutMs: number;
  #port = 0;
  #server: Server | undefined;
  #listening = deferred();
  #refuseUntil = 0;
  #refuseTimer: NodeJS.Timeout | undefined;
  #rebind: AbortController | undefined;
  #closed: Promise<void> | undefined;

  constructor(target: FaultProxyTarget, rebindTimeoutMs: number) {
    this.#faults = new Faults(target);
    this.#rebindTimeoutMs = rebindTimeoutMs;
  }

  async listen(): Promise<void> {
    this.#server = await listenOn(0, (socket) => this.#accept(socket));
    const address = this.#server.address();
    if (address === null || typeof address !== 'object') throw new Error('fault proxy socket has no port');
    this.#port = address.port;
    // freePort() must not hand our port to a server while we refuse connections on it.
    reservePort(this.#port);
    this.#listening.resolve();
  }

  get port(): number {
    return this.#port;
  }

  get address(): string {
    return `${LOOPBACK}:${this.#port}`;
  }

  get target(): FaultProxyTarget {
    return this.#faults.target;
  }

  get connections(): number {
    let open = 0;
    for (const connection of this.#connections) if (connection.clientOpen) open++;
    return open;
  }

  get listening(): boolean {
    return this.#server !== undefined;
  }

  url(scheme: string): string {
    if (typeof scheme !== 'string' || !/^[a-z][a-z0-9+.-]*$/i.test(scheme))
      throw new InvalidArgumentError('scheme', scheme, 'a URL scheme such as "redis" or "http"');
    return `${scheme}://${this.address}`;
  }

  reset(): void {
    this.#assertOpen();
    for (const connection of this.#connections) connection.reset();
  }

  blackhole(): void {
    this.#assertOpen();
    this.#faults.blackholed = true;
    for (const connection of this.#connections) connection.refresh();
  }

  dropNextReply(options: DropNextReplyOptions = {}): Promise<void> {
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('options', options, 'an object such as { thenReset: false }');
    const { thenReset = true } = options;
    if (typeof thenReset !== 'boolean')
      throw new InvalidArgumentError('options.thenReset', thenReset, 'a boolean');
    this.#assertOpen();
    const drop = deferred();
    this.#faults.armedDrops.push({ thenReset, resolve: drop.resolve, reject: drop.reject });
    return drop.promise;
  }

  refuseConnections(ms: number): void {
    validateMs('ms', ms);
    this.#assertOpen();
    this.#refuseUntil = Math.max(this.#refuseUntil, performance.now() + ms);
    this.#stopListening();
    this.#refuseTimer = setTimeout(
      () => void this.#relisten(),
      Math.ceil(this.#refuseUntil - performance.now()),
    );
    this.#refuseTimer.unref();
  }

  delay(ms: number, direction: FaultDirection): void {
    validateMs('ms', ms);
    if (direction !== 'upstream' && direction !== 'downstream' && direction !== 'both')
      throw new InvalidArgumentError('direction', direction, "'upstream', 'downstream' or 'both'");
    this.#assertOpen();
    if (direction !== 'downstream') this.#faults.delayMs.upstream = ms;
    if (direction !== 'upstream') this.#faults.delayMs.downstream = ms;
  }

  outage(ms: number): void {
    // Refuse first, so a client reconnecting the moment it sees the reset is refused, not accepted.
    this.refuseConnections(ms);
    this.reset();
  }

  heal(): void {
    this.#assertOpen();
    this.#faults.blackholed = false;
    this.#faults.delayMs.upstream = 0;
    this.#faults.delayMs.downstream = 0;
    const cancelled = new FaultCancelledError('dropNextReply()', this.address);
    for (const drop of this.#faults.armedDrops.splice(0)) drop.reject(cancelled);
    for (const connection of this.#connections) {
      connection.cancelDrop(cancelled);
      connection.heal();
    }
    // Ends a refusal window early, and tries again after a failed rebind.
    if (this.#server === undefined && this.#rebind === undefined) {
      this.#refuseUntil = 0;
      void this.#relisten();
    }
  }

  whenListening(): Promise<void> {
    return this.#listening.promise;
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #close(): Promise<void> {
    untrackResource(this);
    const closed = new FaultProxyClosedError(this.address);
    const server = this.#server;
    this.#stopListening();
    this.#listening.reject(closed);
    for (const drop of this.#faults.armedDrops.splice(0)) drop.reject(closed);
    for (const connection of this.#connections) {
      connection.cancelDrop(closed);
      connection.destroy();
    }
    releasePort(this.#port);
    if (server !== undefined)
      await settleWithin(new Promise((resolve) => server.once('close', resolve)), CLOSE_WAIT_MS, undefined);
  }

  #assertOpen(): void {
    if (this.#closed !== undefined) throw new FaultProxyClosedError(this.address);
  }

  #accept(socket: Socket): void {
    if (this.#closed !== undefined) {
      socket.destroy();
      return;
    }
    this.#connections.add(
      new ProxiedConnection(socket, this.#faults, (connection) => this.#connections.delete(connection)),
    );
  }

  /** Closes the listening socket (open connections stay) and cancels a re-listen in progress. */
  #stopListening(): void {
    clearTimeout(this.#refuseTimer);
    this.#refuseTimer = undefined;
    this.#rebind?.abort();
    this.#rebind = undefined;
    this.#server?.close();
    this.#server = undefined;
    if (this.#listening.settled) this.#listening = deferred();
  }

  /**
   * Listens on the same port again. Between our close and this bind, another socket may have taken the
   * port (a server given it by the OS, an outgoing connection's local port); that race is retried with
   * backoff for up to `rebindTimeoutMs`.
   */
  async #relisten(): Promise<void> {
    clearTimeout(this.#refuseTimer);
    this.#refuseTimer = undefined;
    const rebind = new AbortController();
    this.#rebind = rebind;
    if (this.#listening.settled) this.#listening = deferred();
    const attempt = async () => {
      const server = await listenOn(this.#port, (socket) => this.#accept(socket));
      if (rebind.signal.aborted) {
        server.close();
        throw new AbortError('the refusal window was extended or the proxy closed');
      }
      return server;
    };
    try {
      const server = await pRetry(attempt, {
        retries: Number.POSITIVE_INFINITY,
        minTimeout: 10,
        maxTimeout: 200,
        maxRetryTime: this.#rebindTimeoutMs,
        shouldRetry: ({ error }) => (error as NodeJS.ErrnoException).code === 'EADDRINUSE',
        signal: rebind.signal,
        unref: true,
      });
      if (rebind.signal.aborted) {
        server.close();
        return;
      }
      this.#rebind = undefined;
      this.#server = server;
      this.#listening.resolve();
    } catch (error) {
      if (rebind.signal.aborted) return;
      this.#rebind = undefined;
      this.#listening.reject(new ProxyRebindError(this.#port, this.#rebindTimeoutMs, error));
    }
  }
}

function validateMs(field: string, ms: unknown): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_TIMER_MS)
    throw new InvalidArgumentError(field, ms, `a finite number of milliseconds from 0 to ${MAX_TIMER_MS}`);
}

const LOOPBACK_RULE =
  'a loopback address (127.0.0.0/8, ::1 or localhost): the proxy never leaves this machine';

const PORT_RULE = 'an integer port from 1 to 65535';
const TARGET_RULE = "'host:port' or { host, port }";

/** The address to connect to, or undefined when `host` is not a loopback address. */
function loopbackHost(host: unknown): string | undefined {
  if (host === 'localhost') return LOOPBACK;
  if (typeof host === 'string' && ((isIPv4(host) && host.startsWith('127.')) || host === '::1')) return host;
  return undefined;
}

function isPort(port: unknown): port is number {
  return typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65_535;
}

function parseTarget(target: unknown): FaultProxyTarget {
  if (typeof target === 'string') {
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target);
    if (match === null) throw new InvalidArgumentError('target', target, TARGET_RULE);
    const host = loopbackHost(match[1] ?? match[2]);
    if (host === undefined)
      throw new InvalidArgumentError('target', target, `${TARGET_RULE} with ${LOOPBACK_RULE}`);
    const port = Number(match[3]);
    if (!isPort(port)) throw new InvalidArgumentError('target', target, `${TARGET_RULE} with ${PORT_RULE}`);
    return { host, port };
  }
  if (typeof target !== 'object' || target === null)
    throw new InvalidArgumentError('target', target, TARGET_RULE);
  const { host, port } = target as Record<string, unknown>;
  const address = loopbackHost(host);
  if (address === undefined) throw new InvalidArgumentError('target.host', host, LOOPBACK_RULE);
  if (!isPort(port)) throw new InvalidArgumentError('target.port', port, PORT_RULE);
  return { host: address, port };
}

/**
 * Starts a fault proxy on an ephemeral 127.0.0.1 port forwarding to `target`. It passes bytes through
 * unchanged until a fault is injected. `stopAll()` closes it.
 * @throws InvalidArgumentError naming the field, for a non-loopback or malformed target or a bad option.
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('options', options, "an object such as { target: '127.0.0.1:6379' }");
  const target = parseTarget(options.target);
  const rebindTimeoutMs = options.rebindTimeoutMs ?? DEFAULT_REBIND_TIMEOUT_MS;
  validateMs('rebindTimeoutMs', rebindTimeoutMs);
  const proxy = new LoopbackFaultProxy(target, rebindTimeoutMs);
  await proxy.listen();
  trackResource(proxy);
  return proxy;
}
