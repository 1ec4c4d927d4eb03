import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findJar } from '../src/binaries.js';
import {
  MissingBinaryError,
  curatorUnavailableReason,
  hasBinaries,
  hasCurator,
  requireBinaries,
  startCuratorPeer,
  startEtcd,
  startRedis,
  startZooKeeper,
  stopAll,
} from '../src/index.js';

afterAll(stopAll);

/** Runs `body` with a PATH that holds no executables at all. */
async function withEmptyPath(body: () => Promise<void>): Promise<void> {
  const emptyDir = mkdtempSync(join(tmpdir(), 'dlock-testkit-test-empty-path-'));
  const originalPath = process.env.PATH;
  process.env.PATH = emptyDir;
  try {
    await body();
  } finally {
    process.env.PATH = originalPath;
    rmSync(emptyDir, { recursive: true, force: true });
  }
}

describe('binaries', () => {
  it('finds every installed server', () => {
    expect(hasBinaries('redis')).toBe(true);
    expect(hasBinaries('zookeeper')).toBe(true);
    expect(hasBinaries('etcd')).toBe(true);
    expect(() => requireBinaries(['redis', 'zookeeper', 'etcd'])).not.toThrow();
  });

  it('names the Debian package to install when a binary is missing from PATH', async () => {
    await withEmptyPath(async () => {
      expect(hasBinaries('redis')).toBe(false);
      expect(() => requireBinaries(['redis'])).toThrow(MissingBinaryError);
      const cases = [
        { start: () => startRedis(), binary: 'redis-server', debianPackage: 'redis-server' },
        { start: () => startZooKeeper(), binary: 'java', debianPackage: 'zookeeper' },
        { start: () => startEtcd(), binary: 'etcd', debianPackage: 'etcd-server' },
      ];
      for (const { start, binary, debianPackage } of cases) {
        const error = await start().catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(MissingBinaryError);
        expect(error).toMatchObject({ binary, debianPackage });
        expect((error as Error).message).toContain(`apt-get install ${debianPackage}`);
      }
    });
  });

  it('names the JDK package when java and javac are missing for the Curator peer', async () => {
    await withEmptyPath(async () => {
      expect(hasCurator()).toBe(false);
      expect(curatorUnavailableReason()).toMatch(/needs java \(not on PATH\), javac \(not on PATH\)/);
      const error = await startCuratorPeer({ connectString: '127.0.0.1:1' }).catch(
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(MissingBinaryError);
      expect(error).toMatchObject({
        binary: 'java',
        debianPackage: expect.stringMatching(/^default-jdk-headless\b/),
      });
      expect((error as Error).message).toContain('apt-get install default-jdk-headless');
    });
  });

  it('finds a jar by its unversioned name, else its newest version, never a longer name', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dlock-testkit-test-jars-'));
    try {
      for (const jar of [
        'zookeeper-jute-3.8.0.jar',
        'zookeeper-3.8.0.jar',
        'zookeeper-3.10.1.jar',
        'curator-client.jar',
      ]) {
        writeFileSync(join(dir, jar), '');
      }
      expect(findJar('zookeeper', dir)).toBe(join(dir, 'zookeeper-3.10.1.jar'));
      expect(findJar('curator-client', dir)).toBe(join(dir, 'curator-client.jar'));
      expect(findJar('curator-recipes', dir)).toBeUndefined();
      expect(findJar('zookeeper', join(dir, 'absent'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
