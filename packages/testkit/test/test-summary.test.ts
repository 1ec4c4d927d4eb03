// scripts/test-summary.mjs, the closing line of the test command, on a workspace in miniature
// (fixtures/summary-workspace): real vitest runs of its packages write the JSON reports it counts.
// It lives in the testkit's suite so that it runs inside the test command whose line it checks.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const workspace = fileURLToPath(new URL('./fixtures/summary-workspace/', import.meta.url));
const summaryScript = fileURLToPath(new URL('../../../scripts/test-summary.mjs', import.meta.url));
const jsonReporter = fileURLToPath(new URL('../../../scripts/vitest-json-reporter.mjs', import.meta.url));
const vitestManifest = createRequire(import.meta.url).resolve('vitest/package.json');
const vitestCli = join(
  dirname(vitestManifest),
  (JSON.parse(readFileSync(vitestManifest, 'utf8')) as { bin: { vitest: string } }).bin.vitest,
);

type Env = Record<string, string>;
/** The variables that decide whether vitest colours its output; each case sets its own. */
const colourVariables = ['CI', 'FORCE_COLOR', 'NO_COLOR', 'GITHUB_ACTIONS'];

/** The environment of a child process: this one's, minus this vitest run's own and colour settings. */
function childEnv(extra: Env): Env {
  const env: Env = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || colourVariables.includes(name) || name.startsWith('VITEST')) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

let resultsDir = '';
afterEach(() => rmSync(resultsDir, { recursive: true, force: true }));
const freshResultsDir = () => {
  resultsDir = mkdtempSync(join(tmpdir(), 'dlock-test-results-'));
  return resultsDir;
};

interface Exit {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a Node script without blocking this worker (a vitest run under load can take many seconds). */
function runNode(args: string[], cwd: string, env: Env): Promise<Exit> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd, env: childEnv(env), timeout: 60_000 }, (failed, stdout, stderr) =>
      resolve({ status: failed ? Number(failed.code ?? -1) : 0, stdout, stderr }),
    );
  });
}

/** Runs fixture packages' tests side by side, each as the test command does; resolves to their console output. */
async function runPackages(env: Env, ...names: string[]): Promise<string> {
  const runs = names.map((name) =>
    runNode(
      [
        vitestCli,
        'run',
        '--reporter=default',
        `--reporter=${jsonReporter}`,
        `--outputFile.json=${join(resultsDir, `${name}.json`)}`,
      ],
      join(workspace, 'packages', name),
      env,
    ),
  );
  // A failing run exits 1: its output is what matters here, not its exit code.
  return (await Promise.all(runs)).map((run) => run.stdout + run.stderr).join('');
}

async function summarize(): Promise<{ status: number; lines: string[] }> {
  const run = await runNode([summaryScript, resultsDir], workspace, {});
  expect(run.stderr).toBe('');
  return { status: run.status, lines: run.stdout.trimEnd().split('\n') };
}

const ansiEscape = '\u001b[';

describe('the closing line of the test command (scripts/test-summary.mjs)', () => {
  it.each<{ colours: string; env: Env; coloured: boolean }>([
    { colours: 'on, under CI=true (vitest colours even into a pipe)', env: { CI: 'true' }, coloured: true },
    { colours: 'on, under FORCE_COLOR=1', env: { FORCE_COLOR: '1' }, coloured: true },
    { colours: 'off, under NO_COLOR=1', env: { NO_COLOR: '1' }, coloured: false },
  ])('counts every outcome per package and in total with colours $colours', async ({ env, coloured }) => {
    freshResultsDir();
    const consoleOutput = await runPackages(env, 'mixed', 'switch');
    // The console really was coloured (or not): the condition that broke the old log scraper holds.
    expect(consoleOutput.includes(ansiEscape)).toBe(coloured);
    const { status, lines } = await summarize();
    expect(lines).toEqual([
      'packages/mixed   2 passed, 0 failed, 1 skipped, 1 todo',
      'packages/switch  3 passed, 0 failed, 0 skipped, 0 todo',
      'tests: 5 passed, 0 failed, 1 skipped, 1 todo in 2 packages',
    ]);
    expect(status).toBe(0);
  });

  it('fails on a failed test and on a test file that failed to load, and names both', async () => {
    freshResultsDir();
    await runPackages({ CI: 'true', DLOCK_FIXTURE_FAIL: '1' }, 'mixed', 'switch');
    const { status, lines } = await summarize();
    expect(lines).toEqual([
      'packages/mixed   2 passed, 0 failed, 1 skipped, 1 todo',
      'packages/switch  1 passed, 1 failed, 0 skipped, 0 todo  FAILED',
      '                   file failed: load.spec.ts: this file fails to load on purpose',
      '                   failed: switch.spec.ts > fails when DLOCK_FIXTURE_FAIL=1',
      'tests: 3 passed, 1 failed, 1 skipped, 1 todo in 2 packages; FAILED: packages/switch',
    ]);
    expect(status).toBe(1);
  });

  it('fails on an error outside any test, which fails the run though every test passed', async () => {
    freshResultsDir();
    await runPackages({ NO_COLOR: '1', DLOCK_FIXTURE_ESCAPE: '1' }, 'mixed', 'switch');
    const { status, lines } = await summarize();
    expect(lines).toEqual([
      'packages/mixed   2 passed, 0 failed, 1 skipped, 1 todo',
      'packages/switch  3 passed, 0 failed, 0 skipped, 0 todo  FAILED',
      '                   error outside any test: Error: escaped on purpose',
      'tests: 5 passed, 0 failed, 1 skipped, 1 todo in 2 packages; FAILED: packages/switch',
    ]);
    expect(status).toBe(1);
  });

  it('fails when a package with a test script left no report, as a crashed vitest does', async () => {
    freshResultsDir();
    await runPackages({ NO_COLOR: '1' }, 'mixed');
    const { status, lines } = await summarize();
    expect(lines).toEqual([
      'packages/mixed   2 passed, 0 failed, 1 skipped, 1 todo',
      'packages/switch  FAILED',
      `                   no report at ${join(resultsDir, 'switch.json')}: its vitest crashed or did not run`,
      'tests: 2 passed, 0 failed, 1 skipped, 1 todo in 2 packages; FAILED: packages/switch',
    ]);
    expect(status).toBe(1);
  });

  it('fails on a report cut short, as one written by a vitest killed mid-write is', async () => {
    freshResultsDir();
    await runPackages({ NO_COLOR: '1' }, 'mixed', 'switch');
    const report = join(resultsDir, 'switch.json');
    const text = readFileSync(report, 'utf8');
    writeFileSync(report, text.slice(0, text.length / 2));
    const { status, lines } = await summarize();
    expect(lines[1]).toBe('packages/switch  FAILED');
    expect(lines[2]).toMatch(/^ {19}unreadable report .*switch\.json: /);
    expect(lines.at(-1)).toBe(
      'tests: 2 passed, 0 failed, 1 skipped, 1 todo in 2 packages; FAILED: packages/switch',
    );
    expect(status).toBe(1);
  });
});
