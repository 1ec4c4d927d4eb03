import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type CuratorRuntime, curatorRuntime } from './binaries.js';
import { createWorkDir, recordServerPid, removeWorkDir } from './cleanup.js';
import { CuratorPeerError, CuratorPeerExitedError, ServerStartError } from './errors.js';
import { smallJvmFlags } from './jvm.js';
import { forEachLine } from './node-process.js';
import { type ManagedProcess, SpawnedProcess } from './process.js';
import { settleWithin } from './wait.js';

/**
 * A real Apache Curator client in its own JVM (`java/CuratorPeer.java`), driven over a line protocol,
 * so dlock's ZooKeeper recipes can be tested against Curator itself rather than an imitation of its
 * node layout.
 */
export interface CuratorPeer extends ManagedProcess {
  /** The ZooKeeper session of the peer's client, as ZooKeeper prints it (`0x…`). */
  readonly sessionId: string;
  /** From the Curator jar, e.g. `5.4.0`. */
  readonly curatorVersion: string;
  readonly zooKeeperVersion: string;
  /** From spawning the JVM to its client's first connection (compilation excluded). */
  readonly startupMs: number;
  /** Every Curator `ConnectionState` the client went through, in order (`CONNECTED`, `SUSPENDED`, `LOST`, …). */
  readonly connectionStates: readonly string[];
  /** A Curator `InterProcessMutex` on `path` (its lock nodes are `<path>/_c_<uuid>-lock-<seq>`). */
  mutex(path: string): Promise<CuratorLock>;
  /** A Curator `InterProcessSemaphoreV2` on `path` (`<path>/locks`, `<path>/leases`). */
  semaphore(path: string, maxLeases: number): Promise<CuratorSemaphore>;
  /** A Curator `InterProcessReadWriteLock` on `path` (`…-__READ__<seq>`, `…-__WRIT__<seq>`). */
  readWriteLock(path: string): Promise<CuratorReadWriteLock>;
  /**
   * Closes the Curator client — ZooKeeper ends its session at once and deletes its nodes — and waits for
   * the JVM to exit (SIGKILL after 10 s). Pending calls reject with `CuratorPeerExitedError`. Does
   * nothing when the JVM is already gone.
   */
  close(): Promise<void>;
  /**
   * SIGKILL (inherited from `ManagedProcess`): the session is not closed, so the server expires it after
   * the session timeout and only then deletes the peer's nodes.
   */
  kill(): Promise<void>;
  /** The last lines the JVM wrote to stderr (Curator's and the ZooKeeper client's log). */
  logTail(lines?: number): string;
}

/**
 * One Curator lock object: an `InterProcessMutex`, or the read or write lock of an
 * `InterProcessReadWriteLock`. Curator locks are reentrant per Java thread and released by the thread
 * that acquired them, so each lock object runs its `acquire` and `release` calls on one thread of its
 * own, in order: a second `acquire` while held re-enters (and needs a second `release`), and a
 * `release` sent while an `acquire` blocks runs after it. Create another lock object on the same path
 * for a second contender within the peer.
 */
export interface CuratorLock {
  readonly path: string;
  /** `acquire(time, MILLISECONDS)`: true once held, false when `timeoutMs` passed first. */
  acquire(timeoutMs: number): Promise<boolean>;
  /** Rejects with `CuratorPeerError` (`javaClass` IllegalMonitorStateException) when not held. */
  release(): Promise<void>;
  isAcquiredInThisProcess(): Promise<boolean>;
  /**
   * Curator's `getParticipantNodes()`: full paths of the lock's nodes in queue order, the holder first.
   * A read-write lock's read lock lists only `__READ__` nodes, its write lock only `__WRIT__` nodes.
   */
  participantNodes(): Promise<string[]>;
}

export interface CuratorReadWriteLock {
  readonly path: string;
  readonly readLock: CuratorLock;
  readonly writeLock: CuratorLock;
}

/**
 * A Curator `InterProcessSemaphoreV2`. A lease is known by its node's name (`Lease.getNodeName()`,
 * `_c_<uuid>-lease-<seq>` under `<path>/leases`).
 */
