import { BackendUnavailableError } from '@dlock/core';
import { type ACL, type Client, Exception, type Stat } from 'node-zookeeper-client';
import type { WatchFans, WatchKind, WatchSubscription, Watcher } from './watches.js';

export const BACKEND = 'zookeeper';

/** Server replies a lock recipe expects and handles itself; every other failure is a BackendUnavailableError. */
export type ExpectedReply = 'NO_NODE' | 'NODE_EXISTS' | 'NOT_EMPTY';

const EXPECTED_REPLIES: ReadonlyMap<number, ExpectedReply> = new Map([
  [Exception.NO_NODE, 'NO_NODE'],
  [Exception.NODE_EXISTS, 'NODE_EXISTS'],
  [Exception.NOT_EMPTY, 'NOT_EMPTY'],
]);

/**
 * Errors node-zookeeper-client makes up locally rather than receiving from a server: they say nothing
 * about whether the server is alive or whether it applied the request.
 */
const LOCAL_FAILURES: ReadonlySet<number> = new Set([
  Exception.CONNECTION_LOSS,
  Exception.SESSION_EXPIRED,
  Exception.AUTH_FAILED,
  Exception.OPERATION_TIMEOUT,
]);

/** A server reply the caller is expected to branch on (the node is missing, exists, has children). */
export class ZooKeeperReplyError extends Error {
  readonly reply: ExpectedReply;
  readonly path: string;
  constructor(reply: ExpectedReply, operation: string, path: string) {
    super(`${operation} ${path}: ${reply}`);
    this.name = 'ZooKeeperReplyError';
    this.reply = reply;
    this.path = path;
  }
}

export function isReply(error: unknown, reply: ExpectedReply): error is ZooKeeperReplyError {
  return error instanceof ZooKeeperReplyError && error.reply === reply;
}

/** The result of `work`, or undefined when the node it reads or deletes does not exist (NO_NODE). */
export async function unlessMissing<T>(work: Promise<T>): Promise<T | undefined> {
  try {
    return await work;
  } catch (error) {
    if (isReply(error, 'NO_NODE')) return undefined;
    throw error;
  }
}

export type { Watcher, WatchSubscription };

/**
 * Failures that repeat until someone changes something (credentials, ACLs): core does not retry them.
 * Everything else that is not an expected reply is transient.
 */
const PERMANENT_FAILURES: ReadonlySet<number> = new Set([
  Exception.NO_AUTH,
  Exception.INVALID_ACL,
  Exception.AUTH_FAILED,
]);

export interface CallsOptions {
  /** The connect string, named in every BackendUnavailableError. */
  readonly address: string;
  /** Longest wait for any one reply. */
  readonly callTimeoutMs: number;
  /** ACL for every node created through these calls. */
  readonly acl: ACL[];
  /** Told the local send time of every request the server answered (proof the session was alive then). */
  readonly onAnswer: (sentAt: number) => void;
  /** The session's shared watchers (one per kind and path). */
  readonly watches: WatchFans;
}

interface PendingCall {
  fail(error: BackendUnavailableError): void;
}

/** The part of node-zookeeper-client's connection (internal) the calls batch their writes on. */
interface Connection {
  socket?: { cork(): void; uncork(): void };
}

/**
 * The one promise layer over node-zookeeper-client's callback API. The library has no request timeout
 * (alexguan/node-zookeeper-client PR #16 was never merged): a request queued while disconnected waits
 * until a reconnect, forever if need be. Every call here settles within `callTimeoutMs`. Values the
 * callbacks pass besides the result (the Stat) are kept, which a generic promisify would drop.
 */
export class ZooKeeperCalls {
  readonly #client: Client;
  readonly #options: CallsOptions;
  readonly #connection: Connection;
  readonly #pending = new Set<PendingCall>();
  #failure: BackendUnavailableError | undefined;
  #batching = false;

  constructor(client: Client, options: CallsOptions) {
    this.#client = client;
    this.#options = options;
    this.#connection = (client as unknown as { connectionManager: Connection }).connectionManager;
  }

