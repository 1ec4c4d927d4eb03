// The Go leader elector over Redis, with its callbacks: OnStartedLeading(ctx), OnStoppedLeading(),
// OnNewLeader(identity), ReleaseOnCancel, Identity, Key. Three instances campaign; the leader works
// until its context (here: its run signal) is cancelled, releases on cancel, and another takes over
// at once instead of after the lease expires.
import { LeaderElector } from '@dlock/core';
import { instanceProviders } from './backends.mjs';

export interface GoStyleElectorResult {
  /** Leaders in the order they were elected. */
  readonly leaders: readonly string[];
  /** Every callback, per instance, in order. */
  readonly events: Readonly<Record<string, readonly string[]>>;
  /** ms from cancelling the first leader to the second one starting. */
  readonly handoverMs: number;
}

export async function main(log: (line: string) => void = console.log): Promise<GoStyleElectorResult> {
  const providers = await instanceProviders(3);
  const leaders: string[] = [];
  const events: Record<string, string[]> = {};
  let handoverStartedAt = 0;
  let handoverMs = 0;

  const instances = providers.map((provider, i) => {
    const identity = `worker-${i + 1}`;
    events[identity] = [];
    const record = (event: string) => {
      events[identity]?.push(event);
      log(`${identity}: ${event}`);
    };
    const cancel = new AbortController();
    const elector = new LeaderElector(provider, {
      key: 'reconciler',
      identity,
      leaseDurationMs: 900,
      renewDeadlineMs: 600,
      retryPeriodMs: 200,
      releaseOnCancel: true,
      onStartedLeading: async (signal, term) => {
        leaders.push(identity);
        if (handoverStartedAt) handoverMs = performance.now() - handoverStartedAt;
        record(`OnStartedLeading (fencing token ${term.token})`);
        // The leader's work loop: it ends when the context is cancelled or leadership is lost.
        while (!signal.aborted) await new Promise((resolve) => setTimeout(resolve, 50));
      },
      onStoppedLeading: () => record('OnStoppedLeading'),
      onNewLeader: (leader) => record(`OnNewLeader(${leader})`),
    });
    return { identity, elector, cancel, running: elector.run(cancel.signal) };
  });

  const leaderNow = async () => {
    for (;;) {
      const found = instances.find((instance) => instance.elector.isLeader());
      if (found) return found;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  const first = await leaderNow();
  await new Promise((resolve) => setTimeout(resolve, 500));
  handoverStartedAt = performance.now();
  first.cancel.abort(); // ctx cancel → OnStoppedLeading, release (ReleaseOnCancel)
  await first.running;
  await leaderNow();
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const instance of instances) instance.cancel.abort();
  await Promise.all(instances.map((instance) => instance.running));
  await Promise.all(providers.map((provider) => provider.close()));
  return { leaders, events, handoverMs };
}
