/**
 * User callbacks (elector callbacks, scheduled jobs) run inside background loops. Nothing they throw
 * may escape as an unhandled rejection, so every call goes through `invokeCallback`, which hands a
 * throw or a rejection to the recipe's `onError` reporter and never rejects itself.
 */
export type ErrorReporter = (error: unknown) => void;

/** What a recipe does with an error when the caller gave no `onError`: write it to stderr. */
export function logError(recipe: string, source: string): ErrorReporter {
  return (error) => console.error(`[dlock] ${recipe}: ${source} failed:`, error);
}

/** Runs `report`, swallowing anything it throws itself: a broken reporter must not break the loop. */
export function safeReport(report: ErrorReporter, error: unknown): void {
  try {
    report(error);
  } catch {
    // The reporter is the last place an error can go.
  }
}

/**
 * Calls `fn` and resolves once it (and the promise it returns, if any) has settled. Resolves `true`
 * when it succeeded, `false` when it threw or rejected — that error went to `report`.
 */
export async function invokeCallback(report: ErrorReporter, fn: () => unknown): Promise<boolean> {
  try {
    await fn();
    return true;
  } catch (error) {
    safeReport(report, error);
    return false;
  }
}
