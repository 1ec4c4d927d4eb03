import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Lease, LockProvider } from '@dlock/core';
import { freePort, startEtcd, startRedis, startRedisNodes, startZooKeeper, stopAll } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { discoverBackends } from '../src/discovery.js';
import { runInspect, runWatch } from '../src/inspect.js';
import { labPackageDir } from '../src/paths.js';

/**
 * `dlock inspect` and `dlock watch` against real servers, one of each backend. The commands run in
 * process (their output collected) except where the process itself is what is checked: exit codes,
 * no stack trace, SIGINT.
 */

interface Case {
  readonly backend: string;
  endpoints: string[];
  /** Whether the backend keeps a queue a reader can see (ZooKeeper children, etcd revisions). */
  readonly queue: boolean;
  /** Whether it can push holder changes (watchHolder). */
  readonly push: boolean;
  /** Whether it can list held keys. */
  readonly listing: boolean;
}

const cases: Case[] = [
  { backend: 'redis', endpoints: [], queue: false, push: false, listing: true },
  { backend: 'redlock', endpoints: [], queue: false, push: false, listing: false },
  { backend: 'zookeeper', endpoints: [], queue: true, push: true, listing: true },
  { backend: 'etcd', endpoints: [], queue: true, push: true, listing: true },
];

const providers: LockProvider[] = [];

async function connect(item: Case, identity: string): Promise<LockProvider> {
  const { backends } = await discoverBackends();
  const backend = backends.find((candidate) => candidate.name === item.backend);
  if (!backend) throw new Error(`backend ${item.backend} not discovered`);
  const provider = await backend.createProvider(item.endpoints, { identity, connectTimeoutMs: 5_000 });
  providers.push(provider);
  return provider;
}

async function inspect(args: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [];
  const code = await runInspect(args, (text) => out.push(text));
  return { code, out };
}

async function inspectJson(args: string[]) {
  const { code, out } = await inspect([...args, '--json']);
  expect(code).toBe(0);
  expect(out).toHaveLength(1);
  return JSON.parse(out[0] as string);
}

const target = (item: Case) => ['--backend', item.backend, '--endpoints', item.endpoints.join(',')];

beforeAll(async () => {
  const [redis, nodes, zookeeper, etcd] = await Promise.all([
    startRedis(),
    startRedisNodes(3),
    startZooKeeper(),
    startEtcd(),
  ]);
  const endpoints: Record<string, string[]> = {
    redis: [redis.url],
    redlock: nodes.urls,
    zookeeper: [zookeeper.connectString],
    etcd: [etcd.endpoint],
  };
  for (const item of cases) item.endpoints = endpoints[item.backend] as string[];
});

afterAll(async () => {
  await Promise.allSettled(providers.map((provider) => provider.close()));
  await stopAll();
});