export interface CuratorSemaphore {
  readonly path: string;
  readonly maxLeases: number;
  /** `acquire(count, time, MILLISECONDS)`: the leases' node names, or null when `timeoutMs` passed first. */
  acquire(count: number, timeoutMs: number): Promise<string[] | null>;
  /** Returns one lease (`Lease.close()`); rejects with `CuratorPeerError` for a lease the peer does not hold. */
  release(lease: string): Promise<void>;
  /** Curator's `getParticipantNodes()`: the names of the children of `<path>/leases`, unordered. */
  participantNodes(): Promise<string[]>;
}

export interface CuratorPeerOptions {
  /** `host:port[,…]`, e.g. a testkit ZooKeeper's `connectString`. */
  connectString: string;
  /** Requested session timeout, default 10 000 ms; the server clamps it (testkit ZooKeeper: 400 ms–60 s). */
  sessionTimeoutMs?: number;
  /** Curator's connection timeout and how long the start waits for the first connection; default 5 000 ms. */
  connectionTimeoutMs?: number;
  /**
   * How long a call may go unanswered before it rejects with `CuratorPeerError`, default 10 000 ms; an
   * acquire gets its own `timeoutMs` on top.
   */
  callTimeoutMs?: number;
}

const PEER_SOURCE = fileURLToPath(new URL('../java/CuratorPeer.java', import.meta.url));
const PEER_CLASS = 'CuratorPeer';
/** Compiled peers, one directory per source and jar set; outlives test runs so javac runs once. */
export const COMPILE_CACHE_DIR = join(tmpdir(), 'dlock-testkit-cache');
const JAVAC_TIMEOUT_MS = 120_000;
const DEFAULT_SESSION_TIMEOUT_MS = 10_000;
const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** Starting the JVM and loading Curator, on top of the connection timeout; generous for a busy machine. */
const JVM_START_ALLOWANCE_MS = 20_000;
const CLOSE_TIMEOUT_MS = 10_000;
/** A JVM whose stdout has closed has exited or is about to; its exit code is worth this long a wait. */
const EXIT_CODE_WAIT_MS = 1_000;
const STDERR_LINES_KEPT = 200;
const MAX_JAVA_INT = 2 ** 31 - 1;

const JVM_FLAGS = [
  ...smallJvmFlags(128),
  // slf4j-simple: Curator's and the ZooKeeper client's log to stderr, kept in the peer's log tail.
  '-Dorg.slf4j.simpleLogger.defaultLogLevel=info',
  '-Dorg.slf4j.simpleLogger.showDateTime=true',
  '-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS',
  // Its ~20 "Client environment" lines at start would crowd connection events out of the log tail.
  '-Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.ZooKeeper=warn',
];

const compilations = new Map<string, Promise<string>>();

/**
 * Compiles `java/CuratorPeer.java` against the installed jars, once per source and jar set (the
 * directory name is a hash of both), and returns the directory holding the classes. javac writes into a
 * staging directory that is renamed into place, so concurrent test processes never see half a build;
 * the first call in a process removes staging directories of compilers that died.
 * Throws MissingBinaryError without a JDK or the jars, CuratorPeerError (op `compile`) when javac fails.
 */
export async function compileCuratorPeer(runtime: CuratorRuntime = curatorRuntime()): Promise<string> {
  const hash = createHash('sha256').update(readFileSync(PEER_SOURCE));
  for (const file of [runtime.javac, ...runtime.jars]) {
    const { size, mtimeMs } = statSync(file);
    hash.update(`${file} ${size} ${mtimeMs}\n`);
  }
  const classesDir = join(COMPILE_CACHE_DIR, `curator-peer-${hash.digest('hex').slice(0, 16)}`);
  let compilation = compilations.get(classesDir);
  if (compilation === undefined) {
    compilation = compileInto(runtime, classesDir);
    compilations.set(classesDir, compilation);
    compilation.catch(() => compilations.delete(classesDir));
  }
  return compilation;
}

