// A cache that many readers serve and one writer rebuilds (Curator's InterProcessReadWriteLock,
// Redisson's RReadWriteLock, etcd's recipes.RWMutex are used for this). The rebuild is not atomic: it
// clears the cache and fills it entry by entry, as a rebuild of a shared cache (a Redis hash, a table)
// does. Readers take the read lock and share it; the rebuild takes the write lock, so no reader ever
// sees a half-built cache. Readers keep arriving all the time, yet every rebuild gets its turn: once
// the writer waits, readers that arrive after it queue behind it (no writer starvation, where the
// backend declares fairness 'fifo'). The cache refuses a rebuild whose fencing token is lower than the
// last one it accepted, so a writer paused past its lease cannot overwrite a newer rebuild.
import { withReadLock, withWriteLock } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

const ENTRIES = 5;
const REBUILDS = 4;
const READERS_PER_INSTANCE = 3;

/** Stands in for the shared cache: entries tagged with the rebuild that wrote them, with a network delay. */
class SharedCache {
  readonly entries = new Map<string, number>();
  #lastToken = -1n;
  refusedRebuilds = 0;

  async rebuild(version: number, token: bigint): Promise<void> {
    if (token < this.#lastToken) {
      this.refusedRebuilds++;
      return;
    }
    this.#lastToken = token;
    this.entries.clear();
    for (let entry = 0; entry < ENTRIES; entry++) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      this.entries.set(`product-${entry}`, version);
    }
  }

  /** What a reader serves: consistent when every entry is there and all come from one rebuild. */
  async serve(): Promise<{ consistent: boolean; version: number | undefined }> {
    await new Promise((resolve) => setTimeout(resolve, 3));
    const versions = new Set(this.entries.values());
    const [version] = versions;
    return { consistent: this.entries.size === ENTRIES && versions.size === 1, version };
  }
}

export interface ReadWriteCacheResult {
  readonly rebuilds: number;
  readonly expectedRebuilds: number;
  /** Reads served, and reads that saw a half-built cache (must be 0). */
  readonly reads: number;
  readonly inconsistentReads: number;
  /** Most readers inside at once: readers share the lock. */
  readonly mostReadersTogether: number;
  /** Most writers inside at once, and writers inside beside a reader (must be 1 and 0). */
  readonly mostWritersTogether: number;
  readonly writesBesideReaders: number;
  /** The versions readers saw, in order of their reads: they never go back. */
  readonly versionsSeen: readonly number[];
}

export async function main(log: (line: string) => void = console.log): Promise<ReadWriteCacheResult> {
  const providers = await instanceProviders(3);
  const locks = providers.map((provider) => provider.readWriteLock('catalog-cache'));
  const cache = new SharedCache();
  const options = { ttlMs: 5_000, waitMs: 10_000 };
  let [readers, writers, mostReaders, mostWriters, writesBesideReaders] = [0, 0, 0, 0, 0];
  let [reads, inconsistentReads, rebuilds] = [0, 0, 0];
  const versionsSeen: number[] = [];

  const first = locks[0];
  if (!first) throw new Error('no instance');
  await withWriteLock(first, (lease) => cache.rebuild(0, lease.token), options);

  let rebuilding = true;
  // Instance 1 rebuilds the cache every 40 ms; the readers on every instance keep serving meanwhile.
  const writer = (async () => {
    for (let version = 1; version <= REBUILDS; version++) {
      await new Promise((resolve) => setTimeout(resolve, 40));
      await withWriteLock(
        first,
        async (lease) => {
          mostWriters = Math.max(mostWriters, ++writers);
          if (readers > 0) writesBesideReaders++;
          try {
            await cache.rebuild(version, lease.token);
            rebuilds++;
          } finally {
            writers--;
          }
        },
        options,
      );
      log(`rebuild ${version} done (${reads} reads so far)`);
    }
    rebuilding = false;
  })();
  const reader = async (lock: (typeof locks)[number]) => {
    while (rebuilding) {
      await withReadLock(
        lock,
        async () => {
          mostReaders = Math.max(mostReaders, ++readers);
          if (writers > 0) writesBesideReaders++;
          try {
            const served = await cache.serve();
            reads++;
            if (!served.consistent) inconsistentReads++;
            if (served.version !== undefined) versionsSeen.push(served.version);
          } finally {
            readers--;
          }
        },
        options,
      );
    }
  };
  await Promise.all([
    writer,
    ...locks.flatMap((lock) => Array.from({ length: READERS_PER_INSTANCE }, () => reader(lock))),
  ]);
  await Promise.all(providers.map((provider) => provider.close()));

  log(
    `${rebuilds} rebuilds while ${locks.length * READERS_PER_INSTANCE} readers served ${reads} reads: ` +
      `${inconsistentReads} saw a half-built cache, at most ${mostReaders} readers together`,
  );
  return {
    rebuilds,
    expectedRebuilds: REBUILDS,
    reads,
    inconsistentReads,
    mostReadersTogether: mostReaders,
    mostWritersTogether: mostWriters,
    writesBesideReaders,
    versionsSeen,
  };
}
