import { join } from 'node:path';
import {
  type EtcdServer,
  type FaultProxy,
  type NodeProcess,
  startEtcd,
  startFaultProxy,
  startNodeProcess,
} from '@dlock/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdLockProvider } from '../src/index.js';
import { RawEtcd, figure, openProvider, sleep, within } from './etcd.js';

/**
 * Observers must survive a reconnect after which one of their watches starts before the compacted
 * revision (issue 12 #1: etcd3's WatchManager then threw `ClientRuntimeError: Failed to find watcher
 * for IWatchResponse` from a gRPC data handler and the process died), and must report the current
 * leader about a second after etcd is reachable again, never a leader whose key is gone.
 */

const fixture = join(import.meta.dirname, 'fixtures', 'observer.mjs');
/** "Within 1 s" of etcd being reachable again, plus slack for a machine that shares its cores. */
const REPORT_BOUND_MS = 1_000 + 1_500;

let server: EtcdServer;
let raw: RawEtcd;
const children: NodeProcess[] = [];
const providers: EtcdLockProvider[] = [];
const proxies: FaultProxy[] = [];
let nameCounter = 0;
const freshName = (label: string) => `observe-${label}-${process.pid}-${nameCounter++}`;

beforeAll(async () => {
  server = await startEtcd();
  raw = new RawEtcd(server.endpoint);
});

afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => child.kill()));
  await Promise.allSettled(providers.splice(0).map((provider) => provider.close()));
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()));
  if (!server.running) await server.restart();
});

afterAll(async () => {
  raw?.close();
  await server?.stop();
});

function candidate(identity: string): EtcdLockProvider {
  const provider = openProvider(server.endpoint, { identity, sessionTtlSec: 10 });
  providers.push(provider);
  return provider;
}

function start(hosts: string, names: string[], mode: 'observe' | 'campaign'): NodeProcess {
  const child = startNodeProcess(fixture, [hosts, names.join(','), mode]);
  children.push(child);
  return child;
}

/** Resolves once `child` has printed a line matching `pattern` (in any order with its other lines). */
const printed = (child: NodeProcess, pattern: RegExp, timeoutMs = 10_000) =>
  within(`a line matching ${pattern}`, timeoutMs, async () =>
    child.output.some((line) => pattern.test(line)),
  );

/** Lines `leader <name> ...` printed from index `from` on. */
const leaderLines = (child: NodeProcess, name: string, from = 0) =>
  child.output.slice(from).filter((line) => line.startsWith(`leader ${name} `));

/**
 * Makes the watch of `stale` start before the compacted revision while the watch of `fresh` starts
 * after it: 20 unrelated writes, a compaction at the current revision, then a write and a delete
 * under `fresh`'s election prefix (which its observer sees as events, moving its watch past the
 * compaction).
 */
async function compactPast(fresh: string): Promise<void> {
  let revision = '0';
  for (let i = 0; i < 20; i++) {
    revision = (await raw.client.put(`observe-unrelated/${i}`).value(String(i)).exec()).header.revision;
  }
  await raw.client.kv.compact({ revision, physical: true });
  const marker = `dlock-election/${fresh}/zz-marker`;
  await raw.client.put(marker).value('marker');
  await raw.client.delete().key(marker);
}

async function expectAlive(child: NodeProcess, forMs: number): Promise<void> {
  const exited = await Promise.race([child.exited.then(() => true), sleep(forMs).then(() => false)]);
  expect(exited, `the observer process exited: ${child.output.slice(-5).join(' | ')}`).toBe(false);
}

describe('election observers across a reconnect after a compaction (issue 12 #1)', () => {
  it('a 3 s connection cut: the process survives, and the observers report the leader elected meanwhile within about a second', async () => {
    const [a, b] = [freshName('a'), freshName('b')];
    const first = await candidate('leader-a-1').election.acquire(a);
    const leaderB = await candidate('leader-b').election.acquire(b);
    const proxy = await startFaultProxy({ target: { host: server.host, port: server.port } });
    proxies.push(proxy);
    const child = start(proxy.url('http'), [a, b], 'observe');
    await printed(child, new RegExp(`^leader ${a} leader-a-1 `));
    await printed(child, new RegExp(`^leader ${b} leader-b `));

    await compactPast(b);
    await sleep(200);
    proxy.outage(3_000);
    // While the observers are cut off, the leader of `a` stops and another candidate takes over.
    const successor = candidate('leader-a-2').election.acquire(a, { waitMs: 10_000 });
    await sleep(500);
    await first.release();
    const second = await successor;
    await proxy.whenListening();
    const seenFrom = child.output.length;
    const reportMs = await within('the observer reports leader-a-2', REPORT_BOUND_MS, async () =>
      leaderLines(child, a, seenFrom).some((line) => line.includes(' leader-a-2 ')),
    );
    figure('reachable again → observer reports the leader elected during a 3 s cut', reportMs);
    await expectAlive(child, 3_000);
    // Never the stopped leader once etcd was reachable again; `b` kept its leader throughout.
    expect(leaderLines(child, a, seenFrom).filter((line) => line.includes(' leader-a-1 '))).toEqual([]);
    expect(leaderLines(child, b).every((line) => line.includes(' leader-b '))).toBe(true);
    await second.release();
    await leaderB.release();
  });

  it('an etcd restart: the process survives, and a leader change after it is reported within about a second', async () => {
    const [a, b] = [freshName('a'), freshName('b')];
    const first = await candidate('leader-a-1').election.acquire(a);
    const leaderB = await candidate('leader-b').election.acquire(b);
    const child = start(server.endpoint, [a, b], 'observe');
    await printed(child, new RegExp(`^leader ${a} leader-a-1 `));
    await printed(child, new RegExp(`^leader ${b} leader-b `));

    await compactPast(b);
    await sleep(200);
    await server.restart();
    await expectAlive(child, 2_500);
    const seenFrom = child.output.length;
    const waiting = candidate('leader-a-2').election.acquire(a, { waitMs: 10_000 });
    await sleep(300);
    const releasedAt = performance.now();
    await first.release();
    const next = await waiting;
    await within('the observer reports leader-a-2', REPORT_BOUND_MS, async () =>
      leaderLines(child, a, seenFrom).some((line) => line.includes(' leader-a-2 ')),
    );
    figure('leader changed after an etcd restart → observer reports it', performance.now() - releasedAt);
    await expectAlive(child, 1_000);
    await next.release();
    await leaderB.release();
  });

  it('a single campaigning elector survives an etcd outage after a compaction and leads again (3 runs)', async () => {
    for (let run = 0; run < 3; run++) {
      const name = freshName('single');
      const child = start(server.endpoint, [name], 'campaign');
      await printed(child, new RegExp(`^leading ${name}$`));
      await compactPast(name);
      await sleep(200);
      // Down for longer than the renew deadline (2 s of the 3 s lease): the term ends, and the elector
      // campaigns again (watching its own old key) while its observer's watch is the compacted one.
      await server.kill();
      await sleep(2_500);
      await server.restart();
      await expectAlive(child, 3_000);
      // Leading again: its last term started after the outage, and etcd names it leader.
      await within('the elector leads after the outage', REPORT_BOUND_MS + 3_000, async () => {
        const terms = child.output.filter((line) => /^(leading|stopped) /.test(line));
        if (!terms.at(-1)?.startsWith('leading ')) return false;
        const entries = await raw.client.getAll().prefix(`dlock-election/${name}/`).strings();
        return Object.values(entries).includes(`candidate-${name}`);
      });
      child.send('exit');
      expect(await child.exited).toBe(0);
    }
  }, 120_000);
});
