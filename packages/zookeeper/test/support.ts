import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { text } from 'node:stream/consumers';
import type { LockProvider } from '@dlock/core';
import { type FaultProxy, type ZooKeeperServer, startFaultProxy, startZooKeeper } from '@dlock/testkit';
import { ACL, CreateMode, Id, Permission, createClient } from 'node-zookeeper-client';
import { afterAll, beforeAll } from 'vitest';
import { unlessMissing } from '../src/client.js';
import type { ZooKeeperLockDriver } from '../src/driver.js';
import { lockPath, queueOrder } from '../src/layout.js';
import { type ZooKeeperProviderOptions, openZooKeeperProvider } from '../src/provider.js';
import { ZooKeeperSession } from '../src/session.js';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string) {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * SIGSTOPs the server and waits until the kernel reports it stopped: the signal is asynchronous, and
 * a request sent right after `pause()` can otherwise still be answered.
 */
export async function pauseServer(server: ZooKeeperServer): Promise<void> {
  server.pause();
  const state = () => readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1]?.[0];
  await until(() => state() === 'T', 2_000, 'the server process stopped');
}

/**
 * The server's own count of watches, from the `wchs` four-letter word ("Total watches:N"). The
 * testkit does not export its four-letter-word client, and this one word is all the tests need.
 */
export async function serverWatchCount(server: ZooKeeperServer): Promise<number> {
  const socket = createConnection({ host: '127.0.0.1', port: server.port });
  socket.setTimeout(2_000, () => socket.destroy(new Error(`no answer to wchs from port ${server.port}`)));
  socket.end('wchs');
  const answer = await text(socket);
  const total = /Total watches:\s*(\d+)/.exec(answer)?.[1];
  if (total === undefined) throw new Error(`unexpected wchs answer: ${answer}`);
  return Number(total);
}

/**
 * Providers opened by a test, with their drivers, so a test can crash or expire a provider's sessions
 * the way a dead process or a server-side expiry would.
 */
export class Providers {
  readonly #drivers = new Map<LockProvider, ZooKeeperLockDriver>();

  constructor(private readonly defaults: () => ZooKeeperProviderOptions) {}

  open(options: Partial<ZooKeeperProviderOptions> = {}): LockProvider {
    const { provider, driver } = openZooKeeperProvider({ ...this.defaults(), ...options });
    this.#drivers.set(provider, driver);
    return provider;
  }

  driver(provider: LockProvider): ZooKeeperLockDriver {
    const driver = this.#drivers.get(provider);
    if (!driver) throw new Error('not a provider opened through Providers');
    return driver;
  }

  /** Like a SIGKILL: the connection drops, nothing is closed, the server expires the session later. */
  crash(provider: LockProvider): void {
    for (const session of this.driver(provider).liveSessions()) session.abandon();
  }

