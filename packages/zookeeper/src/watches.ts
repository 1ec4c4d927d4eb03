import type { Event } from 'node-zookeeper-client';

export type Watcher = (event: Event) => void;

/** Which library call sets the watch: getData, getChildren or exists (each has its own watcher table). */
export type WatchKind = 'data' | 'children' | 'exists';

/** One party's interest in the next event of a (kind, path) watch. */
export interface WatchSubscription {
  readonly kind: WatchKind;
  readonly path: string;
  /** The function to hand to the library call that sets the watch: the same one for every subscriber. */
  readonly watcher: Watcher;
  /** Stop listening. The library keeps the shared watcher until the watch fires, but nothing more. */
  cancel(): void;
}

interface Fan {
  readonly watcher: Watcher;
  readonly listeners: Set<Watcher>;
  /** Whether the library holds `watcher` (a call that sets the watch succeeded, and it has not fired). */
  registered: boolean;
  /** Calls carrying `watcher` that the library has not answered yet (each may still register it). */
  inFlight: number;
}

/**
 * One library watcher per (kind, path) per session, fanned out to whoever listens now.
 *
 * node-zookeeper-client 1.1.3 keeps a watcher function registered on a path until the watch fires: it
 * has no way to remove one (no removeWatches), and it de-duplicates only identical functions. A waiter
 * that gave up before its predecessor changed used to leave its own function behind on the holder's
 * node: 2000 timed-out acquires left 1991 listeners, 2.6 MB of heap and a MaxListenersExceededWarning
 * (dlock issue 12). Here the library only ever sees one stable function per (kind, path) while it
 * holds one, and a listener that goes away just leaves the fan. What stays registered is bounded by
 * the paths watched, whatever the number of waiters that come and go.
 */
export class WatchFans {
  readonly #fans = new Map<string, Fan>();

  /** Adds `listener` for the next event of the (kind, path) watch. */
  subscribe(kind: WatchKind, path: string, listener: Watcher): WatchSubscription {
    const id = `${kind}:${path}`;
    let fan = this.#fans.get(id);
    if (!fan) {
      const listeners = new Set<Watcher>();
      const created: Fan = {
        listeners,
        registered: false,
        inFlight: 0,
        watcher: (event) => {
          // A watch fires once and the library then forgets the function: the next subscriber starts
          // a new fan. A call sent before the event and answered after it may register this function
          // again (one stale watcher until the path's next event, never more per call).
          created.registered = false;
          if (this.#fans.get(id) === created) this.#fans.delete(id);
          const notified = [...listeners];
          listeners.clear();
          for (const notify of notified) notify(event);
        },
      };
      fan = created;
      this.#fans.set(id, fan);
    }
    const joined = fan;
    joined.listeners.add(listener);
    return {
      kind,
      path,
      watcher: joined.watcher,
      cancel: () => {
        joined.listeners.delete(listener);
        this.#dropIfIdle(id, joined);
      },
    };
  }

  /** A call carrying `subscription`'s watcher goes out. */
  sending(subscription: WatchSubscription): void {
    const fan = this.#fanOf(subscription);
    if (fan) fan.inFlight++;
  }

  /** The library answered that call: `registered` when it now holds the watcher. */
  answered(subscription: WatchSubscription, registered: boolean): void {
    const fan = this.#fanOf(subscription);
    if (!fan) return;
    fan.inFlight--;
    if (registered) fan.registered = true;
    this.#dropIfIdle(`${subscription.kind}:${subscription.path}`, fan);
  }

  /** Open fans (kind, path), for diagnostics and tests. */
  get size(): number {
    return this.#fans.size;
  }

  #fanOf(subscription: WatchSubscription): Fan | undefined {
    const fan = this.#fans.get(`${subscription.kind}:${subscription.path}`);
    return fan?.watcher === subscription.watcher ? fan : undefined;
  }

  /** Forgets a fan nobody listens to and the library neither holds nor may still register. */
  #dropIfIdle(id: string, fan: Fan): void {
    if (fan.listeners.size > 0 || fan.registered || fan.inFlight > 0) return;
    if (this.#fans.get(id) === fan) this.#fans.delete(id);
  }
}
