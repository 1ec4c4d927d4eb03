// Every ```ts, ```js and ```sh block of the READMEs below runs here, so the docs cannot rot. The
// convention (also in the root README, "Docs that run"):
// - ts: type-checked and compiled by TypeScript (target ES2022, NodeNext) and run with Node. A test
//   file (one that calls describeLockProvider) runs with vitest instead. Snippets that need a server
//   read REDIS_URL / ZOOKEEPER_CONNECT / ETCD_ENDPOINTS, which this test points at real servers.
// - js: runs with Node as it is.
// - sh: every line runs from the repository root as written, except the minutes-long ones (see
//   `shellPlan`); a block marked `another-project` runs in a fresh directory beside a `dlock` link to
//   the repository.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type EtcdServer,
  type RedisServer,
  type ZooKeeperServer,
  hasBinaries,
  startEtcd,
  startRedis,
  startZooKeeper,
  stopAll,
} from '@dlock/testkit';
import { type Tokens, lexer } from 'marked';
import type * as TypeScript from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labPackageDir, workspaceRoot } from '../src/paths.js';

/** The READMEs this test keeps honest; a package whose README should run as written is listed here. */
const READMES = [
  'README.md',
  'packages/core/README.md',
  'packages/conformance/README.md',
  'packages/lab/README.md',
];
const ROOT = workspaceRoot();
// A shell line may build the workspace first (scripts/compare.sh): minutes on a busy machine.
const RUN_TIMEOUT_MS = 360_000;
/** Scratch space inside the lab package, so the snippets' `@dlock/*` imports resolve to this workspace. */
const SCRATCH = join(labPackageDir, '.snippets');
const ts = createRequire(join(ROOT, 'package.json'))('typescript') as typeof TypeScript;

interface Snippet {
  readonly file: string;
  readonly line: number;
  readonly lang: 'ts' | 'js' | 'sh';
  readonly flags: readonly string[];
  readonly code: string;
}

const LANGS: Record<string, Snippet['lang']> = {
  ts: 'ts',
  typescript: 'ts',
  js: 'js',
  javascript: 'js',
  // CommonJS, run from a .cjs file (the README's require(esm) example).
  cjs: 'js',
  sh: 'sh',
  bash: 'sh',
};

function snippetsOf(file: string): Snippet[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const found: Snippet[] = [];
  let from = 0;
  const visit = (tokens: readonly Tokens.Generic[]) => {
    for (const token of tokens) {
      if (token.type === 'code') {
        const code = token as Tokens.Code;
        const [lang = '', ...flags] = (code.lang ?? '').split(/\s+/);
        const at = text.indexOf(code.raw, from);
        from = at >= 0 ? at + code.raw.length : from;
        const kind = LANGS[lang];
        if (kind)
          found.push({
            file,
            line: text.slice(0, at).split('\n').length,
            lang: kind,
            flags: lang === 'cjs' ? ['commonjs', ...flags] : flags,
            code: code.text,
          });
      }
      const nested =
        (token as { tokens?: Tokens.Generic[]; items?: Tokens.Generic[] }).tokens ??
        (token as { items?: Tokens.Generic[] }).items;
      if (nested) visit(nested);
    }
  };
  visit(lexer(text) as unknown as Tokens.Generic[]);
  return found;
}

const snippets = READMES.flatMap(snippetsOf);
const name = (snippet: Snippet) =>
  `${snippet.file}:${snippet.line} (${snippet.lang}${snippet.flags.length ? ` ${snippet.flags.join(' ')}` : ''})`;

