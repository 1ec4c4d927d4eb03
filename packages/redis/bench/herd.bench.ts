// Where the time of a contended hand-off goes: CONTENDERS contenders (each its own provider) loop
// acquire → release on one key, then the server's own command counts (INFO commandstats, reset after
// a warm-up) and this process's CPU time are divided by the acquisitions. Bounded: about 10 s.
// Run: pnpm --filter @dlock/redis bench:herd
import os from 'node:os';
import { startRedis, stopAll } from '@dlock/testkit';
import { Redis } from 'ioredis';
import { createRedisProvider } from '../src/index.js';

const CONTENDERS = 32;
const RUN_MS = 3_000;
const LOCK_TTL_MS = 10_000;

async function main(): Promise<void> {
  const server = await startRedis();
  const admin = new Redis(server.url);
  const providers = Array.from({ length: CONTENDERS }, () => createRedisProvider({ url: server.url }));
  try {
    // Warm-up: scripts loaded, connections up.
    for (const provider of providers)
      await (await provider.acquire('herd:warm', { ttlMs: LOCK_TTL_MS })).release();
    await admin.config('RESETSTAT');
    let acquisitions = 0;
    const deadline = performance.now() + RUN_MS;
    const cpuBefore = process.cpuUsage();
    await Promise.all(
      providers.map(async (provider) => {
        while (performance.now() < deadline) {
          const lease = await provider.acquire('herd:key', { ttlMs: LOCK_TTL_MS, waitMs: 30_000 });
          acquisitions++;
          await lease.release();
        }
      }),
    );
    const cpu = process.cpuUsage(cpuBefore);
    const stats = (await admin.info('commandstats')) as string;
    const lines = [
      `${CONTENDERS} contenders on one key for ${RUN_MS / 1_000} s; load average ${os
        .loadavg()
        .map((load) => load.toFixed(1))
        .join(' ')}`,
      `acquisitions: ${acquisitions} (${Math.round(acquisitions / (RUN_MS / 1_000))}/s); client CPU ${Math.round(
        (cpu.user + cpu.system) / acquisitions,
      )} µs per acquisition`,
      'server commands per acquisition (calls, server µs):',
    ];
    for (const [, name, calls, usec] of stats.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)) {
      if (name === 'info' || name === 'config') continue;
      lines.push(
        `  ${name!.padEnd(12)}${(Number(calls) / acquisitions).toFixed(1).padStart(6)}  ${(Number(usec) / acquisitions).toFixed(0).padStart(6)} µs`,
      );
    }
    console.log(lines.join('\n'));
  } finally {
    admin.disconnect();
    await Promise.all(providers.map((provider) => provider.close()));
    await server.stop();
    await stopAll();
  }
}

await main();
