import { readFileSync } from 'node:fs';

/**
 * The kernel's start time of a process (field 22 of /proc/<pid>/stat, in clock ticks since boot), or
 * undefined where /proc is unavailable. A pid plus its start time names one process even after the pid is
 * reused. Command lines can't serve: redis-server rewrites its own.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is parenthesised and may itself contain spaces and parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}
