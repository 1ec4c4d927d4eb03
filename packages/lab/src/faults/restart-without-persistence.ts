import { nextLine } from './contenders.js';
import { type FaultScenario, crossProcess, describeForgottenLock, letOthersIn } from './scenario.js';

const majorityOf = (count: number) => Math.floor(count / 2) + 1;
/** The holder's pause between reading and writing; the restart and the second grant fit inside it. */
const HOLDER_WORK_MS = 600;

/**
 * A Redis node restarts without persistence and forgets the locks it held. With RedLock's N nodes:
 * N − majority nodes are down while the first holder locks a bare majority; they come back, and
 * 2·majority − N of the holder's nodes restart empty — leaving a majority of free nodes for a second
 * contender while the first still holds. With one Redis, the restart alone is enough.
 */
export const restartWithoutPersistence: FaultScenario = {
  id: 'restart-without-persistence',
  title: 'Redis node restarted without persistence',
  appliesTo: (backend) => crossProcess(backend) && backend.placement === 'redis',
  claim: () => 'unsafe',

  async run(context) {
    const count = context.backend.serverCount;
    const majority = majorityOf(count);
    const set = await context.startServers('redis', count);
    const holder = await context.spawn(set.endpoints, {
      ttlMs: 15_000,
      writesPerHold: 20,
      workMs: HOLDER_WORK_MS,
      maxHolds: 1,
    });
    const outside = set.members.slice(majority);
    const forgetful = set.members.slice(0, 2 * majority - count);
    context.observe('nodes', count);
    context.observe('restartedHolderNodes', forgetful.length);
    if (outside.length > 0)
      context.step(`${outside.length} of ${count} nodes down; holder locks a bare majority`);
    for (const node of outside) await node.kill();
    const acquired = nextLine([holder], /^acquired /, 15_000, context.signal);
    holder.go();
    await acquired;
    for (const node of outside) await node.restart();
    // Connected to every node now, as other instances of the service would be.
    const others = await Promise.all([context.spawn(set.endpoints), context.spawn(set.endpoints)]);
    // Restart while the holder is between reading and writing: a holder that checked its lease just
    // before the node forgot it writes once more, whatever its client learns meanwhile.
    await nextLine([holder], /^read /, 15_000, context.signal);
    context.step(`restarting ${forgetful.length} of the holder's nodes without persistence`);
    for (const node of forgetful) {
      await node.kill();
      await node.restart();
    }
    await letOthersIn(context, holder, others);
  },

  explain(outcome) {
    const { observations } = outcome;
    const nodes = observations.nodes ?? 1;
    const setup =
      nodes === 1
        ? 'The Redis server restarted without persistence while the lock was held, and came back empty: the lock was gone.'
        : `With ${nodes - majorityOf(nodes)} of ${nodes} nodes down, the holder locked a bare majority; the down nodes came back and ${observations.restartedHolderNodes} of the holder's nodes restarted empty (no persistence), leaving a majority of free nodes.`;
    const remedy =
      nodes === 1
        ? 'Run Redis with appendfsync always, or treat a restart as the end of every lock.'
        : 'The remedies: appendfsync always, or keep a restarted node out for one max ttl before it rejoins.';
    return `${setup} ${describeForgottenLock(outcome)} ${remedy}`;
  },
};
