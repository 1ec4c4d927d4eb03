import { redisServerBinary } from './binaries.js';
import { createWorkDir } from './cleanup.js';
import { freePort } from './ports.js';
import { RedisReplyError, redisCommands } from './resp.js';
import {
  LOOPBACK,
  LocalServer,
  type ProbeResult,
  type ServerHandle,
  retryOnPortConflict,
  startAllOrDiscard,
} from './server.js';

export interface RedisOptions {
  /** Default false: no RDB snapshots, no AOF, so a restart comes back empty. True: AOF with fsync always. */
  persistence?: boolean;
  password?: string;
  replicaOf?: { host: string; port: number };
  /** Appended to the command line, e.g. `['--maxmemory', '10mb']`. */
  extraArgs?: string[];
}

export interface RedisServer extends ServerHandle {
  /** `redis://127.0.0.1:<port>`, with `:<password>@` when a password is set. */
  readonly url: string;
}

export interface RedisNodes {
  readonly nodes: RedisServer[];
  readonly urls: string[];
  /** Kills every node and removes their directories. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 5_000;
const PROBE_INTERVAL_MS = 25;
const PROBE_TIMEOUT_MS = 500;

class LocalRedisServer extends LocalServer implements RedisServer {
  readonly url: string;

  constructor(location: ConstructorParameters<typeof LocalServer>[0], options: RedisOptions) {
    super(location, {
      kind: 'redis-server',
      command: redisServerBinary(),
      args: redisArgs(location.port, location.dataDir, options),
      startTimeoutMs: START_TIMEOUT_MS,
      probeIntervalMs: PROBE_INTERVAL_MS,
      probe: (pid) => probeRedis(location.port, pid, options.password),
    });
    const credentials = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
    this.url = `redis://${credentials}${LOOPBACK}:${location.port}`;
  }
}

function redisArgs(port: number, dataDir: string, options: RedisOptions): string[] {
  const persistence = options.persistence
    ? ['--appendonly', 'yes', '--appendfsync', 'always']
    : ['--save', '', '--appendonly', 'no'];
  const auth =
    options.password === undefined
      ? []
      : ['--requirepass', options.password, '--masterauth', options.password];
  const replication =
    options.replicaOf === undefined
      ? []
      : ['--replicaof', options.replicaOf.host, String(options.replicaOf.port)];
  return [
    '--port',
    String(port),
    '--bind',
    LOOPBACK,
    '--dir',
    dataDir,
    '--daemonize',
    'no',
    ...persistence,
    ...auth,
    ...replication,
    ...(options.extraArgs ?? []),
  ];
}

/** PING proves it serves; INFO's process_id proves it is the redis we spawned, not one that took the port. */
async function probeRedis(port: number, pid: number, password: string | undefined): Promise<ProbeResult> {
  const auth = password === undefined ? [] : [['AUTH', password]];
  const replies = await redisCommands(port, [...auth, ['PING'], ['INFO', 'server']], {
    timeoutMs: PROBE_TIMEOUT_MS,
  });
  const [pong, info] = replies.slice(auth.length);
  if (replies.some((reply) => reply instanceof RedisReplyError && reply.message.startsWith('LOADING'))) {
    return 'starting';
  }
  const answeringPid = typeof info === 'string' ? /^process_id:(\d+)/m.exec(info)?.[1] : undefined;
  return pong === 'PONG' && answeringPid === String(pid) ? 'ready' : 'impostor';
}

/** Starts a standalone redis-server on a free loopback port, in its own temporary directory. */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  redisServerBinary();
  return retryOnPortConflict(async () => {
    const server = new LocalRedisServer({ port: await freePort(), ...createWorkDir() }, options);
    await startAllOrDiscard([server]);
    return server;
  });
}

/** Starts `count` independent redis-servers (e.g. for Redlock), all with the same options. */
export async function startRedisNodes(count: number, options: RedisOptions = {}): Promise<RedisNodes> {
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`count must be a positive integer, got ${count}`);
  redisServerBinary();
  const nodes = await retryOnPortConflict(async () => {
    const servers: LocalRedisServer[] = [];
    for (let i = 0; i < count; i++)
      servers.push(new LocalRedisServer({ port: await freePort(), ...createWorkDir() }, options));
    await startAllOrDiscard(servers);
    return servers;
  });
  return {
    nodes,
    urls: nodes.map((node) => node.url),
    stop: async () => {
      await Promise.allSettled(nodes.map((node) => node.discard()));
    },
  };
}
