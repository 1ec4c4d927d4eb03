import { nextLine } from './contenders.js';
import {
  type FaultScenario,
  countLines,
  crossProcess,
  duration,
  expiryPhrase,
  holderMidWrite,
} from './scenario.js';

/** The holder's process dies mid-hold (SIGKILL): nothing is released, the lock must lapse on its own. */
export const holderCrash: FaultScenario = {
  id: 'holder-crash',
  title: 'Holder crash (SIGKILL)',
  appliesTo: crossProcess,
  claim: () => 'safe',

  async run(context) {
    const { holder, others } = await holderMidWrite(context, { writesPerHold: 100_000, workMs: 50 });
    for (const other of others) other.go();
    await context.sleep(100);
    context.step('SIGKILL the holder, waiting for a takeover');
    const takeover = nextLine(others, /^acquired /, context.timing.takeoverTimeoutMs, context.signal);
    const killedAt = performance.now();
    await holder.kill();
    await takeover;
    context.observe('takeoverMs', performance.now() - killedAt);
    context.step('contenders run on');
    await context.sleep(context.timing.windowMs);
    context.observe('holdsAfterCrash', countLines(others, /^acquired /));
  },

  explain({ backend, capabilities, verdict, metrics, observations, findings }) {
    const lapse = `The holder was SIGKILLed in the middle of its hold, releasing nothing; the lock stayed taken until ${expiryPhrase(capabilities)} ran out, and the next contender held it ${duration(observations.takeoverMs)} after the kill.`;
    if (verdict === 'held') {
      return `${lapse} The checker saw ${metrics.holds} holds and ${findings}: with ${backend.name}, a crash costs time (up to one ${capabilities.expiry === 'session' ? 'session timeout' : 'ttl'}), never safety.`;
    }
    return `${lapse} Yet the checker saw ${findings}, so ${backend.name} handed out the lock while it was still held — a violation of mutual exclusion it claims.`;
  },
};