describe.each(cases)('dlock inspect on $backend', (item) => {
  it('reports the holder and fencing token of a held lock, and what the backend says beside it', async () => {
    const provider = await connect(item, 'holder-A');
    await using lease = await provider.acquire('held-1', { ttlMs: 30_000 });
    const report = await inspectJson(['held-1', ...target(item)]);
    expect(report).toMatchObject({
      backend: item.backend,
      kind: 'lock',
      key: 'held-1',
      // RedLock has no fencing: no token is shown rather than its meaningless 0.
      holder: { identity: 'holder-A', token: item.backend === 'redlock' ? null : lease.token.toString() },
    });
    if (item.backend === 'redis') {
      expect(report.ttlLeftMs).toBeGreaterThan(0);
      expect(report.ttlLeftMs).toBeLessThanOrEqual(30_000);
    }
    if (item.backend === 'redlock') expect(report.notes).toContain('time left: not reported by redlock');
    if (item.queue) {
      expect(report.session).toEqual(expect.any(String));
      expect(report.waiters).toEqual([]);
    } else {
      expect(report.waiters).toBeNull();
      expect(report.notes.join('\n')).toContain(`queue: not visible on ${item.backend}`);
    }
    const text = await inspect(['held-1', ...target(item)]);
    expect(text.out.join('\n')).toContain('holder    holder-A');
    expect(text.out.join('\n')).toContain(
      item.backend === 'redlock'
        ? 'token     none (this backend has no fencing)'
        : `token     ${lease.token}`,
    );
  });

  it('reports a free key as free', async () => {
    const report = await inspectJson(['never-taken', ...target(item)]);
    expect(report.holder).toBeNull();
    expect((await inspect(['never-taken', ...target(item)])).out.join('\n')).toContain(
      'holder    none (free)',
    );
  });

  it.runIf(item.queue)('lists the waiters in line, first in line first', async () => {
    const holder = await connect(item, 'holder-A');
    const first = await connect(item, 'waiter-B');
    const second = await connect(item, 'waiter-C');
    await using _lease = await holder.acquire('queued-1', { ttlMs: 30_000 });
    const giveUp = new AbortController();
    const pending = [
      first.acquire('queued-1', { signal: giveUp.signal }),
      // The second waiter queues only once the first is in line, so their order is known.
      vi
        .waitFor(async () => expect((await holder.inspect?.('queued-1'))?.waiters).toHaveLength(1), {
          timeout: 10_000,
          interval: 50,
        })
        .then(() => second.acquire('queued-1', { signal: giveUp.signal })),
    ];
    try {
      await vi.waitFor(async () => expect((await holder.inspect?.('queued-1'))?.waiters).toHaveLength(2), {
        timeout: 10_000,
        interval: 50,
      });
      const report = await inspectJson(['queued-1', ...target(item)]);
      expect(report.holder.identity).toBe('holder-A');
      expect(report.waiters.map((waiter: { identity: string }) => waiter.identity)).toEqual([
        'waiter-B',
        'waiter-C',
      ]);
      const text = (await inspect(['queued-1', ...target(item)])).out.join('\n');
      expect(text).toContain('queue     2 waiting');
      expect(text).toMatch(/1\. waiter-B/);
    } finally {
      giveUp.abort();
      await Promise.allSettled(pending);
    }
  });

  it('lists the held keys under a prefix, or says why it cannot', async () => {
    const provider = await connect(item, 'holder-A');
    await using _a = await provider.acquire('orders/1', { ttlMs: 30_000 });
    await using _b = await provider.acquire('orders/2', { ttlMs: 30_000 });
    await using _c = await provider.acquire('invoices/1', { ttlMs: 30_000 });
    if (!item.listing) {
      await expect(inspect(['--prefix', 'orders/', ...target(item)])).rejects.toMatchObject({
        code: 'UNSUPPORTED',
        message: expect.stringContaining('listing held keys'),
      });
      return;
    }
    const listing = await inspectJson(['--prefix', 'orders/', ...target(item)]);
    expect(listing.held.map((entry: { key: string }) => entry.key)).toEqual(['orders/1', 'orders/2']);
    expect(listing.held[0].holder.identity).toBe('holder-A');
    const text = (await inspect(['--prefix', 'orders/', ...target(item)])).out.join('\n');
    expect(text).toContain('held keys under "orders/"');
    expect(text).toContain('orders/2  holder-A');
  });

  it('watches holder changes as JSON lines where the backend pushes, or says it cannot', async () => {
    if (!item.push) {
      await expect(runWatch(['w-1', ...target(item)], () => {})).rejects.toMatchObject({
        code: 'UNSUPPORTED',
      });
      return;
    }
    const provider = await connect(item, 'holder-W');
    const lines: string[] = [];
    const stop = new AbortController();
    const watching = runWatch(['w-1', ...target(item), '--json'], (text) => lines.push(text), stop.signal);
    let lease: Lease | undefined;
    try {
      await vi.waitFor(() => expect(lines).toHaveLength(1), { timeout: 10_000, interval: 25 });
      lease = await provider.acquire('w-1', { ttlMs: 30_000 });
      await vi.waitFor(() => expect(lines).toHaveLength(2), { timeout: 10_000, interval: 25 });
      await lease.release();
      await vi.waitFor(() => expect(lines).toHaveLength(3), { timeout: 10_000, interval: 25 });
    } finally {
      stop.abort();
      await lease?.release();
    }
    expect(await watching).toBe(0);
    const events = lines.map((line) => JSON.parse(line));
    expect(events.map((event) => event.holder)).toEqual([
      null,
      { identity: 'holder-W', token: lease?.token.toString() },
      null,
    ]);
    expect(events.every((event) => event.key === 'w-1' && !Number.isNaN(Date.parse(event.at)))).toBe(true);
  });
});

