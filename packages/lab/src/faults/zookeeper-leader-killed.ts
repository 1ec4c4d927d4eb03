import { leaderKilled } from './leader-killed.js';

export const zookeeperLeaderKilled = leaderKilled('zookeeper', 'ZooKeeper');
