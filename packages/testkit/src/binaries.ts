import { constants, accessSync, existsSync, readdirSync } from 'node:fs';
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

/** What the Curator peer needs: a JDK (it is compiled with javac at first use) and Curator's jars. */
export interface CuratorRuntime {
  readonly java: string;
  readonly javac: string;
  /** The jars to compile and run against, in classpath order. */
  readonly jars: readonly string[];
}

/**
 * The jars the peer names directly, each with the Debian package that installs it. Their manifests'
 * Class-Path brings the rest (guava, zookeeper-jute, netty, slf4j-api), as for the ZooKeeper server.
 */
const CURATOR_JARS = [
  { name: 'curator-recipes', debianPackage: 'libcurator-recipes-java' },
  { name: 'curator-framework', debianPackage: 'libcurator-framework-java' },
  { name: 'curator-client', debianPackage: 'libcurator-client-java' },
  { name: 'zookeeper', debianPackage: 'libzookeeper-java' },
  { name: 'jackson-databind', debianPackage: 'libjackson2-databind-java' },
] as const;
/** Logs Curator and the ZooKeeper client to stderr; without it slf4j discards them (after a warning). */
const CURATOR_LOG_BINDING = 'slf4j-simple';
const JDK_PACKAGE = 'default-jdk-headless';

/**
 * `<name>.jar` in /usr/share/java (Debian's unversioned link), else the highest `<name>-<version>.jar`
 * there. `zookeeper` does not match `zookeeper-jute-3.8.0.jar`: a version starts with a digit.
 */
export function findJar(name: string, dir = JAVA_DIR): string | undefined {
  const unversioned = join(dir, `${name}.jar`);
  if (existsSync(unversioned)) return unversioned;
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return undefined;
  }
  const prefix = `${name}-`;
  const versioned = files
    .filter(
      (file) => file.startsWith(prefix) && file.endsWith('.jar') && /^\d/.test(file.slice(prefix.length)),
    )
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const newest = versioned.at(-1);
  return newest === undefined ? undefined : join(dir, newest);
}

/**
 * Finds java, javac and Curator's jars, or throws one MissingBinaryError listing everything that is
 * missing and every Debian package that would supply it.
 */
export function curatorRuntime(): CuratorRuntime {
  const missing: Array<{ binary: string; where: string; debianPackage: string }> = [];
  const java = findOnPath('java');
  const javac = findOnPath('javac');
  if (java === undefined) missing.push({ binary: 'java', where: 'on PATH', debianPackage: JDK_PACKAGE });
  if (javac === undefined) missing.push({ binary: 'javac', where: 'on PATH', debianPackage: JDK_PACKAGE });
  const jars: string[] = [];
  for (const { name, debianPackage } of CURATOR_JARS) {
    const jar = findJar(name);
    if (jar === undefined) missing.push({ binary: `${name}.jar`, where: `in ${JAVA_DIR}`, debianPackage });
    else jars.push(jar);
  }
  if (java === undefined || javac === undefined || missing.length > 0) {
    const packages = [...new Set(missing.map((entry) => entry.debianPackage))].join(' ');
    const what = missing.map((entry) => `${entry.binary} (not ${entry.where})`).join(', ');
    throw new MissingBinaryError(missing[0]?.binary ?? 'java', packages, `the Curator peer needs ${what}`);
  }
  const binding = findJar(CURATOR_LOG_BINDING);
  return { java, javac, jars: binding === undefined ? jars : [...jars, binding] };
}

/** Why the Curator peer cannot start here (the MissingBinaryError message), or undefined when it can. */
export function curatorUnavailableReason(): string | undefined {
  try {
    curatorRuntime();
    return undefined;
  } catch (error) {
    if (error instanceof MissingBinaryError) return error.message;
    throw error;
  }
}

/** Whether java, javac and Curator's jars are installed, for `it.skipIf(!hasCurator())`. */
export function hasCurator(): boolean {
  return curatorUnavailableReason() === undefined;
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
