import {
  type Attempt,
  type Capabilities,
  type HolderInfo,
  type KeyInspection,
  type LockDriver,
  type LockRequest,
  raceAbort,
} from '@dlock/core';
import { unlessMissing } from './client.js';
import { LOCK_NAME, decodeKey, lockPath, queueOrder } from './layout.js';
import {
  QueueDriver,
  type QueueNode,
  type ZooKeeperWatchEvent,
  childrenOf,
  describeNode,
  describeQueued,
} from './nodes.js';
import type { SessionOptions, ZooKeeperSession } from './session.js';
import { SessionSource } from './sessions.js';
import type { WatchKind, WatchSubscription } from './watches.js';

export type { ZooKeeperWatchEvent } from './nodes.js';

export const zooKeeperCapabilities: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'session',
  safety:
    'A lease lives as long as its ZooKeeper session; ttlMs plays no part. Its signal aborts when the client ' +
    "notices the session is in doubt: at once on a disconnect (onDisconnect 'abort', the default) or once " +
    "sessionTimeout minus a margin has passed since the last reply ('session-timeout'). A process paused " +
    '(GC, SIGSTOP) past the session timeout cannot notice in time: the server expires its session and ' +
    'grants the next contender while the paused process still believes it holds the lock until it runs ' +
    "again. Pass the fencing token (the lock node's czxid, larger for every new holder) to the protected " +
    "resource so it rejects a stale holder's writes.",
};

export interface DriverOptions {
  readonly root: string;
  readonly session: SessionOptions;
  readonly onWatchEvent?: (event: ZooKeeperWatchEvent) => void;
}

/** `work`'s result, or undefined as soon as `signal` aborts (a late failure of `work` is swallowed). */
async function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  try {
    return await raceAbort(work, signal);
  } catch (error) {
    if (signal.aborted) return undefined;
    throw error;
  }
}

/**
 * The ZooKeeper lock recipe as a dlock driver: ephemeral sequential nodes, the lowest holds, each
 * waiter watches only its immediate predecessor (one notification per release, however many wait),
 * the holder's token is its node's czxid. Waiting, retries, timeouts and the clean-up of unknown
 * outcomes are core's; this driver only knows how to take a place in line by a protected name, find
 * it again, and give it up (nodes.ts, shared with the semaphore and read-write drivers). It owns the
 * provider's session, which the other drivers share.
 */
export class ZooKeeperLockDriver extends QueueDriver implements LockDriver<QueueNode, QueueNode> {
  readonly capabilities = zooKeeperCapabilities;
  readonly #sessions: SessionSource;

  constructor(options: DriverOptions) {
    const sessions = new SessionSource(options.session);
    super({
      root: options.root,
      address: options.session.connectString,
      session: () => sessions.current(),
      onWatchEvent: options.onWatchEvent,
    });
    this.#sessions = sessions;
  }

  /**
   * One attempt. With a ticket from this session, re-checks that place in line, or — when its create's
   * reply was lost — finds the node by its protected name and adopts it (or creates it when the lookup
   * proves the create was never applied). A ticket of a lost session is replaced by a new node in the
   * current one under the same protected id; the old node goes with its session. Returns 'unknown'
   * whenever a transient failure leaves a node of ours possibly in place.
   */
  attempt(request: LockRequest, ticket: QueueNode | undefined): Promise<Attempt<QueueNode, QueueNode>> {
    return this.attemptInQueue(
      request,
      ticket,
      { name: LOCK_NAME, names: [LOCK_NAME], label: 'lock' },
      (ahead) => ahead.at(-1),
    );
  }

  async holder(key: string): Promise<HolderInfo | null> {
    const session = await this.session();
    const parent = lockPath(this.root, key);
    for (;;) {
      const head = queueOrder(await childrenOf(session.calls, parent))[0];
      if (head === undefined) return null;
      const found = await describeNode(session.calls, `${parent}/${head}`);
      // Undefined: that holder released between the two reads; read the queue again.
      if (found !== undefined) return found;
    }
  }

