import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { sweepStaleWorkDirs } from '../src/cleanup.js';
import { startNodeProcess, startRedis, startZooKeeper, stopAll } from '../src/index.js';
import { processStartTime } from '../src/process-identity.js';
import { pollUntil } from '../src/wait.js';
import { isGone, livingChildren } from './probes.js';

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const builtEntry = fileURLToPath(new URL('../dist/index.js', import.meta.url));

afterAll(stopAll);

function ownWorkDirs(): string[] {
  return readdirSync(tmpdir()).filter((entry) => entry.startsWith(`dlock-testkit-${process.pid}-`));
}

describe('stopAll', () => {
  it('leaves no child process and no temporary directory behind', async () => {
    const redis = await startRedis();
    const zooKeeper = await startZooKeeper();
    const contender = startNodeProcess(fixture('echo.mjs'));
    await contender.waitForLine(/^ready/);
    redis.pause();
    const pids = [redis.pid!, zooKeeper.pid!, contender.pid!];
    expect(ownWorkDirs()).toHaveLength(2);

    await stopAll();

    for (const pid of pids) expect(isGone(pid)).toBe(true);
    expect(existsSync(redis.dataDir)).toBe(false);
    expect(existsSync(zooKeeper.dataDir)).toBe(false);
    expect(ownWorkDirs()).toEqual([]);
    // The watchdog exits on its own once released.
    await pollUntil('no child processes', async () => (livingChildren().length === 0 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
  });
});

describe('servers of a test process that dies abruptly', () => {
  it.skipIf(!existsSync(builtEntry))('are killed with it, and their directories removed', async () => {
    const owner = startNodeProcess(fixture('redis-owner.mjs'));
    const server = JSON.parse(await owner.waitForLine(/^\{/)) as { pid: number; dataDir: string };
    expect(isGone(server.pid)).toBe(false);

    await owner.kill();

    await pollUntil('the orphaned redis to die', async () => (isGone(server.pid) ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
    await pollUntil('its directory to go', async () => (existsSync(server.dataDir) ? undefined : true), {
      timeoutMs: 5_000,
      intervalMs: 50,
    });
  });

  it('are swept, with their directories, by the next run', async () => {
    const parentDir = mkdtempSync(join(tmpdir(), 'dlock-testkit-test-sweep-'));
    try {
      const deadOwner = spawnSync(process.execPath, ['-e', '']).pid;
      const staleDir = join(parentDir, `dlock-testkit-${deadOwner}-abc123`);
      mkdirSync(join(staleDir, 'data'), { recursive: true });
      writeFileSync(join(staleDir, 'owner.pid'), `${deadOwner}\n`);
      const leftover = spawn('sleep', ['30'], { stdio: 'ignore' });
      await new Promise((resolve) => leftover.once('spawn', resolve));
      writeFileSync(join(staleDir, 'server.pid'), `${leftover.pid} ${processStartTime(leftover.pid!)}\n`);
      const liveDir = join(parentDir, `dlock-testkit-${process.pid}-def456`);
      mkdirSync(liveDir);

      expect(sweepStaleWorkDirs(parentDir)).toBe(1);

      const exit = await new Promise((resolve) => leftover.once('exit', (_code, signal) => resolve(signal)));
      expect(exit).toBe('SIGKILL');
      expect(existsSync(staleDir)).toBe(false);
      expect(existsSync(liveDir)).toBe(true);
    } finally {
      rmSync(parentDir, { recursive: true, force: true });
    }
  });
});
