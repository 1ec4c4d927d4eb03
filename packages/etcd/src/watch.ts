import { FilterType, type IWatchRequest, type IWatchResponse } from 'etcd3';
import pRetry from 'p-retry';
import { type EtcdConnection, closeStream, describeFailure } from './connection.js';

type WatchStream = Awaited<ReturnType<EtcdConnection['client']['watchClient']['watch']>>;

/** Why a watch woke its owner. */
export type WatchWake =
  /** Events arrived (for a delete-only watch: the key was deleted). */
  | 'events'
  /** The server cancelled the watch (its start revision was compacted, say); it sends nothing more. */
  | 'cancelled'
  /** The watch stream broke and the watch is live again on a new one; events in between are replayed. */
  | 'resumed';

export interface WatchSpec {
  readonly key: Buffer;
  /** Watch the range [key, rangeEnd) instead of the one key. */
  readonly rangeEnd?: Buffer;
  /** The first revision whose events are reported. */
  readonly startRevision: bigint;
  /** Report only deletes. */
  readonly onlyDeletes?: boolean;
}

export interface Watch {
  /** True once the server cancelled it or its owner did: it will not wake its owner again. */
  readonly ended: boolean;
  /** Stops the watch. Idempotent; never throws. */
  cancel(): void;
}

/** Reconnect back-off of the watch stream: short, so a watch is live again soon after the server is. */
const RECONNECT = { minTimeout: 50, maxTimeout: 500, factor: 2, randomize: true } as const;

class HubWatch implements Watch {
  readonly id: number;
  readonly spec: WatchSpec;
  readonly wake: (why: WatchWake) => void;
  /** Where a re-created watch resumes: the revision after the last event delivered. */
  nextRevision: bigint;
  /** Whether it was live on a stream that broke, so its re-creation is reported as 'resumed'. */
  resuming = false;
  ended = false;
  readonly #hub: WatchHub;

  constructor(hub: WatchHub, id: number, spec: WatchSpec, wake: (why: WatchWake) => void) {
    this.#hub = hub;
    this.id = id;
    this.spec = spec;
    this.wake = wake;
    this.nextRevision = spec.startRevision;
  }

  cancel(): void {
    this.#hub.remove(this);
  }
}

/**
 * All watches of a connection on one gRPC watch stream that dlock owns, instead of etcd3's
 * WatchManager. etcd3 1.1.2's manager throws `ClientRuntimeError: Failed to find watcher for
 * IWatchResponse` from inside a gRPC data handler — an uncaught exception that kills the process —
 * whenever a response names a watch it no longer lists: after a reconnect it re-creates every watch
 * from its last revision, the server cancels the one whose revision was compacted meanwhile, etcd3
 * drops it from its list but keeps its id, and the `cancel()` of that watcher then sends a cancel
 * whose reply matches nothing (dlock issue 12 #1). Its reconnect back-off also grows to 30 s.
 *
 * Here, a response for an id that is not (or no longer) registered is ignored; watch ids are chosen
 * by the client (etcd ≥ 3.4 `WatchCreateRequest.watch_id`) and never reused, so a late response can
 * never be mistaken for another watch's; a watch the server cancelled is reported to its owner, who
 * re-reads and watches again from a current revision; after the stream breaks, it is reopened with a
 * back-off of at most 500 ms while any watch is registered, every watch is re-created from the
 * revision after the last event it delivered, and its owner is told ('resumed') so it can re-read
 * what it shows.
 */
export class WatchHub {
  readonly #connection: EtcdConnection;
  readonly #watches = new Map<number, HubWatch>();
  #nextId = 1;
  #stream: WatchStream | undefined;
  /** Aborted when the reconnect loop must stop: nothing left to watch, or the hub closed. */
  #reconnecting: AbortController | undefined;
  #closed = false;

  constructor(connection: EtcdConnection) {
    this.#connection = connection;
  }

  /** How many watches are registered (for tests and leak checks). */
  get size(): number {
    return this.#watches.size;
  }

