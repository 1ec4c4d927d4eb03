import { spawn } from 'node:child_process';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';

/**
 * Runs in a detached Node process that holds the read end of a pipe from us. The pipe closes however we
 * die, SIGKILL included, and then the watchdog kills the processes we registered and removes their
 * directories. A pid is only killed while its start time is still the one registered (see
 * process-identity.ts), so a pid reused by an unrelated process is left alone.
 */
const WATCHDOG_SOURCE = `
const fs = require('node:fs');
const pids = new Map();
const dirs = new Set();
let pending = '';
function startTimeOf(pid) {
  try {
    const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch { return undefined; }
}
function cleanUp() {
  for (const [pid, startTime] of pids) {
    if (startTime !== undefined && startTimeOf(pid) !== startTime) continue;
    try { process.kill(pid, 'SIGKILL'); } catch {}
  }
  for (const dir of dirs) {
    try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }); } catch {}
  }
  process.exit(0);
}
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  pending += chunk;
  let newline;
  while ((newline = pending.indexOf('\\n')) >= 0) {
    const line = pending.slice(0, newline);
    pending = pending.slice(newline + 1);
    try {
      const message = JSON.parse(line);
      if (message.op === 'track') pids.set(message.pid, message.startTime);
      else if (message.op === 'untrack') pids.delete(message.pid);
      else if (message.op === 'dir') dirs.add(message.dir);
      else if (message.op === 'undir') dirs.delete(message.dir);
    } catch {}
  }
});
process.stdin.on('end', cleanUp);
process.stdin.on('error', cleanUp);
`;

type WatchdogMessage =
  | { op: 'track'; pid: number; startTime: string | undefined }
  | { op: 'untrack'; pid: number }
  | { op: 'dir'; dir: string }
  | { op: 'undir'; dir: string };

let channel: Writable | undefined;

function openChannel(): Writable | undefined {
  if (channel !== undefined) return channel;
  const env = { ...process.env };
  // Loaders or inspectors injected through NODE_OPTIONS (test runners, debuggers) have no business here.
  env.NODE_OPTIONS = undefined;
  const watchdog = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    env,
  });
  watchdog.on('error', () => {
    channel = undefined;
  });
  watchdog.unref();
  const stdin = watchdog.stdin;
  if (stdin === null) return undefined;
  stdin.on('error', () => {
    if (channel === stdin) channel = undefined;
  });
  if (stdin instanceof Socket) stdin.unref();
  channel = stdin;
  return channel;
}

export function tellWatchdog(message: WatchdogMessage): void {
  openChannel()?.write(`${JSON.stringify(message)}\n`);
}

/** Lets the watchdog exit; the next tracked server starts a new one. */
export function releaseWatchdog(): void {
  channel?.end();
  channel = undefined;
}
