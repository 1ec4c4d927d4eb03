import { randomBytes } from 'node:crypto';
import { etcdBinary } from './binaries.js';
import { createWorkDir } from './cleanup.js';
import { requestJson } from './http.js';
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

export interface EtcdServer extends ServerHandle {
  /** The client URL, `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
}

export interface EtcdCluster {
  readonly endpoints: string[];
  readonly members: EtcdServer[];
  /** Waits until a running member is leader by its own account and by a majority of the members that answer. */
  leader(): Promise<EtcdServer>;
  /** The running members other than the leader. */
  followers(): Promise<EtcdServer[]>;
  /** Kills every member and removes their directories. */
  stop(): Promise<void>;
}

// Generous: a JVM or etcd member (re)joining an ensemble on a busy 2-core CI machine can take tens of
// seconds; a healthy one is seen within one probe interval, so the bound costs nothing when all is well.
const START_TIMEOUT_MS = 60_000;
const LEADER_TIMEOUT_MS = 60_000;
const PROBE_INTERVAL_MS = 100;
const REQUEST_TIMEOUT_MS = 1_000;

/**
 * Heartbeat 50 ms / election 500 ms: a killed leader is replaced within about a second, and the minimum
 * lease TTL etcd enforces (1.5 election timeouts) stays below 1 s, so 1 s leases work as asked.
 * etcd 3.4 has no flag to skip fsync (--unsafe-no-fsync arrived in 3.5).
 */
const TIMING_FLAGS = ['--heartbeat-interval', '50', '--election-timeout', '500'];

interface MemberPlan extends ServerLocation {
  readonly name: string;
  readonly peerPort: number;
}

interface MaintenanceStatus {
  header?: { member_id?: string };
  leader?: string;
}

interface MemberList {
  members?: { ID?: string; name?: string }[];
}

const peerUrl = (member: MemberPlan) => `http://${LOOPBACK}:${member.peerPort}`;

class LocalEtcdServer extends LocalServer implements EtcdServer {
  readonly endpoint: string;

  constructor(member: MemberPlan, cluster: readonly MemberPlan[], clusterToken: string) {
    const endpoint = `http://${LOOPBACK}:${member.port}`;
    super(member, {
      kind: 'etcd',
      command: etcdBinary(),
      args: [
        '--name',
        member.name,
        '--data-dir',
        member.dataDir,
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        '--listen-peer-urls',
        peerUrl(member),
        '--initial-advertise-peer-urls',
        peerUrl(member),
        '--initial-cluster',
        cluster.map((peer) => `${peer.name}=${peerUrl(peer)}`).join(','),
        '--initial-cluster-state',
        'new',
        // A unique token keeps members of different clusters from ever joining each other.
        '--initial-cluster-token',
        clusterToken,
        ...TIMING_FLAGS,
        '--logger',
        'zap',
        '--log-outputs',
        'stderr',
      ],
      startTimeoutMs: START_TIMEOUT_MS,
      probeIntervalMs: PROBE_INTERVAL_MS,
      probe: () => probeEtcd(endpoint, member.name),
    });
    this.endpoint = endpoint;
  }

  /** This member's status, or undefined when it does not answer in time. */
  async status(): Promise<{ memberId: string; leaderId: string } | undefined> {
    const { json } = await requestJson(
      'POST',
      `${this.endpoint}/v3/maintenance/status`,
      {},
      REQUEST_TIMEOUT_MS,
    ).catch(() => ({ json: undefined }));
    const status = json as MaintenanceStatus | undefined;
    const memberId = status?.header?.member_id;
    const leaderId = status?.leader;
    return memberId === undefined || leaderId === undefined || leaderId === '0'
      ? undefined
      : { memberId, leaderId };
  }
}

/** Healthy means the member sees a leader; the member list then tells whether it is the etcd we spawned. */
async function probeEtcd(endpoint: string, name: string): Promise<ProbeResult> {
  const health = await requestJson('GET', `${endpoint}/health`, undefined, REQUEST_TIMEOUT_MS);
  if ((health.json as { health?: string } | undefined)?.health !== 'true') return 'starting';
  const [status, list] = await Promise.all([
    requestJson('POST', `${endpoint}/v3/maintenance/status`, {}, REQUEST_TIMEOUT_MS),
    requestJson('POST', `${endpoint}/v3/cluster/member/list`, {}, REQUEST_TIMEOUT_MS),
  ]);
  const memberId = (status.json as MaintenanceStatus | undefined)?.header?.member_id;
  const self = (list.json as MemberList | undefined)?.members?.find((member) => member.ID === memberId);
  if (self === undefined || self.name === '') return 'starting';
  return self.name === name ? 'ready' : 'impostor';
}

async function startCluster(size: number): Promise<LocalEtcdServer[]> {
  etcdBinary();
  return retryOnPortConflict(async () => {
    const ports = await freePorts(size * 2);
    const clusterToken = `dlock-testkit-${randomBytes(6).toString('hex')}`;
    const plans: MemberPlan[] = Array.from({ length: size }, (_, i) => ({
      name: `member-${i + 1}`,
      port: ports[i * 2] as number,
      peerPort: ports[i * 2 + 1] as number,
      ...createWorkDir(),
    }));
    const servers = plans.map((plan) => new LocalEtcdServer(plan, plans, clusterToken));
    await startAllOrDiscard(servers);
    return servers;
  });
}

/** Starts a single-member etcd on free loopback ports, in its own temporary directory. */
export async function startEtcd(): Promise<EtcdServer> {
  const [server] = (await startCluster(1)) as [LocalEtcdServer];
  return server;
}

/** Starts an etcd cluster on loopback and resolves once it has a leader. */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`size must be a positive integer, got ${size}`);
  const cluster = new LocalEtcdCluster(await startCluster(size));
  await cluster.leader();
  return cluster;
}

class LocalEtcdCluster implements EtcdCluster {
  readonly endpoints: string[];

  constructor(readonly members: LocalEtcdServer[]) {
    this.endpoints = members.map((member) => member.endpoint);
  }

  leader(): Promise<EtcdServer> {
    return pollUntil(
      `an etcd leader among ${this.endpoints.join(',')}`,
      async () => {
        const running = this.members.filter((member) => member.running);
        const statuses = await Promise.all(running.map((member) => member.status()));
        const majority = Math.floor(this.members.length / 2) + 1;
        return running.find((_, i) => {
          const status = statuses[i];
          if (status === undefined || status.leaderId !== status.memberId) return false;
          return statuses.filter((other) => other?.leaderId === status.memberId).length >= majority;
        });
      },
      { timeoutMs: LEADER_TIMEOUT_MS, intervalMs: PROBE_INTERVAL_MS },
    );
  }

  async followers(): Promise<EtcdServer[]> {
    const leader = await this.leader();
    return this.members.filter((member) => member !== leader && member.running);
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.members.map((member) => member.discard()));
  }
}
