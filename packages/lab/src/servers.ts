import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, pause } from '@dlock/core';
import {
  type ServerHandle,
  hasBinaries,
  startEtcd,
  startEtcdCluster,
  startRedis,
  startRedisNodes,
  startZooKeeper,
  startZooKeeperEnsemble,
  stopAll,
} from '@dlock/testkit';
import { discoverBackends } from './discovery.js';
import { DLOCK_COMMAND, stateDir } from './paths.js';
import type { ServerKind } from './results.js';
import { serversLabel } from './words.js';

/** ZooKeeper's tick: sessions can be as short as two ticks, which keeps crash recovery quick. */
const ZOOKEEPER_TICK_MS = 200;

/** The servers one backend needs, started by the testkit or given as addresses. */
export interface ServerSet {
  readonly kind: ServerKind;
  /** redis URLs, ZooKeeper host:port pairs or etcd client URLs, one per server. */
  readonly endpoints: string[];
  /** The processes, for fault injection; empty for servers given on the command line. */
  readonly members: ServerHandle[];
  /** The ensemble's or cluster's current leader (ZooKeeper, etcd with several members). */
  leader?(): Promise<ServerHandle>;
  stop(): Promise<void>;
}

/** Whether this machine can start servers of `kind` (the binary is installed). */
export function canStart(kind: ServerKind): boolean {
  return hasBinaries(kind);
}

export async function startServerSet(kind: ServerKind, count: number): Promise<ServerSet> {
  switch (kind) {
    case 'redis': {
      if (count === 1) {
        const server = await startRedis();
        return { kind, endpoints: [server.url], members: [server], stop: () => server.stop() };
      }
      const nodes = await startRedisNodes(count);
      return { kind, endpoints: nodes.urls, members: nodes.nodes, stop: () => nodes.stop() };
    }
    case 'zookeeper': {
      if (count === 1) {
        const server = await startZooKeeper({ tickTimeMs: ZOOKEEPER_TICK_MS });
        return { kind, endpoints: [server.connectString], members: [server], stop: () => server.stop() };
      }
      const ensemble = await startZooKeeperEnsemble(count, { tickTimeMs: ZOOKEEPER_TICK_MS });
      return {
        kind,
        endpoints: ensemble.members.map((member) => member.connectString),
        members: ensemble.members,
        leader: () => ensemble.leader(),
        stop: () => ensemble.stop(),
      };
    }
    case 'etcd': {
      if (count === 1) {
        const server = await startEtcd();
        return { kind, endpoints: [server.endpoint], members: [server], stop: () => server.stop() };
      }
      const cluster = await startEtcdCluster(count);
      return {
        kind,
        endpoints: cluster.endpoints,
        members: cluster.members,
        leader: () => cluster.leader(),
        stop: () => cluster.stop(),
      };
    }
  }
}

/** Servers someone else runs: the lab benchmarks them but never injects faults into them. */
export function externalServerSet(kind: ServerKind, endpoints: string[]): ServerSet {
  return { kind, endpoints, members: [], stop: async () => {} };
}

/* ------------------------------------------------------------------------------------------------
 * `dlock servers up|down`: a local playground with the servers every discovered backend needs.
 * ---------------------------------------------------------------------------------------------- */

interface PlaygroundState {
  readonly pid: number;
  readonly startedAt: string;
  readonly servers: Array<{ kind: ServerKind; count: number; endpoints: string[] }>;
}

const playgroundStateFile = () => join(stateDir(), 'servers.json');

function readPlaygroundState(): PlaygroundState | undefined {
  try {
    return JSON.parse(readFileSync(playgroundStateFile(), 'utf8')) as PlaygroundState;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Starts one server set per distinct (kind, count) the discovered backends need and keeps them running. */
export async function serversUp(kinds: ServerKind[] | undefined): Promise<never> {
  const existing = readPlaygroundState();
  if (existing && isAlive(existing.pid)) {
    throw new InvalidArgumentError(
      'servers up',
      'already running',
      `one playground at a time: pid ${existing.pid} runs it; stop it with \`${DLOCK_COMMAND} servers down\``,
    );
  }
  const { backends } = await discoverBackends();
  const wanted = new Map<string, { kind: ServerKind; count: number }>();
  for (const backend of backends) {
    if (backend.placement === 'in-process') continue;
    if (kinds && !kinds.includes(backend.placement)) continue;
    wanted.set(`${backend.placement}:${backend.serverCount}`, {
      kind: backend.placement,
      count: backend.serverCount,
    });
  }
  // `on`, not `once`: the testkit's own signal hook re-raises the signal (ending us before the clean stop
  // below) when it finds no other listener left.
  const stopping = new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => resolve());
  });
  const state: PlaygroundState = { pid: process.pid, startedAt: new Date().toISOString(), servers: [] };
  for (const { kind, count } of [...wanted.values()].sort((a, b) => a.kind.localeCompare(b.kind))) {
    if (!canStart(kind)) {
      console.log(
        `${serversLabel(kind, count)}: not installed on this machine (run \`bash scripts/setup.sh\`); skipped`,
      );
      continue;
    }
    const set = await startServerSet(kind, count);
    state.servers.push({ kind, count, endpoints: set.endpoints });
    console.log(`${serversLabel(kind, count)}: ${set.endpoints.join(' ')}`);
  }
  mkdirSync(stateDir(), { recursive: true });
  writeFileSync(playgroundStateFile(), `${JSON.stringify(state, null, 2)}\n`);
  console.log(`\nrunning (pid ${process.pid}); Ctrl-C or \`${DLOCK_COMMAND} servers down\` stops them`);
  // The testkit unrefs its server processes; this timer is what keeps the playground in the foreground.
  const keepAlive = setInterval(() => {}, 60_000);
  await stopping;
  clearInterval(keepAlive);
  await stopAll();
  rmSync(playgroundStateFile(), { force: true });
  console.log('servers stopped');
  process.exit(0);
}

const DOWN_TIMEOUT_MS = 20_000;

export async function serversDown(): Promise<void> {
  const state = readPlaygroundState();
  if (!state) {
    console.log('no playground is running');
    return;
  }
  if (isAlive(state.pid)) {
    process.kill(state.pid, 'SIGTERM');
    const deadline = performance.now() + DOWN_TIMEOUT_MS;
    while (isAlive(state.pid) && performance.now() < deadline) await pause(100);
    if (isAlive(state.pid))
      throw new Error(`the playground (pid ${state.pid}) did not stop within ${DOWN_TIMEOUT_MS} ms`);
  }
  if (existsSync(playgroundStateFile())) rmSync(playgroundStateFile(), { force: true });
  console.log(`stopped the playground (pid ${state.pid})`);
}
