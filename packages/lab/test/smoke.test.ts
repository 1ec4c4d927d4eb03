import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { labPackageDir, stateDir } from '../src/paths.js';
import { validateResults } from '../src/report/validate.js';
import type { Results } from '../src/results.js';
import { chromiumMissing, inspectReportInBrowser } from './browser.js';

const CLI = join(labPackageDir, 'dist', 'cli.js');
const scratch = mkdtempSync(join(tmpdir(), 'dlock-lab-smoke-'));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly pid: number;
}

function startCli(args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: scratch, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const done = new Promise<Run>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr, pid: child.pid ?? -1 })),
  );
  return { child, done };
}

/** Work directories and processes the testkit created on behalf of the CLI process `pid`. */
function leftoversOf(pid: number): string[] {
  const dirs = readdirSync(tmpdir()).filter((entry) => entry.startsWith(`dlock-testkit-${pid}-`));
  const processes = readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        return readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(`dlock-testkit-${pid}-`);
      } catch {
        return false;
      }
    });
  return [...dirs.map((dir) => `dir ${dir}`), ...processes.map((proc) => `process ${proc}`)];
}

/** Reuse the conformance reports the test command wrote; read-only, so the smoke never runs the kit. */
function semanticsDir(): string {
  const shared = process.env.DLOCK_CONFORMANCE_DIR ?? join(stateDir(), 'conformance');
  return existsSync(shared) ? shared : scratch;
}

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

describe('dlock compare (smoke)', () => {
  it('runs every discovered backend briefly and writes a self-contained report that matches the schema', async () => {
    const out = join(scratch, 'report');
    const { done } = startCli([
      'compare',
      '--duration',
      '1',
      '--rounds',
      '3',
      '--contenders',
      '4',
      '--scenarios',
      'holder-pause,restart-without-persistence',
      '--out',
      out,
      '--semantics-from',
      semanticsDir(),
    ]);
    const run = await done;
    const detail = `exit ${run.code}\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`;
    expect(run.code, detail).toBe(0);
    for (const file of ['index.html', 'report.md', 'results.json'])
      expect(existsSync(join(out, file)), file).toBe(true);

    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as Results;
    expect(validateResults(results)).toEqual([]);
    expect(results.benchmarks.map((bench) => bench.backend)).toEqual(
      expect.arrayContaining(['memory', 'setnx-getset']),
    );
    // The busiest one-key level records every acquire's wait and the slowest contender's share, for the
    // backends and for redis-semaphore's Mutex, run in the same rounds as a peer.
    for (const bench of results.benchmarks.filter((entry) => entry.contention.length > 0)) {
      const busiest = bench.contention.find((level) => level.keys === 1 && level.contenders === 4);
      expect(busiest?.waitMs?.samples, bench.backend).toBeGreaterThan(0);
      expect(busiest?.slowestShare, bench.backend).toBeGreaterThanOrEqual(0);
    }
    const mutex = results.peers.find((peer) => peer.label === 'redis-semaphore Mutex · redis');
    expect(mutex?.contention?.contenders).toBe(4);
    expect(mutex?.contention?.operations).toBeGreaterThan(0);
    expect(results.peers.find((peer) => peer.label === 'redlock (library) · redis')?.contention).toBeNull();
    expect(results.faults.length).toBeGreaterThan(0);
    expect(results.faults.filter((fault) => fault.verdict === 'claim-violated')).toEqual([]);

    const html = readFileSync(join(out, 'index.html'), 'utf8');
    expect(html.match(/\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?\/\//gi) ?? []).toEqual([]);
    expect(html).not.toMatch(/<script|<link|@import/i);
    expect(html).toContain('<svg');
    if (!chromiumMissing) {
      const { problems, charts } = await inspectReportInBrowser(
        join(out, 'index.html'),
        join(out, 'screenshots'),
      );
      expect(problems).toEqual([]);
      expect(charts).toBeGreaterThanOrEqual(4);
    }

    expect(leftoversOf(run.pid)).toEqual([]);

    const table = startCli(['readme-table', join(out, 'results.json')]);
    const printed = await table.done;
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^\| backend \|/);
    // Every backend's servers, 3 failover kills each and two fault scenarios: minutes on a busy machine.
  }, 480_000);

  it('stops everything on Ctrl-C: no server process, no temp dir, exit 130', async () => {
    const { child, done } = startCli([
      'compare',
      '--backends',
      'setnx-getset',
      '--duration',
      '30',
      '--scenarios',
      'none',
      '--out',
      join(scratch, 'interrupted'),
      '--semantics-from',
      scratch,
    ]);
    const deadline = Date.now() + 30_000;
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    while (!/floor/.test(stderr) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(stderr).toMatch(/floor/);
    child.kill('SIGINT');
    const run = await done;
    expect(run.code).toBe(130);
    expect(leftoversOf(run.pid)).toEqual([]);
  }, 60_000);

  it('rejects bad options with a usage error that names a command that works', async () => {
    const run = await startCli(['compare', '--duration', 'soon']).done;
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('invalid --duration: "soon"');
    expect(run.stderr).toContain('run `pnpm dlock help` for usage');
  }, 60_000);

  it('checks --endpoints before anything starts, naming the flag, the value and what is allowed', async () => {
    const run = await startCli(['compare', '--endpoints', 'redis=notaurl']).done;
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'invalid --endpoints: "redis=notaurl" (allowed: redis addresses like redis=redis://127.0.0.1:6379 ("notaurl" is not one))',
    );
    expect(run.stderr).not.toMatch(/\[1\/4/);
    const zookeeper = await startCli(['compare', '--endpoints', 'zookeeper=http://127.0.0.1:2181']).done;
    expect(zookeeper.stderr).toContain('zookeeper addresses like zookeeper=127.0.0.1:2181');
    const unknown = await startCli(['compare', '--endpoints', 'mysql=127.0.0.1:3306']).done;
    expect(unknown.stderr).toContain(
      'invalid --endpoints: "mysql=127.0.0.1:3306" (allowed: <kind>=<address,...>',
    );
    // Three CLI starts, each importing every backend package: over 10 s apiece on a busy machine.
  }, 90_000);
});
