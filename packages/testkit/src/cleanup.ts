import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processStartTime } from './process-identity.js';
import { releaseWatchdog, tellWatchdog } from './watchdog.js';

const WORK_DIR_PREFIX = 'dlock-testkit-';
const OWNER_PID_FILE = 'owner.pid';
const SERVER_PID_FILE = 'server.pid';

/** A child process this process started and must not outlive. */
export interface OwnedProcess {
  readonly pid: number | undefined;
  /** Synchronous SIGKILL, for `exit` handlers where nothing asynchronous runs any more. */
  killNow(): void;
  /** How `stopAll()` ends it. */
  tearDown(): Promise<void>;
}

/** An in-process resource (a fault proxy) that `stopAll()` closes; it dies with the process anyway. */
export interface OwnedResource {
  close(): Promise<void>;
}

const ownedProcesses = new Set<OwnedProcess>();
const ownedResources = new Set<OwnedResource>();
const ownedWorkDirs = new Set<string>();
let hooksInstalled = false;
let staleDirsSwept = false;

function killEverythingNow(): void {
  for (const owned of ownedProcesses) owned.killNow();
  ownedProcesses.clear();
  for (const dir of ownedWorkDirs) removeDirNow(dir);
  ownedWorkDirs.clear();
}

function removeDirNow(dir: string): void {
  try {
    // A just-killed server may still be flushing files into the directory; retries absorb ENOTEMPTY.
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
  } catch {
    // Leave it to the stale-directory sweep of the next run.
  }
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killEverythingNow);
  // A forked test worker whose parent died (the test runner was SIGKILLed) can live on wedged, and its
  // servers with it; losing the IPC channel to the parent is the last sign we get.
  if (process.send !== undefined) process.once('disconnect', killEverythingNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killEverythingNow();
      // Our listener suppressed the default action; restore it unless someone else handles the signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

export function trackProcess(owned: OwnedProcess): void {
  installExitHooks();
  ownedProcesses.add(owned);
  if (owned.pid !== undefined) {
    tellWatchdog({ op: 'track', pid: owned.pid, startTime: processStartTime(owned.pid) });
  }
}

export function trackResource(owned: OwnedResource): void {
  ownedResources.add(owned);
}

export function untrackResource(owned: OwnedResource): void {
  ownedResources.delete(owned);
}

/** Records a server's pid in its work dir, for the sweep of a later run should this process die abruptly. */
export function recordServerPid(workDir: string, pid: number): void {
  writeFileSync(join(workDir, SERVER_PID_FILE), `${pid} ${processStartTime(pid) ?? ''}\n`);
}

export function untrackProcess(owned: OwnedProcess): void {
  ownedProcesses.delete(owned);
  if (owned.pid !== undefined) tellWatchdog({ op: 'untrack', pid: owned.pid });
}

/**
 * Creates `<tmpdir>/dlock-testkit-<our pid>-<random>` with an owner marker and an empty `data` directory.
 * The path is resolved through symlinks so that it matches what servers report as their working directory.
 */
export function createWorkDir(): { workDir: string; dataDir: string } {
  installExitHooks();
  if (!staleDirsSwept) {
    staleDirsSwept = true;
    sweepStaleWorkDirs();
  }
  const workDir = realpathSync(mkdtempSync(join(tmpdir(), `${WORK_DIR_PREFIX}${process.pid}-`)));
  ownedWorkDirs.add(workDir);
  tellWatchdog({ op: 'dir', dir: workDir });
  writeFileSync(join(workDir, OWNER_PID_FILE), `${process.pid} ${processStartTime(process.pid) ?? ''}\n`);
  const dataDir = join(workDir, 'data');
  mkdirSync(dataDir);
  return { workDir, dataDir };
}

export async function removeWorkDir(workDir: string): Promise<void> {
  await rm(workDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
  ownedWorkDirs.delete(workDir);
  tellWatchdog({ op: 'undir', dir: workDir });
}

/**
 * Closes every fault proxy, stops every server and script this process started and removes their
 * temporary directories.
 */
export async function stopAll(): Promise<void> {
  // Proxies first, so no client sees the servers behind them die.
  await Promise.allSettled([...ownedResources].map((owned) => owned.close()));
  await Promise.allSettled([...ownedProcesses].map((owned) => owned.tearDown()));
  await Promise.allSettled([...ownedWorkDirs].map((dir) => removeWorkDir(dir)));
  releaseWatchdog();
}

/** Whether the process still runs; with a recorded start time, a reused pid does not count. */
function isAlive({ pid, startTime }: { pid: number; startTime: string | undefined }): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the pid exists but belongs to another user.
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return startTime === undefined || processStartTime(pid) === startTime;
}

/** Reads `<pid>[ <start time>]`. */
function readPidFile(file: string): { pid: number; startTime: string | undefined } | undefined {
  try {
    const [pidText, startTime] = readFileSync(file, 'utf8').trim().split(' ');
    const pid = Number(pidText);
    return Number.isSafeInteger(pid) && pid > 0 ? { pid, startTime: startTime || undefined } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes work directories left behind by test processes that died without cleaning up (SIGKILL, OOM,
 * a crashed watchdog), killing the server recorded in each. Returns how many directories were swept.
 */
export function sweepStaleWorkDirs(parentDir = tmpdir()): number {
  let entries: string[];
  try {
    entries = readdirSync(parentDir);
  } catch {
    return 0;
  }
  let swept = 0;
  for (const entry of entries) {
    const namedOwner = /^dlock-testkit-(\d+)-/.exec(entry)?.[1];
    if (namedOwner === undefined) continue;
    let workDir: string;
    try {
      workDir = realpathSync(join(parentDir, entry));
    } catch {
      continue;
    }
    // Until the owner has written its marker, the pid in the directory name stands in for it.
    const owner = readPidFile(join(workDir, OWNER_PID_FILE)) ?? {
      pid: Number(namedOwner),
      startTime: undefined,
    };
    if (ownedWorkDirs.has(workDir) || isAlive(owner)) continue;
    const server = readPidFile(join(workDir, SERVER_PID_FILE));
    // Without a matching start time the pid may long since belong to an unrelated process.
    if (server?.startTime !== undefined && isAlive(server)) {
      try {
        process.kill(server.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    removeDirNow(workDir);
    swept++;
  }
  return swept;
}
