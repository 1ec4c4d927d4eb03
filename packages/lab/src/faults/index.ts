import { clockSkew } from './clock-skew.js';
import { etcdLeaderKilled } from './etcd-leader-killed.js';
import { holderCrash } from './holder-crash.js';
import { holderPause } from './holder-pause.js';
import { permitHolderPause } from './permit-holder-pause.js';
import { redisFailover } from './redis-failover.js';
import { redlockMajorityDown } from './redlock-majority-down.js';
import { redlockMinorityDown } from './redlock-minority-down.js';
import { restartWithoutPersistence } from './restart-without-persistence.js';
import type { FaultScenario } from './scenario.js';
import { writerPause } from './writer-pause.js';
import { zookeeperLeaderKilled } from './zookeeper-leader-killed.js';

/** Every fault scenario, in report order. Each decides by server kind which backends it applies to. */
export const faultScenarios: readonly FaultScenario[] = [
  holderCrash,
  holderPause,
  permitHolderPause,
  writerPause,
  clockSkew,
  restartWithoutPersistence,
  redlockMinorityDown,
  redlockMajorityDown,
  redisFailover,
  zookeeperLeaderKilled,
  etcdLeaderKilled,
];

export { type FaultScenario, runScenario, type ScenarioTiming } from './scenario.js';
