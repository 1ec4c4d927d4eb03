import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  MissingBinaryError,
  hasBinaries,
  requireBinaries,
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
});