  /** Starts a watch; `wake` is called on events, on a server-side cancel, and after a resume. */
  open(spec: WatchSpec, wake: (why: WatchWake) => void): Watch {
    const watch = new HubWatch(this, this.#nextId++, spec, wake);
    if (this.#closed) {
      watch.ended = true;
      return watch;
    }
    this.#watches.set(watch.id, watch);
    if (this.#stream) this.#create(this.#stream, watch);
    else this.#reconnect();
    return watch;
  }

  /** Removes a watch (its owner's cancel); the stream closes when the last one goes. */
  remove(watch: HubWatch): void {
    if (watch.ended) return;
    watch.ended = true;
    if (this.#watches.get(watch.id) !== watch) return;
    this.#watches.delete(watch.id);
    const stream = this.#stream;
    if (stream) write(stream, { cancel_request: { watch_id: watch.id } });
    if (this.#watches.size === 0) this.#shutDown();
  }

  close(): void {
    this.#closed = true;
    for (const watch of this.#watches.values()) watch.ended = true;
    this.#watches.clear();
    this.#shutDown();
  }

  /** Opens a stream and re-creates every registered watch on it, retrying until one answers. */
  #reconnect(): void {
    if (this.#reconnecting || this.#closed) return;
    const reconnecting = new AbortController();
    this.#reconnecting = reconnecting;
    pRetry(() => this.#connect(reconnecting), {
      ...RECONNECT,
      retries: Number.POSITIVE_INFINITY,
      signal: reconnecting.signal,
      unref: true,
    })
      .catch(() => {
        // Stopped: nothing left to watch, or the hub closed.
      })
      .finally(() => {
        if (this.#reconnecting === reconnecting) this.#reconnecting = undefined;
      });
  }

  /**
   * One try: a new stream with every watch created on it. Resolves at the stream's first response;
   * rejects when it breaks first or stays silent for callTimeoutMs (a black-holed connection).
   */
  async #connect(reconnecting: AbortController): Promise<void> {
    let stream: WatchStream;
    try {
      stream = await this.#connection.client.watchClient.watch();
    } catch (error) {
      // p-retry gives up at once on a TypeError; every failure to open a stream is worth a retry.
      throw new Error(`could not open a watch stream: ${describeFailure(error)}`);
    }
    if (reconnecting.signal.aborted) {
      closeStream(stream);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (failure?: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(silent);
        reconnecting.signal.removeEventListener('abort', stopped);
        if (failure === undefined) resolve();
        else reject(failure);
      };
      // The hub shut the stream down meanwhile (nothing left to watch, or closed).
      const stopped = () => settle(new Error('the watch stream is no longer needed'));
      const silent = setTimeout(() => {
        if (this.#stream === stream) this.#stream = undefined;
        closeStream(stream);
        settle(new Error('the watch stream did not answer'));
      }, this.#connection.callTimeoutMs);
      reconnecting.signal.addEventListener('abort', stopped, { once: true });
      stream.on('data', (response: IWatchResponse) => {
        if (!settled) {
          // Connected: a break from now on starts a new reconnect loop (this one ends here).
          if (this.#reconnecting === reconnecting) this.#reconnecting = undefined;
          settle();
        }
        this.#onResponse(stream, response);
      });
      const broken = (error: unknown) => {
        this.#onBroken(stream);
        settle(error ?? new Error('the watch stream broke'));
      };
      // Every stream keeps an 'error' listener for its whole life: an EventEmitter without one throws.
      stream.on('error', broken);
      stream.on('end', () => broken(new Error('the watch stream ended')));
      this.#stream = stream;
      for (const watch of this.#watches.values()) this.#create(stream, watch);
    });
  }

  #create(stream: WatchStream, watch: HubWatch): void {
    const { spec } = watch;
    write(stream, {
      create_request: {
        key: spec.key,
        ...(spec.rangeEnd ? { range_end: spec.rangeEnd } : {}),
        start_revision: String(watch.nextRevision),
        ...(spec.onlyDeletes ? { filters: [FilterType.Noput] } : {}),
        watch_id: watch.id,
      },
    });
  }

  #onResponse(stream: WatchStream, response: IWatchResponse): void {
    if (stream !== this.#stream) return;
    const watch = this.#watches.get(Number(response.watch_id));
    // The reply to a cancel, a late event of a cancelled watch, a progress notification: nothing to do.
    if (!watch) return;
    if (response.canceled) {
      this.#watches.delete(watch.id);
      watch.ended = true;
      // A compacted watch is cancelled by the server but stays in the stream's table until the
      // client cancels it too (as Go's client does); the reply to that names no watch, so it is ignored.
      if (response.compact_revision !== '0') write(stream, { cancel_request: { watch_id: watch.id } });
      if (this.#watches.size === 0) this.#shutDown();
      watch.wake('cancelled');
      return;
    }
    if (response.created) {
      if (watch.resuming) {
        watch.resuming = false;
        watch.wake('resumed');
      }
      return;
    }
    const last = response.events.at(-1);
    if (!last) return;
    watch.nextRevision = BigInt(last.kv.mod_revision) + 1n;
    watch.wake('events');
  }

  #onBroken(stream: WatchStream): void {
    if (stream !== this.#stream) return;
    this.#stream = undefined;
    closeStream(stream);
    for (const watch of this.#watches.values()) watch.resuming = true;
    if (this.#watches.size > 0) this.#reconnect();
  }

  #shutDown(): void {
    this.#reconnecting?.abort();
    this.#reconnecting = undefined;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream) closeStream(stream);
  }
}

function write(stream: WatchStream, request: IWatchRequest): void {
  try {
    stream.write(request);
  } catch {
    // A stream that is already closing: its 'error' or 'end' handler takes care of the watches.
  }
}
