import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { zooKeeperRuntime } from './binaries.js';
import { createWorkDir } from './cleanup.js';
import { type ZooKeeperMode, fourLetterWord, zooKeeperMode } from './four-letter-words.js';
import { smallJvmFlags } from './jvm.js';
import { freePorts } from './ports.js';
import {
  LOOPBACK,
  LocalServer,
  type ProbeResult,
  type ServerHandle,
  type ServerLocation,
  retryOnPortConflict,
  startAllOrDiscard,
} from './server.js';
import { pollUntil } from './wait.js';

export interface ZooKeeperOptions {
  /** Default 200 ms: sessions may then be as short as 2 ticks = 400 ms. */
  tickTimeMs?: number;
}

export interface ZooKeeperServer extends ServerHandle {
  /** `127.0.0.1:<port>` */
  readonly connectString: string;
}

export interface ZooKeeperEnsemble {
  /** Every member, comma-separated. */
  readonly connectString: string;
  readonly members: ZooKeeperServer[];
  /** Waits until exactly one running member reports `Mode: leader`. */
  leader(): Promise<ZooKeeperServer>;
  /** The running members other than the leader. */
  followers(): Promise<ZooKeeperServer[]>;
  /** Kills every member and removes their directories. */
  stop(): Promise<void>;
}

const DEFAULT_TICK_TIME_MS = 200;
const START_TIMEOUT_MS = 20_000;
const LEADER_TIMEOUT_MS = 20_000;
const PROBE_INTERVAL_MS = 100;
const PROBE_TIMEOUT_MS = 1_000;

const JVM_FLAGS = [
  ...smallJvmFlags(256),
  // Election connections to a killed peer should fail fast, not after the default 5 s.
  '-Dzookeeper.cnxTimeout=1000',
];

const LOG4J_PROPERTIES = `log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.Target=System.out
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1} - %m%n
`;

interface QuorumPorts {
  readonly quorumPort: number;
  readonly electionPort: number;
}

interface MemberPlan extends ServerLocation, QuorumPorts {
  readonly myid: number;
}

class LocalZooKeeperServer extends LocalServer implements ZooKeeperServer {
  readonly connectString: string;

  constructor(member: MemberPlan, ensemble: readonly MemberPlan[], tickTimeMs: number) {
    const runtime = zooKeeperRuntime();
    const configPath = join(member.workDir, 'zoo.cfg');
    const log4jPath = join(member.workDir, 'log4j.properties');
    writeFileSync(configPath, zooKeeperConfig(member, ensemble, tickTimeMs));
    writeFileSync(log4jPath, LOG4J_PROPERTIES);
    if (ensemble.length > 0) writeFileSync(join(member.dataDir, 'myid'), `${member.myid}\n`);
    super(member, {
      kind: 'zookeeper',
      command: runtime.java,
      args: [
        ...JVM_FLAGS,
        `-Dlog4j.configuration=file:${log4jPath}`,
        '-cp',
        runtime.classpath,
        'org.apache.zookeeper.server.quorum.QuorumPeerMain',
        configPath,
      ],
      startTimeoutMs: START_TIMEOUT_MS,
      probeIntervalMs: PROBE_INTERVAL_MS,
      probe: () => probeZooKeeper(member.port, member.workDir),
    });
    this.connectString = `${LOOPBACK}:${member.port}`;
  }

  mode(): Promise<ZooKeeperMode | undefined> {
    return zooKeeperMode(this.port, PROBE_TIMEOUT_MS);
  }
}

