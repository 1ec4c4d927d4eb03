import type { ServerKind } from '../results.js';
import { type FaultScenario, countLines, crossProcess, duration } from './scenario.js';

const ENSEMBLE_SIZE = 3;
/** ZooKeeper allows at most 20 ticks (4 s at the lab's 200 ms tick). */
const LEADER_CHANGE_SESSION_MS = 4_000;

/**
 * A consensus-backed backend loses its leader: kill it while contenders work on a 3-member ensemble or
 * cluster, and check that locking stays exclusive through the election (sessions and leases survive a
 * leader change; only acknowledged, quorum-replicated writes count).
 */
export function leaderKilled(kind: Extract<ServerKind, 'zookeeper' | 'etcd'>, label: string): FaultScenario {
  const sessionWord =
    kind === 'zookeeper' ? 'sessions, and the ephemeral lock nodes tied to them,' : 'leases';
  return {
    id: `${kind}-leader-killed`,
    title: `${label}: leader killed (${ENSEMBLE_SIZE} members)`,
    appliesTo: (backend) => crossProcess(backend) && backend.placement === kind,
    claim: () => 'safe',

    async run(context) {
      const set = await context.startServers(kind, ENSEMBLE_SIZE);
      if (!set.leader) throw new Error(`the ${kind} set has no leader`);
      // Sessions long enough to outlive an election: the claim is that they survive it.
      const contenders = await context.spawnAndGo(3, set.endpoints, {
        sessionTimeoutMs: LEADER_CHANGE_SESSION_MS,
      });
      context.step('contenders run');
      await context.sleep(context.timing.windowMs / 2);
      const leader = await set.leader();
      const before = countLines(contenders, /^acquired /);
      context.step('killing the leader');
      const killedAt = performance.now();
      await leader.kill();
      await set.leader();
      context.observe('electionMs', performance.now() - killedAt);
      await context.sleep(Math.max(context.timing.windowMs, 3_000));
      context.observe('holdsAfterFault', countLines(contenders, /^acquired /) - before);
    },

    explain({ backend, verdict, metrics, observations, findings }) {
      const setup = `Killing the leader forced an election (a new leader after ${duration(observations.electionMs)}); clients reconnected to the surviving members, and their ${sessionWord} survived the change.`;
      return verdict === 'held'
        ? `${setup} Locking continued (${observations.holdsAfterFault} holds after the kill) with ${findings}: every lock write goes through the quorum, so none was lost with the leader.`
        : `${setup} But the checker saw ${findings}: ${backend.name} broke mutual exclusion across a leader change, which consensus should rule out.`;
    },
  };
}
