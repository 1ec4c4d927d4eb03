import { afterAll, describe, expect, it } from 'vitest';
import { fourLetterWord } from '../src/four-letter-words.js';
import { startZooKeeper, startZooKeeperEnsemble, stopAll } from '../src/index.js';
import { refusesConnections } from './probes.js';

afterAll(stopAll);

describe('startZooKeeper', () => {
  it('answers ruok and srvr as a standalone server with a 200 ms tick', async () => {
    const server = await startZooKeeper();
    expect(server.connectString).toBe(`127.0.0.1:${server.port}`);
    expect(await fourLetterWord(server.port, 'ruok')).toBe('imok');
    expect(await fourLetterWord(server.port, 'srvr')).toMatch(/^Mode: standalone$/m);
    expect(await fourLetterWord(server.port, 'conf')).toMatch(/^tickTime=200$/m);

    await server.kill();
    expect(await refusesConnections(server.port)).toBe(true);
  });
});

describe('startZooKeeperEnsemble', () => {
  it('elects a new leader among the survivors when the leader is killed, and takes the old one back', async () => {
    const ensemble = await startZooKeeperEnsemble(3);
    expect(ensemble.connectString.split(',')).toHaveLength(3);
    const leader = await ensemble.leader();
    expect(await ensemble.followers()).toHaveLength(2);

    await leader.kill();
    const successor = await ensemble.leader();
    expect(successor).not.toBe(leader);
    expect(ensemble.members).toContain(successor);
    expect(await fourLetterWord(successor.port, 'srvr')).toMatch(/^Mode: leader$/m);

    await leader.restart();
    expect(await fourLetterWord(leader.port, 'srvr')).toMatch(/^Mode: follower$/m);
    expect(await ensemble.followers()).toHaveLength(2);

    await ensemble.stop();
    for (const member of ensemble.members) expect(member.running).toBe(false);
  });
});