function zooKeeperConfig(member: MemberPlan, ensemble: readonly MemberPlan[], tickTimeMs: number): string {
  const lines = [
    `tickTime=${tickTimeMs}`,
    // Followers get 10 ticks to connect and sync, and are dropped after 5 ticks behind.
    'initLimit=10',
    'syncLimit=5',
    // Clients get the session timeout they ask for; the default cap of 20 ticks would be 4 s.
    'maxSessionTimeout=60000',
    `dataDir=${member.dataDir}`,
    `clientPort=${member.port}`,
    `clientPortAddress=${LOOPBACK}`,
    '4lw.commands.whitelist=*',
    'admin.enableServer=false',
    // Test data need not survive a power cut; fsync per write only makes every test slower.
    'forceSync=no',
    'preAllocSize=1024',
    ...ensemble.map((peer) => `server.${peer.myid}=${LOOPBACK}:${peer.quorumPort}:${peer.electionPort}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** `envi` answers before a quorum exists; its user.dir is the work dir we spawned the JVM in. */
async function probeZooKeeper(port: number, workDir: string): Promise<ProbeResult> {
  const environment = await fourLetterWord(port, 'envi', { timeoutMs: PROBE_TIMEOUT_MS });
  if (!environment.split('\n').includes(`user.dir=${workDir}`)) return 'impostor';
  return (await zooKeeperMode(port, PROBE_TIMEOUT_MS)) === undefined ? 'starting' : 'ready';
}

function validTickTime(options: ZooKeeperOptions): number {
  const tickTimeMs = options.tickTimeMs ?? DEFAULT_TICK_TIME_MS;
  if (!Number.isInteger(tickTimeMs) || tickTimeMs < 1) {
    throw new RangeError(`tickTimeMs must be a positive integer, got ${tickTimeMs}`);
  }
  return tickTimeMs;
}

/** Starts a standalone ZooKeeper on a free loopback port, in its own temporary directory. */
export async function startZooKeeper(options: ZooKeeperOptions = {}): Promise<ZooKeeperServer> {
  const tickTimeMs = validTickTime(options);
  zooKeeperRuntime();
  return retryOnPortConflict(async () => {
    const [port] = (await freePorts(1)) as [number];
    const server = new LocalZooKeeperServer(
      { myid: 1, port, quorumPort: 0, electionPort: 0, ...createWorkDir() },
      [],
      tickTimeMs,
    );
    await startAllOrDiscard([server]);
    return server;
  });
}

/** Starts a ZooKeeper ensemble on loopback and resolves once it has elected a leader. */
export async function startZooKeeperEnsemble(
  size = 3,
  options: ZooKeeperOptions = {},
): Promise<ZooKeeperEnsemble> {
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`size must be a positive integer, got ${size}`);
  const tickTimeMs = validTickTime(options);
  zooKeeperRuntime();
  const members = await retryOnPortConflict(async () => {
    const ports = await freePorts(size * 3);
    const plans: MemberPlan[] = Array.from({ length: size }, (_, i) => ({
      myid: i + 1,
      port: ports[i * 3] as number,
      quorumPort: ports[i * 3 + 1] as number,
      electionPort: ports[i * 3 + 2] as number,
      ...createWorkDir(),
    }));
    const servers = plans.map((plan) => new LocalZooKeeperServer(plan, plans, tickTimeMs));
    await startAllOrDiscard(servers);
    return servers;
  });
  const ensemble = new LocalZooKeeperEnsemble(members);
  await ensemble.leader();
  return ensemble;
}

class LocalZooKeeperEnsemble implements ZooKeeperEnsemble {
  readonly connectString: string;

  constructor(readonly members: LocalZooKeeperServer[]) {
    this.connectString = members.map((member) => member.connectString).join(',');
  }

  leader(): Promise<ZooKeeperServer> {
    return pollUntil(
      `a single ZooKeeper leader among ${this.connectString}`,
      async () => {
        const running = this.members.filter((member) => member.running);
        const modes = await Promise.all(running.map((member) => member.mode().catch(() => undefined)));
        const leaders = running.filter((_, i) => modes[i] === 'leader');
        return leaders.length === 1 ? leaders[0] : undefined;
      },
      { timeoutMs: LEADER_TIMEOUT_MS, intervalMs: PROBE_INTERVAL_MS },
    );
  }

  async followers(): Promise<ZooKeeperServer[]> {
    const leader = await this.leader();
    return this.members.filter((member) => member !== leader && member.running);
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.members.map((member) => member.discard()));
  }
}
