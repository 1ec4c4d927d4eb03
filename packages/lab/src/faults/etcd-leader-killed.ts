import { leaderKilled } from './leader-killed.js';

export const etcdLeaderKilled = leaderKilled('etcd', 'etcd');
