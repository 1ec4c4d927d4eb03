import { type FaultScenario, countLines, crossProcess } from './scenario.js';

/** Multi-node Redis (RedLock): a minority of nodes goes down while contenders keep working. */
export const redlockMinorityDown: FaultScenario = {
  id: 'redlock-minority-down',
  title: 'RedLock: a minority of nodes down',
  appliesTo: (backend) => crossProcess(backend) && backend.placement === 'redis' && backend.serverCount >= 3,
  claim: () => 'safe',

  async run(context) {
    const count = context.backend.serverCount;
    const down = Math.floor((count - 1) / 2);
    const set = await context.startServers('redis', count);
    const contenders = await context.spawnAndGo(3, set.endpoints);
    context.step('contenders run on all nodes');
    await context.sleep(context.timing.windowMs / 2);
    const before = countLines(contenders, /^acquired /);
    context.step(`killing ${down} of ${count} nodes`);
    for (const node of set.members.slice(0, down)) await node.kill();
    await context.sleep(context.timing.windowMs);
    context.observe('nodesDown', down);
    context.observe('nodes', count);
    context.observe('holdsAfterFault', countLines(contenders, /^acquired /) - before);
  },

  explain({ verdict, metrics, observations, findings }) {
    const setup = `${observations.nodesDown} of ${observations.nodes} nodes were killed while three contenders worked; a majority stayed reachable.`;
    const progress =
      (observations.holdsAfterFault ?? 0) > 0
        ? `Locking went on (${observations.holdsAfterFault} holds after the fault)`
        : 'No one acquired after the fault (liveness lost, though a majority was up)';
    return verdict === 'held'
      ? `${setup} ${progress} and the checker saw ${findings}: a minority failure costs RedLock nothing.`
      : `${setup} ${progress}, and the checker saw ${findings} — a violation of the mutual exclusion RedLock promises with a majority up.`;
  },
};