interface Run {
  readonly code: number | null;
  readonly signal?: NodeJS.Signals | null;
  readonly output: string;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr?.on('data', (chunk) => {
      output += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? RUN_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Type-checks and compiles a TypeScript snippet; returns the compiled file, or throws the diagnostics. */
function compile(code: string, dir: string, base: string): string {
  const source = join(dir, `${base}.mts`);
  writeFileSync(source, code);
  const program = ts.createProgram([source], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
    types: ['node'],
    strict: true,
    skipLibCheck: true,
    noEmitOnError: true,
    outDir: dir,
  });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  if (diagnostics.length > 0) {
    throw new Error(
      ts.formatDiagnostics(diagnostics, {
        getCanonicalFileName: (file) => file,
        getCurrentDirectory: () => dir,
        getNewLine: () => '\n',
      }),
    );
  }
  program.emit();
  return join(dir, `${base}.mjs`);
}

/** How a shell line of the READMEs is exercised: as written, or — for the minutes-long ones — how instead. */
function shellPlan(line: string): {
  args: string;
  how: 'as written' | 'syntax only' | 'dry run' | 'until ready';
} {
  if (/^bash scripts\/test\.sh\b/.test(line)) return { args: 'bash -n scripts/test.sh', how: 'syntax only' };
  if (
    /^(bash scripts\/(compare|readme-table)\.sh|pnpm (exec )?dlock compare)\b/.test(line) &&
    !line.includes('--from')
  ) {
    return { args: line.includes('--dry-run') ? line : `${line} --dry-run`, how: 'dry run' };
  }
  if (/^pnpm (exec )?dlock servers up\b/.test(line)) return { args: line, how: 'until ready' };
  return { args: line, how: 'as written' };
}

const shellLines = (code: string) =>
  code
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('#'));

/** Starts `line` (a playground), waits for the line that says its servers are up, then Ctrl-C. */
async function untilReady(line: string): Promise<Run> {
  // Its own process group, as a terminal would start it, so Ctrl-C reaches every process of it.
  const child: ChildProcess = spawn('bash', ['-c', line], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  const ready = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), RUN_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (/running \(pid \d+\)/.test(output)) {
        clearTimeout(timer);
        resolve(true);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
  const closed = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on('close', (code, signal) => resolve([code, signal])),
  );
  const wasReady = await ready;
  process.kill(-(child.pid as number), 'SIGINT');
  const [code, signal] = await closed;
  return { code: wasReady ? code : -1, signal, output };
}

let redis: RedisServer | undefined;
let zookeeper: ZooKeeperServer | undefined;
let etcd: EtcdServer | undefined;
const serverEnv: Record<string, string> = {};

beforeAll(async () => {
  rmSync(SCRATCH, { recursive: true, force: true });
  mkdirSync(SCRATCH, { recursive: true });
  writeFileSync(join(SCRATCH, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  const needs = (variable: string) => snippets.some((snippet) => snippet.code.includes(variable));
  if (needs('REDIS_URL') && hasBinaries('redis')) {
    redis = await startRedis();
    serverEnv.REDIS_URL = redis.url;
  }
  if (needs('ZOOKEEPER_CONNECT') && hasBinaries('zookeeper')) {
    zookeeper = await startZooKeeper();
    serverEnv.ZOOKEEPER_CONNECT = zookeeper.connectString;
  }
  if (needs('ETCD_ENDPOINTS') && hasBinaries('etcd')) {
    etcd = await startEtcd();
    serverEnv.ETCD_ENDPOINTS = etcd.endpoint;
  }
});

afterAll(async () => {
  await stopAll();
  rmSync(SCRATCH, { recursive: true, force: true });
});

describe('README snippets run as written', () => {
  it('finds the snippets of every README it checks', () => {
    for (const file of READMES)
      expect(
        snippets.some((snippet) => snippet.file === file),
        file,
      ).toBe(true);
    expect(snippets.filter((snippet) => snippet.lang === 'ts').length).toBeGreaterThanOrEqual(4);
  });

  for (const [index, snippet] of snippets.entries()) {
    if (snippet.lang === 'ts' || snippet.lang === 'js') {
      it(
        `${name(snippet)} runs`,
        async () => {
          const dir = join(SCRATCH, `snippet-${index}`);
          mkdirSync(dir, { recursive: true });
          const testFile = snippet.code.includes('describeLockProvider(');
          let file: string;
          if (snippet.lang === 'ts') {
            file = compile(snippet.code, dir, testFile ? 'readme.test' : 'readme');
          } else {
            file = join(dir, snippet.flags.includes('commonjs') ? 'readme.cjs' : 'readme.mjs');
            writeFileSync(file, snippet.code);
          }
          const vitest = join(ROOT, 'node_modules', 'vitest', 'vitest.mjs');
          if (testFile) {
            // Its own config, so vitest does not pick up the lab's (and its global setup).
            writeFileSync(
              join(dir, 'vitest.config.mjs'),
              "export default { test: { include: ['*.test.mjs'] } };\n",
            );
          }
          const result = testFile
            ? await run(
                process.execPath,
                [vitest, 'run', '--root', dir, '--config', join(dir, 'vitest.config.mjs')],
                { cwd: dir },
              )
            : await run(process.execPath, [file], { cwd: dir, env: serverEnv });
          expect(result.code, result.output).toBe(0);
        },
        RUN_TIMEOUT_MS,
      );
    }
    if (snippet.lang === 'sh' && !snippet.flags.includes('another-project')) {
      for (const line of shellLines(snippet.code)) {
        const plan = shellPlan(line);
        it(
          `${name(snippet)}: \`${line}\` (${plan.how})`,
          async () => {
            if (plan.how === 'until ready') {
              // Ctrl-C: the playground stops its servers and exits; pnpm, sent the same signal, ends by it.
              const result = await untilReady(plan.args);
              expect(result.output).toContain('servers stopped');
              expect(result.code === 0 || result.signal === 'SIGINT', result.output).toBe(true);
              return;
            }
            const result = await run('bash', ['-c', plan.args], { cwd: ROOT });
            expect(result.code, result.output).toBe(0);
            if (plan.how === 'dry run') expect(result.output).toContain('estimated time');
          },
          RUN_TIMEOUT_MS,
        );
      }
    }
    if (snippet.lang === 'sh' && snippet.flags.includes('another-project')) {
      it(`${name(snippet)}: installs the packed packages in another project and uses them`, async () => {
        // The README's `bash scripts/pack.sh` line (run above) made the tarballs; make them if it did not run.
        if (!existsSync(join(ROOT, 'dist-packages'))) {
          const packed = await run('bash', ['scripts/pack.sh'], { cwd: ROOT });
          expect(packed.code, packed.output).toBe(0);
        }
        const parent = mkdtempSync(join(tmpdir(), 'dlock-another-project-'));
        try {
          symlinkSync(ROOT, join(parent, 'dlock'));
          const app = join(parent, 'app');
          mkdirSync(app);
          writeFileSync(
            join(app, 'package.json'),
            JSON.stringify({ name: 'app', private: true, type: 'module' }),
          );
          for (const line of shellLines(snippet.code)) {
            const result = await run('bash', ['-c', `${line} --prefer-offline --no-audit --no-fund`], {
              cwd: app,
            });
            expect(result.code, result.output).toBe(0);
          }
          const redisSnippet = snippets.find(
            (entry) => entry.lang === 'ts' && entry.code.includes("'@dlock/redis'"),
          );
          expect(redisSnippet, 'the README shows @dlock/redis in use').toBeDefined();
          const dir = join(SCRATCH, `snippet-${index}`);
          mkdirSync(dir, { recursive: true });
          const compiled = compile((redisSnippet as Snippet).code, dir, 'another-project');
          writeFileSync(join(app, 'main.mjs'), readFileSync(compiled, 'utf8'));
          const result = await run(process.execPath, ['main.mjs'], { cwd: app, env: serverEnv });
          expect(result.code, result.output).toBe(0);
          expect(result.output).toContain('redis: holding nightly-report');
        } finally {
          rmSync(parent, { recursive: true, force: true });
        }
      }, 300_000);
    }
  }
});