  /** Creates a node and resolves with its path (with the sequence appended for sequential modes). */
  create(path: string, data: Buffer, mode: number): Promise<string> {
    return this.#call<string>('create', path, (done) =>
      this.#client.create(path, data, this.#options.acl, mode, (error, created) => done(error, created)),
    );
  }

  /** Deletes a node, any version. NO_NODE and NOT_EMPTY reject with a ZooKeeperReplyError. */
  remove(path: string): Promise<void> {
    return this.#call<void>('remove', path, (done) => this.#client.remove(path, -1, (error) => done(error)));
  }

  /** Replaces a node's data, any version, and resolves with its new Stat. NO_NODE rejects with a ZooKeeperReplyError. */
  setData(path: string, data: Buffer): Promise<Stat> {
    return this.#call<Stat>('setData', path, (done) =>
      this.#client.setData(path, data, -1, (error, stat) => done(error, stat)),
    );
  }

  /**
   * Subscribes `listener` to the next event of a (kind, path) watch; pass the subscription to the call
   * of that kind to set the watch, and cancel it when no longer interested (see WatchFans).
   */
  watch(kind: WatchKind, path: string, listener: Watcher): WatchSubscription {
    return this.#options.watches.subscribe(kind, path, listener);
  }

  /**
   * The node's Stat, or null when it does not exist. With a watch, it fires once when the node is
   * created, changed or deleted — on a missing node the watch stays until the node appears.
   */
  exists(path: string, watch?: WatchSubscription): Promise<Stat | null> {
    return this.#call<Stat | null>(
      'exists',
      path,
      (done) => {
        const callback = (error: Error | Exception | null, stat: Stat) => done(error, stat ?? null);
        if (watch) this.#client.exists(path, watch.watcher, callback);
        else this.#client.exists(path, callback);
      },
      watch,
    );
  }

  /**
   * The node's data and Stat. With a watch, it fires once when the node's data changes or the node is
   * deleted. A missing node rejects NO_NODE and leaves no watch behind — which is why waiters watch
   * their predecessor with getData rather than exists (an exists watch on a node that is already gone
   * would stay registered for the life of the session).
   */
  getData(path: string, watch?: WatchSubscription): Promise<{ data: Buffer; stat: Stat }> {
    return this.#call(
      'getData',
      path,
      (done) => {
        const callback = (error: Error | Exception | null, data: Buffer, stat: Stat) =>
          done(error, { data: data ?? Buffer.alloc(0), stat });
        if (watch) this.#client.getData(path, watch.watcher, callback);
        else this.#client.getData(path, callback);
      },
      watch,
    );
  }

  /** The node's children (names, unordered) and its Stat. With a watch, it fires once on any child change. */
  getChildren(path: string, watch?: WatchSubscription): Promise<{ children: string[]; stat: Stat }> {
    return this.#call(
      'getChildren',
      path,
      (done) => {
        const callback = (error: Error | Exception | null, children: string[], stat: Stat) =>
          done(error, { children: children ?? [], stat });
        if (watch) this.#client.getChildren(path, watch.watcher, callback);
        else this.#client.getChildren(path, callback);
      },
      watch,
    );
  }

  /** Fails every pending call and every later one with `error` (the session is closing or gone). */
  failAll(error: BackendUnavailableError): void {
    this.#failure ??= error;
    for (const call of [...this.#pending]) call.fail(error);
  }

  #unavailable(operation: string, path: string, detail: string, cause?: unknown): BackendUnavailableError {
    const code = cause instanceof Exception ? cause.getCode() : undefined;
    return new BackendUnavailableError(BACKEND, this.#options.address, `${operation} ${path}: ${detail}`, {
      cause,
      transient: code === undefined || !PERMANENT_FAILURES.has(code),
    });
  }

  /**
   * Requests sent in one synchronous run (a create with the parent's, a read with the children, a
   * delete with the parent's) leave in one write: node-zookeeper-client writes each request to the
   * socket as it is queued (one syscall and, with Nagle off, one segment each: about 0.1 ms apiece on
   * a busy loopback, dlock issue 13), so the socket is corked for the run and uncorked in the next
   * microtask. Same bytes in the same order; the server still answers each request in turn. While
   * disconnected the library queues requests and writes them itself on reconnect, to a new socket.
   */
  #batch(): void {
    if (this.#batching) return;
    const socket = this.#connection.socket;
    if (!socket) return;
    this.#batching = true;
    socket.cork();
    queueMicrotask(() => {
      this.#batching = false;
      socket.uncork();
    });
  }

  #call<T>(
    operation: string,
    path: string,
    start: (done: (error: unknown, value?: T) => void) => void,
    watch?: WatchSubscription,
  ): Promise<T> {
    if (this.#failure) return Promise.reject(this.#failure);
    const sentAt = performance.now();
    const watches = this.#options.watches;
    // The library registers the watcher when it gets the reply, even after this call timed out.
    let answered = false;
    const answer = (registered: boolean) => {
      if (answered || !watch) return;
      answered = true;
      watches.answered(watch, registered);
    };
    if (watch) watches.sending(watch);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const call: PendingCall = {
        fail: (error) => settle(() => reject(error)),
      };
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(call);
        outcome();
      };
      const timer = setTimeout(
        () =>
          settle(() =>
            reject(
              this.#unavailable(
                operation,
                path,
                `no reply within callTimeoutMs=${this.#options.callTimeoutMs}`,
              ),
            ),
          ),
        this.#options.callTimeoutMs,
      );
      this.#pending.add(call);
      const done = (error: unknown, value?: T) => {
        answer(!error);
        const code = error instanceof Exception ? error.getCode() : undefined;
        if (!error || (code !== undefined && !LOCAL_FAILURES.has(code))) this.#options.onAnswer(sentAt);
        if (settled) return;
        if (!error) return settle(() => resolve(value as T));
        const expected = code === undefined ? undefined : EXPECTED_REPLIES.get(code);
        if (expected) return settle(() => reject(new ZooKeeperReplyError(expected, operation, path)));
        settle(() => reject(this.#unavailable(operation, path, describeFailure(error), error)));
      };
      this.#batch();
      try {
        start(done);
      } catch (error) {
        answer(false);
        // The library asserts on its arguments synchronously; paths are validated before they get here.
        settle(() =>
          reject(this.#unavailable(operation, path, `rejected by the client: ${String(error)}`, error)),
        );
      }
    });
  }
}

function describeFailure(error: unknown): string {
  if (!(error instanceof Exception)) return String(error);
  switch (error.getCode()) {
    case Exception.CONNECTION_LOSS:
      return 'connection lost before the reply (the request may or may not have been applied)';
    case Exception.SESSION_EXPIRED:
      return 'the session expired';
    case Exception.NO_AUTH:
      return 'not authorised (NO_AUTH): check the auth and acl options';
    case Exception.INVALID_ACL:
      return 'the acl option was refused by the server (INVALID_ACL)';
    default:
      return `${error.getName()} (${error.getCode()})`;
  }
}