describe.each(cases.filter((item) => item.push))('dlock watch --max-events on $backend', (item) => {
  it('stops by itself after n events', async () => {
    const lines: string[] = [];
    expect(
      await runWatch(['bounded-1', ...target(item), '--max-events', '1'], (text) => lines.push(text)),
    ).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ {2}free$/);
  });
});

describe('dlock inspect on a semaphore and a read-write lock', () => {
  const redis = cases[0] as Case;

  it('shows permit holders with their permits, and read holders with their mode', async () => {
    const provider = await connect(redis, 'holder-S');
    await using _permits = await provider.semaphore('pool', { limit: 3 }).acquire({ permits: 2 });
    await using _read = await provider.readWriteLock('doc').read.acquire();
    const pool = await inspectJson(['pool', '--kind', 'semaphore', ...target(redis)]);
    expect(pool.holders).toEqual([{ identity: 'holder-S', token: expect.any(String), permits: 2 }]);
    const doc = await inspectJson(['doc', '--kind', 'read-write', ...target(redis)]);
    expect(doc.holders).toEqual([{ identity: 'holder-S', token: expect.any(String), mode: 'read' }]);
    const text = (await inspect(['pool', '--kind', 'semaphore', ...target(redis)])).out.join('\n');
    expect(text).toContain('holders   1 (2 permits)');
  });
});

describe('dlock inspect input and failures', () => {
  const CLI = join(labPackageDir, 'dist', 'cli.js');

  function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    return new Promise((resolve) =>
      child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started })),
    );
  }

  it('rejects a bad endpoint naming the field, the value and what is allowed', async () => {
    await expect(
      inspect(['k', '--backend', 'etcd', '--endpoints', 'redis://127.0.0.1:1']),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: '--endpoints',
      value: 'redis://127.0.0.1:1',
      message: expect.stringContaining('etcd addresses like http://127.0.0.1:2379'),
    });
    await expect(inspect(['k', '--backend', 'nope', '--endpoints', 'x'])).rejects.toMatchObject({
      field: '--backend',
      message: expect.stringContaining('redis'),
    });
    const cli = await run(['inspect', 'k', '--backend', 'zookeeper', '--endpoints', 'localhost']);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(
      'invalid --endpoints: "localhost" (allowed: zookeeper addresses like 127.0.0.1:2181',
    );
    expect(cli.stderr).not.toMatch(/^\s+at /m);
  });

  it('names --endpoints when the backend refuses the address list', async () => {
    await expect(
      inspect(['k', '--backend', 'redlock', '--endpoints', 'redis://127.0.0.1:1,redis://127.0.0.1:2']),
    ).rejects.toMatchObject({
      field: '--endpoints',
      message: expect.stringContaining('odd number'),
    });
  });

  it.each(['redis', 'redlock', 'zookeeper', 'etcd'])(
    'says %s is unavailable within the connect timeout, with exit code 3 and no stack trace',
    async (backend) => {
      const port = await freePort();
      const nodes = [port, await freePort(), await freePort()];
      const address = {
        redlock: nodes.map((node) => `redis://127.0.0.1:${node}`).join(','),
        redis: `redis://127.0.0.1:${port}`,
        zookeeper: `127.0.0.1:${port}`,
        etcd: `http://127.0.0.1:${port}`,
      }[backend] as string;
      const cli = await run([
        'inspect',
        'k',
        '--backend',
        backend,
        '--endpoints',
        address,
        '--connect-timeout-ms',
        '1000',
      ]);
      expect(cli.code).toBe(3);
      expect(cli.stdout).toBe('');
      expect(cli.stderr).toContain('is unavailable');
      expect(cli.stderr).not.toMatch(/^\s+at /m);
      // The connect bound plus process start-up on a busy machine: generous, but never a hang.
      expect(cli.ms).toBeLessThan(25_000);
    },
  );

  it('stops a watch on SIGINT with exit code 0', async () => {
    const etcd = cases[3] as Case;
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, 'watch', 'sig-1', ...target(etcd), '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await vi.waitFor(() => expect(stdout).toContain('\n'), { timeout: 20_000, interval: 50 });
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(JSON.parse(stdout.trim())).toMatchObject({ key: 'sig-1', holder: null });
    expect(performance.now() - started).toBeLessThan(25_000);
  });
});
