import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Capabilities } from '@dlock/core';

export type GuaranteeStatus = 'held' | 'violated' | 'skipped';

export interface GuaranteeResult {
  readonly id: string;
  readonly title: string;
  /** The kit section: 'lock', 'network', 'semaphore', 'read-write' or 'soak' (absent in older reports: 'lock'). */
  readonly section?: string;
  readonly status: GuaranteeStatus;
  /** Why it was skipped, or the failure message. */
  readonly detail?: string;
  /** Figures the guarantee measured, in ms, by label (e.g. "reachable again → orphan gone"). */
  readonly measurements?: Readonly<Record<string, number>>;
}

/** What one conformance run found for one backend: the data behind every semantics table. */
export interface ConformanceReport {
  readonly schema: 'dlock.conformance/1';
  readonly name: string;
  readonly backend: string;
  /** What the provider declares for its locks. */
  readonly capabilities: Capabilities;
  /**
   * What its semaphores and read-write locks declare (null: it has none). Absent in reports written
   * before the kit recorded them.
   */
  readonly primitiveCapabilities?: {
    readonly semaphore: Capabilities | null;
    readonly readWrite: Capabilities | null;
  };
  readonly finishedAt: string;
  readonly results: GuaranteeResult[];
}

export function writeConformanceReport(path: string, report: ConformanceReport): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
}