async function compileInto(runtime: CuratorRuntime, classesDir: string): Promise<string> {
  mkdirSync(COMPILE_CACHE_DIR, { recursive: true });
  sweepAbandonedStaging();
  const compiled = () => existsSync(join(classesDir, `${PEER_CLASS}.class`));
  if (compiled()) return classesDir;
  const staging = mkdtempSync(join(COMPILE_CACHE_DIR, `staging-${process.pid}-`));
  try {
    const args = [
      '-J-XX:TieredStopAtLevel=1',
      '-J-XX:+UseSerialGC',
      '-encoding',
      'UTF-8',
      // A jar on the classpath may carry sources; compile only the peer.
      '-implicit:none',
      '-cp',
      runtime.jars.join(delimiter),
      '-d',
      staging,
      PEER_SOURCE,
    ];
    await new Promise<void>((resolve, reject) => {
      execFile(runtime.javac, args, { timeout: JAVAC_TIMEOUT_MS }, (error, _stdout, stderr) => {
        if (error === null) resolve();
        else
          reject(
            new CuratorPeerError(
              `javac could not compile ${PEER_SOURCE}: ${stderr || error.message}`,
              'compile',
            ),
          );
      });
    });
    try {
      renameSync(staging, classesDir);
    } catch (error) {
      // Another process renamed the same build into place first.
      if (!compiled()) throw error;
    }
    return classesDir;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Removes staging directories of compilers whose process died before renaming or removing them. */
function sweepAbandonedStaging(): void {
  for (const entry of readdirSync(COMPILE_CACHE_DIR)) {
    const pid = Number(/^staging-(\d+)-/.exec(entry)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') {
        rmSync(join(COMPILE_CACHE_DIR, entry), { recursive: true, force: true });
      }
    }
  }
}

function requireInteger(field: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_JAVA_INT) {
    throw new RangeError(`${field} must be an integer from ${min} to ${MAX_JAVA_INT}, got ${String(value)}`);
  }
  return value;
}

function requireLease(lease: unknown): string {
  if (typeof lease !== 'string' || lease === '') {
    throw new TypeError(`lease must be a lease name returned by acquire(), got ${String(lease)}`);
  }
  return lease;
}

function requirePath(path: unknown): string {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new TypeError(`path must be an absolute ZooKeeper path such as "/dlock/key", got ${String(path)}`);
  }
  return path;
}

interface PendingCall {
  readonly op: string;
  readonly timer: NodeJS.Timeout;
  resolve(result: unknown): void;
  reject(error: Error): void;
}

interface ReadyEvent {
  readonly sessionId: string;
  readonly curatorVersion: string;
  readonly zooKeeperVersion: string;
}

type PeerLine =
  | ({ event: 'ready' } & ReadyEvent)
  | { event: 'failed'; message: string }
  | { event: 'connectionState'; state: string }
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { type: string; message: string } };

class LocalCuratorPeer implements CuratorPeer {
  sessionId = '';
  curatorVersion = '';
  zooKeeperVersion = '';
  startupMs = Number.NaN;
  readonly connectionStates: string[] = [];
  readonly #spawned: SpawnedProcess;
  readonly #stdin: Writable;
  readonly #callTimeoutMs: number;
  readonly #pending = new Map<number, PendingCall>();
  readonly #stderrTail: string[] = [];
  readonly #ready: Promise<ReadyEvent>;
  /** Settles once the JVM has exited and its work dir is gone. */
  readonly #removed: Promise<void>;
  #settleReady: { resolve(event: ReadyEvent): void; reject(error: Error): void } | undefined;
  #nextId = 1;
  #gone: CuratorPeerExitedError | undefined;

