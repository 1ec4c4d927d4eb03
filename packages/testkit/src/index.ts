export {
  curatorUnavailableReason,
  hasBinaries,
  hasCurator,
  requireBinaries,
  type ServerKind,
} from './binaries.js';
export { stopAll } from './cleanup.js';
export {
  type CuratorLock,
  type CuratorPeer,
  type CuratorPeerOptions,
  type CuratorReadWriteLock,
  type CuratorSemaphore,
  compileCuratorPeer,
  startCuratorPeer,
} from './curator.js';
export {
  type EtcdCluster,
  type EtcdServer,
  startEtcd,
  startEtcdCluster,
} from './etcd.js';
export {
  CuratorPeerError,
  CuratorPeerExitedError,
  FaultCancelledError,
  FaultProxyClosedError,
  InvalidArgumentError,
  MissingBinaryError,
  ProxyRebindError,
  ServerStartError,
} from './errors.js';
export {
  type DropNextReplyOptions,
  type FaultDirection,
  type FaultProxy,
  type FaultProxyOptions,
  type FaultProxyTarget,
  startFaultProxy,
} from './fault-proxy.js';
export { type NodeProcess, type NodeProcessOptions, startNodeProcess } from './node-process.js';
export { freePort } from './ports.js';
export type { ManagedProcess } from './process.js';
export {
  type RedisNodes,
  type RedisOptions,
  type RedisServer,
  startRedis,
  startRedisNodes,
} from './redis.js';
export type { ServerHandle } from './server.js';
export {
  type ZooKeeperEnsemble,
  type ZooKeeperOptions,
  type ZooKeeperServer,
  startZooKeeper,
  startZooKeeperEnsemble,
} from './zookeeper.js';
