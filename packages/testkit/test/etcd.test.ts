import { afterAll, describe, expect, it } from 'vitest';
import { requestJson } from '../src/http.js';
import { startEtcd, startEtcdCluster, stopAll } from '../src/index.js';
import { refusesConnections } from './probes.js';

afterAll(stopAll);

async function health(endpoint: string): Promise<unknown> {
  return (await requestJson('GET', `${endpoint}/health`, undefined, 2_000)).json;
}

describe('startEtcd', () => {
  it('reports healthy on its loopback client URL', async () => {
    const server = await startEtcd();
    expect(server.endpoint).toBe(`http://127.0.0.1:${server.port}`);
    expect(await health(server.endpoint)).toEqual({ health: 'true' });

    await server.kill();
    expect(await refusesConnections(server.port)).toBe(true);
  });
});

describe('startEtcdCluster', () => {
  it('elects a new leader among the survivors when the leader is killed, and takes the old one back', async () => {
    const cluster = await startEtcdCluster(3);
    expect(cluster.endpoints).toHaveLength(3);
    const leader = await cluster.leader();
    expect(await cluster.followers()).toHaveLength(2);

    await leader.kill();
    const successor = await cluster.leader();
    expect(successor).not.toBe(leader);
    expect(cluster.members).toContain(successor);

    await leader.restart();
    expect(await health(leader.endpoint)).toEqual({ health: 'true' });
    expect(await cluster.followers()).toHaveLength(2);

    await cluster.stop();
    for (const member of cluster.members) expect(member.running).toBe(false);
  });
});