  constructor(runtime: CuratorRuntime, classesDir: string, options: Required<CuratorPeerOptions>) {
    this.#callTimeoutMs = options.callTimeoutMs;
    const { workDir } = createWorkDir();
    const child = spawn(
      runtime.java,
      [
        ...JVM_FLAGS,
        '-cp',
        [classesDir, ...runtime.jars].join(delimiter),
        PEER_CLASS,
        options.connectString,
        String(options.sessionTimeoutMs),
        String(options.connectionTimeoutMs),
      ],
      { cwd: workDir, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    this.#spawned = new SpawnedProcess(child, 'kill');
    if (this.#spawned.pid !== undefined) recordServerPid(workDir, this.#spawned.pid);
    // The work dir only serves the sweep of a later run should this process die without killing the JVM.
    this.#removed = this.#spawned.exited.then(() => removeWorkDir(workDir)).catch(() => {});
    this.#ready = new Promise<ReadyEvent>((resolve, reject) => {
      this.#settleReady = { resolve, reject };
    });
    this.#ready.catch(() => {});
    child.stdin.on('error', () => {
      // EPIPE: the JVM is gone; the end of its stdout rejects whatever was pending.
    });
    this.#stdin = child.stdin;
    forEachLine(
      child.stdout,
      (line) => this.#onLine(line),
      () => void this.#onGone(),
    );
    forEachLine(
      child.stderr,
      (line) => this.#keepStderr(line),
      () => {},
    );
  }

  /** Resolves once the client is connected; rejects with ServerStartError (the JVM killed) otherwise. */
  async start(timeoutMs: number): Promise<void> {
    const spawnedAt = performance.now();
    const ready = await settleWithin(this.#ready, timeoutMs, undefined).catch((error: Error) => error);
    if (ready === undefined || ready instanceof Error) {
      await this.kill();
      const reason = ready === undefined ? `was not connected within ${timeoutMs} ms` : ready.message;
      throw new ServerStartError(`${this.#describe()} ${reason}${this.#recentStderr()}`);
    }
    this.startupMs = performance.now() - spawnedAt;
    this.sessionId = ready.sessionId;
    this.curatorVersion = ready.curatorVersion;
    this.zooKeeperVersion = ready.zooKeeperVersion;
  }

  get pid(): number | undefined {
    return this.#spawned.pid;
  }

  get running(): boolean {
    return this.#spawned.running;
  }

  async kill(): Promise<void> {
    await this.#spawned.kill();
    await this.#removed;
  }

  pause(): void {
    this.#spawned.pause();
  }

  resume(): void {
    this.#spawned.resume();
  }

  async stop(): Promise<void> {
    await this.#spawned.stop();
    await this.#removed;
  }

  async close(): Promise<void> {
    let failure: unknown;
    if (this.#gone === undefined) {
      failure = await this.#call('close', () => ({}), CLOSE_TIMEOUT_MS).then(
        () => undefined,
        (error: unknown) => (error instanceof CuratorPeerExitedError ? undefined : error),
      );
    }
    const exited = await settleWithin(
      this.#spawned.exited.then(() => true),
      CLOSE_TIMEOUT_MS,
      false,
    );
    if (!exited) await this.#spawned.kill();
    await this.#removed;
    if (failure !== undefined) throw failure;
  }

  logTail(lines = 40): string {
    return this.#stderrTail.slice(-lines).join('\n');
  }

  async mutex(path: string): Promise<CuratorLock> {
    const handle = await this.#call<number>('mutex', () => ({ path: requirePath(path) }));
    return this.#lock(path, handle);
  }

  async readWriteLock(path: string): Promise<CuratorReadWriteLock> {
    const handles = await this.#call<{ readLock: number; writeLock: number }>('readWriteLock', () => ({
      path: requirePath(path),
    }));
    return {
      path,
      readLock: this.#lock(path, handles.readLock),
      writeLock: this.#lock(path, handles.writeLock),
    };
  }

  async semaphore(path: string, maxLeases: number): Promise<CuratorSemaphore> {
    const handle = await this.#call<number>('semaphore', () => ({
      path: requirePath(path),
      maxLeases: requireInteger('maxLeases', maxLeases, 1),
    }));
    return {
      path,
      maxLeases,
      acquire: (count, timeoutMs) =>
        this.#call<string[] | null>(
          'semaphore.acquire',
          () => ({
            handle,
            count: requireInteger('count', count, 1),
            timeoutMs: requireInteger('timeoutMs', timeoutMs, 0),
          }),
          timeoutMs + this.#callTimeoutMs,
        ),
      release: (lease) =>
        this.#call<void>('semaphore.release', () => ({ handle, lease: requireLease(lease) })),
      participantNodes: () => this.#call<string[]>('semaphore.participantNodes', () => ({ handle })),
    };
  }

  #lock(path: string, handle: number): CuratorLock {
    return {
      path,
      acquire: (timeoutMs) =>
        this.#call<boolean>(
          'lock.acquire',
          () => ({ handle, timeoutMs: requireInteger('timeoutMs', timeoutMs, 0) }),
          timeoutMs + this.#callTimeoutMs,
        ),
      release: () => this.#call<void>('lock.release', () => ({ handle })),
      isAcquiredInThisProcess: () => this.#call<boolean>('lock.isAcquiredInThisProcess', () => ({ handle })),
      participantNodes: () => this.#call<string[]>('lock.participantNodes', () => ({ handle })),
    };
  }

  /**
   * Sends one request and resolves with its result. `args` runs inside the promise, so a bad argument
   * rejects like every other failure. A rejection that arrives before the caller awaits (the JVM was
   * killed while an acquire was pending) is not reported as unhandled; awaiting still rejects.
   */
  #call<T>(op: string, args: () => object, timeoutMs = this.#callTimeoutMs): Promise<T> {
    const result = new Promise<T>((resolve, reject) => {
      if (this.#gone !== undefined) {
        reject(this.#gone);
        return;
      }
      const line = JSON.stringify({ op, ...args() });
      const id = this.#nextId++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new CuratorPeerError(
            `${op} got no answer from ${this.#describe()} within ${timeoutMs} ms${this.#recentStderr()}`,
            op,
          ),
        );
      }, timeoutMs);
      this.#pending.set(id, { op, timer, resolve: resolve as (result: unknown) => void, reject });
      this.#stdin.write(`{"id":${id},${line.slice(1)}\n`);
    });
    result.catch(() => {});
    return result;
  }

  #onLine(line: string): void {
    let message: PeerLine;
    try {
      message = JSON.parse(line) as PeerLine;
    } catch {
      this.#keepStderr(`(stdout) ${line}`);
      return;
    }
    if ('event' in message) {
      if (message.event === 'ready') this.#settleReady?.resolve(message);
      else if (message.event === 'failed') this.#settleReady?.reject(new Error(message.message));
      else this.connectionStates.push(message.state);
      return;
    }
    const call = this.#pending.get(message.id);
    if (call === undefined) return; // answered after its timeout
    this.#pending.delete(message.id);
    clearTimeout(call.timer);
    if (message.ok) call.resolve(message.result);
    else {
      const { type, message: text } = message.error;
      call.reject(new CuratorPeerError(`Curator ${call.op} failed: ${type}: ${text}`, call.op, type));
    }
  }

  async #onGone(): Promise<void> {
    const code = await settleWithin(this.#spawned.exited, EXIT_CODE_WAIT_MS, undefined);
    const how =
      code === undefined ? 'closed its stdout' : code === null ? 'was killed' : `exited with code ${code}`;
    this.#gone = new CuratorPeerExitedError(`${this.#describe()} ${how}${this.#recentStderr()}`, 'any');
    this.#settleReady?.reject(this.#gone);
    for (const call of this.#pending.values()) {
      clearTimeout(call.timer);
      call.reject(new CuratorPeerExitedError(`${call.op}: ${this.#gone.message}`, call.op));
    }
    this.#pending.clear();
  }

  #keepStderr(line: string): void {
    this.#stderrTail.push(line);
    if (this.#stderrTail.length > STDERR_LINES_KEPT) this.#stderrTail.shift();
  }

  #recentStderr(): string {
    return `\n--- last stderr lines ---\n${this.logTail(20)}`;
  }

  #describe(): string {
    return `the Curator peer (pid ${this.pid})`;
  }
}

