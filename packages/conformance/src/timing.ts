/** Timestamps of one hold, on this process's monotonic clock. */
export interface HoldInterval {
  readonly holder: string;
  readonly start: number;
  readonly end: number;
}

/** Pairs of holds that overlap in time: each one is a mutual-exclusion violation. */
export function overlappingHolds(holds: readonly HoldInterval[]): Array<[HoldInterval, HoldInterval]> {
  const sorted = [...holds].sort((a, b) => a.start - b.start);
  const overlaps: Array<[HoldInterval, HoldInterval]> = [];
  let latest: HoldInterval | undefined;
  for (const hold of sorted) {
    if (latest && hold.start < latest.end) overlaps.push([latest, hold]);
    if (!latest || hold.end > latest.end) latest = hold;
  }
  return overlaps;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true or `timeoutMs` passes; returns whether it became true. */
export async function eventually(probe: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 10) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (performance.now() >= deadline) return false;
    await sleep(everyMs);
  }
}

/**
 * The bound on a push hand-off (release → the waiter holds), median of three. A waiter that missed
 * the push is served by its 1 s fallback re-check, ~850 ms after a release 150 ms into its wait; a
 * bound well below that tells the two apart and still leaves a busy machine's late timers room.
 */
export const PUSH_HANDOFF_BOUND_MS = 600;
