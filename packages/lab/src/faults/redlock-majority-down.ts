import { type FaultScenario, countLines, crossProcess } from './scenario.js';

/** Multi-node Redis (RedLock): a majority of nodes goes down, then comes back empty. */
export const redlockMajorityDown: FaultScenario = {
  id: 'redlock-majority-down',
  title: 'RedLock: a majority of nodes down',
  appliesTo: (backend) => crossProcess(backend) && backend.placement === 'redis' && backend.serverCount >= 3,
  claim: () => 'safe',

  async run(context) {
    const count = context.backend.serverCount;
    const down = Math.floor(count / 2) + 1;
    const set = await context.startServers('redis', count);
    const contenders = await context.spawnAndGo(3, set.endpoints);
    context.step('contenders run on all nodes');
    await context.sleep(context.timing.windowMs / 2);
    const failing = set.members.slice(0, down);
    context.step(`killing ${down} of ${count} nodes`);
    for (const node of failing) await node.kill();
    // A hold granted just before the kill may still finish; count only what is granted after it settles.
    await context.sleep(context.timing.ttlMs);
    const settled = countLines(contenders, /^acquired /);
    await context.sleep(context.timing.windowMs);
    const whileDown = countLines(contenders, /^acquired /) - settled;
    context.step(`restarting the ${down} nodes`);
    for (const node of failing) await node.restart();
    await context.sleep(context.timing.windowMs);
    context.observe('nodesDown', down);
    context.observe('nodes', count);
    context.observe('holdsWhileDown', whileDown);
    context.observe('holdsAfterRestart', countLines(contenders, /^acquired /) - settled - whileDown);
  },

  explain({ verdict, metrics, observations, findings }) {
    const setup = `${observations.nodesDown} of ${observations.nodes} nodes were killed, so no majority could be reached: ${observations.holdsWhileDown} locks were granted while they were down — RedLock gives up liveness, not safety.`;
    const after = `After the nodes restarted, locking resumed (${observations.holdsAfterRestart} holds)`;
    return verdict === 'held'
      ? `${setup} ${after} and the checker saw ${findings}.`
      : `${setup} ${after}, but the checker saw ${findings}: mutual exclusion broke although no majority ever agreed twice.`;
  },
};