/**
 * Starts a Curator client in its own JVM, connected to `connectString`, and resolves once it is
 * connected. The peer is compiled with javac at first use (see `compileCuratorPeer`). Throws
 * MissingBinaryError when java, javac or Curator's jars are missing (see `hasCurator()`), and
 * ServerStartError when the client does not connect within `connectionTimeoutMs` plus 20 s for the JVM.
 * `stopAll()` kills every peer.
 */
export async function startCuratorPeer(options: CuratorPeerOptions): Promise<CuratorPeer> {
  if (typeof options?.connectString !== 'string' || options.connectString === '') {
    throw new TypeError(`connectString must be a non-empty string, got ${String(options?.connectString)}`);
  }
  const resolved: Required<CuratorPeerOptions> = {
    connectString: options.connectString,
    sessionTimeoutMs: requireInteger(
      'sessionTimeoutMs',
      options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
      1,
    ),
    connectionTimeoutMs: requireInteger(
      'connectionTimeoutMs',
      options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
      1,
    ),
    callTimeoutMs: requireInteger('callTimeoutMs', options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS, 1),
  };
  const runtime = curatorRuntime();
  const classesDir = await compileCuratorPeer(runtime);
  const peer = new LocalCuratorPeer(runtime, classesDir, resolved);
  await peer.start(resolved.connectionTimeoutMs + JVM_START_ALLOWANCE_MS);
  return peer;
}
