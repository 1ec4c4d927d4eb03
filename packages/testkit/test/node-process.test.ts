import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startNodeProcess, stopAll } from '../src/index.js';
import { isGone } from './probes.js';

const echoScript = fileURLToPath(new URL('./fixtures/echo.mjs', import.meta.url));

afterAll(stopAll);

describe('startNodeProcess', () => {
  it('passes args and env, and waits for lines it prints in answer to stdin', async () => {
    const contender = startNodeProcess(echoScript, ['--id', '7'], { env: { ECHO_GREETING: 'hello' } });
    expect(await contender.waitForLine(/^ready/)).toBe(`ready ${contender.pid} --id 7 hello`);
    contender.send('acquired 1');
    contender.send('acquired 2');
    expect(await contender.waitForLine(/^echo: acquired/)).toBe('echo: acquired 1');
    expect(await contender.waitForLine(/^echo: acquired/)).toBe('echo: acquired 2');
    expect(contender.output).toEqual([
      `ready ${contender.pid} --id 7 hello`,
      'echo: acquired 1',
      'echo: acquired 2',
    ]);

    contender.send('exit 3');
    expect(await contender.exited).toBe(3);
    expect(contender.running).toBe(false);
  });

  it('dies on kill, and waitForLine then rejects instead of hanging', async () => {
    const contender = startNodeProcess(echoScript);
    await contender.waitForLine(/^ready/);
    const pending = contender.waitForLine(/never printed/);
    const pid = contender.pid!;
    await contender.kill();
    expect(isGone(pid)).toBe(true);
    expect(await contender.exited).toBeNull();
    await expect(pending).rejects.toThrow(/exited before printing a line matching/);
    contender.send('ignored: the pipe is closed');
  });

  it('rejects waitForLine after the timeout', async () => {
    const contender = startNodeProcess(echoScript);
    await expect(contender.waitForLine(/never printed/, 200)).rejects.toThrow(/within 200 ms/);
    expect(contender.running).toBe(true);
    await contender.stop();
    expect(contender.running).toBe(false);
  });

  it('can be paused and resumed', async () => {
    const contender = startNodeProcess(echoScript);
    await contender.waitForLine(/^ready/);
    contender.pause();
    contender.send('while paused');
    await expect(contender.waitForLine(/while paused/, 200)).rejects.toThrow(/within 200 ms/);
    contender.resume();
    expect(await contender.waitForLine(/while paused/)).toBe('echo: while paused');
    await contender.kill();
  });
});
