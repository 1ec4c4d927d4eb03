import { constants, accessSync, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { MissingBinaryError } from './errors.js';

export type ServerKind = 'redis' | 'zookeeper' | 'etcd';

const JAVA_DIR = '/usr/share/java';
const ZOOKEEPER_JAR = join(JAVA_DIR, 'zookeeper.jar');

/** Finds an executable on the current PATH, read at call time so tests can change it. */
function findOnPath(binary: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, binary);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function requireExecutable(binary: string, debianPackage: string): string {
  const path = findOnPath(binary);
  if (path === undefined) throw new MissingBinaryError(binary, debianPackage);
  return path;
}

export function redisServerBinary(): string {
  return requireExecutable('redis-server', 'redis-server');
}

export function etcdBinary(): string {
  return requireExecutable('etcd', 'etcd-server');
}

export interface ZooKeeperRuntime {
  readonly java: string;
  readonly classpath: string;
}

/**
 * The Debian jar lists its dependencies (netty, jackson, slf4j-api, ...) in its manifest Class-Path, so
 * the classpath only needs the jar itself plus an slf4j binding: log4j 1.2 as the Debian package
 * configures it, else slf4j-simple, else none (ZooKeeper then runs silently).
 */
export function zooKeeperRuntime(): ZooKeeperRuntime {
  const java = requireExecutable('java', 'zookeeper');
  if (!existsSync(ZOOKEEPER_JAR)) {
    throw new MissingBinaryError('zookeeper.jar', 'zookeeper', `${ZOOKEEPER_JAR} does not exist`);
  }
  const bindings = [['slf4j-log4j12.jar', 'log4j-1.2.jar'], ['slf4j-simple.jar']]
    .map((jars) => jars.map((jar) => join(JAVA_DIR, jar)))
    .find((jars) => jars.every((jar) => existsSync(jar)));
  return { java, classpath: [ZOOKEEPER_JAR, ...(bindings ?? [])].join(delimiter) };
}

const binaryCheckByKind: Record<ServerKind, () => unknown> = {
  redis: redisServerBinary,
  zookeeper: zooKeeperRuntime,
  etcd: etcdBinary,
};

/** Throws MissingBinaryError for the first kind whose binary is not installed. */
export function requireBinaries(kinds: ServerKind[]): void {
  for (const kind of kinds) binaryCheckByKind[kind]();
}

export function hasBinaries(kind: ServerKind): boolean {
  try {
    binaryCheckByKind[kind]();
    return true;
  } catch (error) {
    if (error instanceof MissingBinaryError) return false;
    throw error;
  }
}