  /**
   * The queue under the key's parent in Curator's order: the first node holds the lock, the rest
   * wait in line. Each node's data names its owner and its ephemeralOwner the session keeping it.
   */
  async inspect(key: string): Promise<KeyInspection> {
    const session = await this.session();
    const parent = lockPath(this.root, key);
    for (;;) {
      const line = queueOrder(await childrenOf(session.calls, parent));
      const nodes = await Promise.all(line.map((name) => describeQueued(session.calls, `${parent}/${name}`)));
      // The holder released between the two reads: read the queue again, as holder() does.
      if (nodes.length > 0 && nodes[0] === undefined) continue;
      const [head, ...rest] = nodes.filter((node) => node !== undefined);
      if (head === undefined) return { holder: null, waiters: [] };
      return {
        holder: { identity: head.identity, token: head.token },
        session: head.session,
        waiters: rest.map(({ identity, session }) => ({ identity, session })),
      };
    }
  }

  /** The root's children whose names decode to a key under `prefix`, each with a lock node in line. */
  async heldKeys(prefix: string): Promise<string[]> {
    const session = await this.session();
    const held: string[] = [];
    for (const name of await childrenOf(session.calls, this.root)) {
      const key = decodeKey(name);
      if (key === undefined || !key.startsWith(prefix)) continue;
      const line = queueOrder(await childrenOf(session.calls, `${this.root}/${name}`));
      if (line.length > 0) held.push(key);
    }
    return held.sort();
  }

  /**
   * The holder now, then each change (coalesced, see LockProvider.watchHolder), until `signal` aborts. Every await (opening a session, which
   * can take connectTimeoutMs; a read while reconnecting) ends as soon as the signal aborts, and no
   * listener is added to a signal that has already aborted (dlock issue 12).
   */
  async *watchHolder(key: string, signal: AbortSignal): AsyncGenerator<HolderInfo | null> {
    const parent = lockPath(this.root, key);
    let last: string | undefined;
    while (!signal.aborted) {
      const session = await unlessAborted(this.session(), signal);
      if (session === undefined || signal.aborted) return;
      let wake = () => {};
      const changed = new Promise<void>((resolve) => {
        wake = resolve;
      });
      const unsubscribe = session.onChange(wake);
      signal.addEventListener('abort', wake, { once: true });
      const subscriptions: WatchSubscription[] = [];
      const watch = (kind: WatchKind, path: string) => {
        const subscription = session.calls.watch(kind, path, (event) => {
          this.report(event, 'holder');
          wake();
        });
        subscriptions.push(subscription);
        return subscription;
      };
      try {
        let holder: HolderInfo | null | undefined;
        try {
          holder = await unlessAborted(this.#readHolderAndWatch(session, parent, watch, signal), signal);
        } catch (error) {
          // A session lost mid-read: read again in the next one.
          if (session.lost.aborted) continue;
          throw error;
        }
        if (holder === undefined || signal.aborted) return;
        const seen = holder ? `${holder.identity}\u0000${holder.token}` : '';
        if (seen !== last) {
          last = seen;
          yield holder;
        }
        await changed;
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', wake);
        for (const subscription of subscriptions) subscription.cancel();
      }
    }
  }

  override async close(): Promise<void> {
    await this.#sessions.close();
  }

  /** For tests: the sessions currently serving this driver. */
  liveSessions(): ZooKeeperSession[] {
    return this.#sessions.live();
  }

  /**
   * Reads the holder and leaves one watch that fires when it may change: on the holder's node while
   * the key is held (new contenders queue behind it and cannot change the holder), on the parent's
   * children while it has no lock node, on the parent's existence while it is missing.
   */
  async #readHolderAndWatch(
    session: ZooKeeperSession,
    parent: string,
    watch: (kind: WatchKind, path: string) => WatchSubscription,
    signal: AbortSignal,
  ): Promise<HolderInfo | null> {
    while (!signal.aborted) {
      const listed = await unlessMissing(session.calls.getChildren(parent));
      if (!listed) {
        if ((await session.calls.exists(parent, watch('exists', parent))) === null) return null;
        continue;
      }
      const head = queueOrder(listed.children)[0];
      if (head === undefined) {
        const watched = await unlessMissing(session.calls.getChildren(parent, watch('children', parent)));
        if (watched && queueOrder(watched.children).length === 0) return null;
        continue;
      }
      const path = `${parent}/${head}`;
      const holder = await describeNode(session.calls, path, watch('data', path));
      if (holder) return holder;
    }
    return null;
  }
}