  /**
   * Expires the provider's sessions at the server right now: another client takes each session over
   * with its id and password and closes it (the classic ZooKeeper test trick), while the provider's
   * client is held off reconnecting; it then reconnects and learns of the expiry as in production.
   */
  async expire(provider: LockProvider, connectString: string): Promise<void> {
    for (const session of this.driver(provider).liveSessions()) {
      const { sessionId, sessionPassword } = session.credentials();
      session.dropConnection({ holdReconnect: true });
      const usurper = createClient(connectString, {
        sessionTimeout: session.timeoutMs,
        sessionId,
        sessionPassword,
      } as object);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('could not take the session over')), 10_000);
        usurper.once('connected', () => {
          usurper.once('disconnected', () => {
            clearTimeout(timer);
            resolve();
          });
          usurper.close();
        });
        usurper.connect();
      });
      session.resumeReconnecting();
    }
  }

  /**
   * Silences the provider's sessions for `silentMs`, as a long pause or a partition would: the
   * connection drops and the client may not reconnect until the time is up. The client's own deadline
   * (sessionTimeout − margin after the last reply) aborts its leases before the server can expire the
   * session; then it reconnects and learns of the expiry as in production.
   */
  async silence(provider: LockProvider, silentMs: number): Promise<void> {
    const sessions = this.driver(provider).liveSessions();
    for (const session of sessions) session.dropConnection({ holdReconnect: true });
    await sleep(silentMs);
    for (const session of sessions) session.resumeReconnecting();
  }

  async closeAll(): Promise<void> {
    await Promise.allSettled([...this.#drivers.keys()].map((provider) => provider.close()));
    this.#drivers.clear();
  }
}

/**
 * Makes the provider's session drop its connection right after sending the first EPHEMERAL_SEQUENTIAL
 * create whose path contains `marker`: the create is applied (or not) but its reply is lost. Returns a
 * function telling whether the drop happened.
 */
export async function dropConnectionOnCreate(
  providers: Providers,
  provider: LockProvider,
  marker: string,
): Promise<() => boolean> {
  await provider.holder('warm-up');
  const [session] = providers.driver(provider).liveSessions();
  if (!session) throw new Error('no session');
  const create = session.calls.create.bind(session.calls);
  let dropped = false;
  session.calls.create = (path, data, mode) => {
    const created = create(path, data, mode);
    if (!dropped && mode === CreateMode.EPHEMERAL_SEQUENTIAL && path.includes(marker)) {
      dropped = true;
      session.dropConnection();
    }
    return created;
  };
  return () => dropped;
}

/** A plain session for inspecting and changing the tree behind the providers' backs. */
export async function openInspector(connectString: string): Promise<Inspector> {
  const session = await ZooKeeperSession.open({
    connectString,
    sessionTimeoutMs: 10_000,
    connectTimeoutMs: 5_000,
    callTimeoutMs: 5_000,
    onDisconnect: 'session-timeout',
    auth: [],
    acl: [new ACL(Permission.ALL, new Id('world', 'anyone'))],
  });
  return new Inspector(session);
}

export class Inspector {
  constructor(readonly session: ZooKeeperSession) {}

  /** Children of the key's lock parent in queue order; [] when the parent does not exist. */
  queue(root: string, key: string): Promise<string[]> {
    return this.children(lockPath(root, key));
  }

  /** Children of `path` in queue order; [] when it does not exist. */
  async children(path: string): Promise<string[]> {
    return queueOrder((await unlessMissing(this.session.calls.getChildren(path)))?.children ?? []);
  }

  /** What is stored for a key: the parent and its children. [] when the key is free and cleaned up. */
  async residue(root: string, key: string): Promise<string[]> {
    const parent = lockPath(root, key);
    if ((await this.session.calls.exists(parent)) === null) return [];
    return [parent, ...(await this.queue(root, key)).map((child) => `${parent}/${child}`)];
  }

  /** Deletes the holder's node, as an operator would. */
  async forceRelease(root: string, key: string): Promise<void> {
    const head = (await this.queue(root, key))[0];
    if (head !== undefined) await this.session.calls.remove(`${lockPath(root, key)}/${head}`);
  }

  close(): Promise<void> {
    return this.session.close();
  }
}

export interface StandaloneContext {
  readonly server: ZooKeeperServer;
  readonly inspector: Inspector;
  readonly providers: Providers;
  /**
   * A provider whose connection goes through its own TCP fault proxy (closed after the file), for
   * network faults: resets, refused reconnects, black holes, lost replies.
   */
  behindProxy(
    options?: Partial<ZooKeeperProviderOptions>,
  ): Promise<{ provider: LockProvider; faults: FaultProxy }>;
}

/**
 * A standalone ZooKeeper for the test file (started in beforeAll, stopped in afterAll), an inspector
 * session on it, and providers under `root` with short timeouts.
 */
export function useStandaloneZooKeeper(
  root: string,
  defaults: Partial<ZooKeeperProviderOptions> = {},
): StandaloneContext {
  let server: ZooKeeperServer | undefined;
  let inspector: Inspector | undefined;
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the ZooKeeper server has not started');
    return value;
  };
  const providers = new Providers(() => ({
    connectString: started(server).connectString,
    root,
    sessionTimeoutMs: 2_000,
    connectTimeoutMs: 3_000,
    callTimeoutMs: 3_000,
    ...defaults,
  }));
  const proxies: FaultProxy[] = [];
  beforeAll(async () => {
    server = await startZooKeeper();
    inspector = await openInspector(server.connectString);
  });
  afterAll(async () => {
    await providers.closeAll();
    await Promise.allSettled(proxies.map((proxy) => proxy.close()));
    await inspector?.close();
    await server?.stop();
  });
  return {
    async behindProxy(options = {}) {
      const faults = await startFaultProxy({ target: started(server).connectString });
      proxies.push(faults);
      return { provider: providers.open({ ...options, connectString: faults.address }), faults };
    },
    get server() {
      return started(server);
    },
    get inspector() {
      return started(inspector);
    },
    providers,
  };
}
