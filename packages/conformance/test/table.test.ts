import type { Capabilities } from '@dlock/core';
import { describe, expect, it } from 'vitest';
import type { ConformanceReport } from '../src/report.js';
import { renderSemanticsTable, semanticsGroups } from '../src/table.js';

const fenced: Capabilities = {
  fencing: 'monotonic',
  fairness: 'fifo',
  wakeup: 'push',
  expiry: 'ttl',
  safety: 'test',
};
const unfenced: Capabilities = {
  fencing: 'none',
  fairness: 'none',
  wakeup: 'push',
  expiry: 'ttl',
  safety: 'test',
};

function report(
  name: string,
  primitives: ConformanceReport['primitiveCapabilities'],
  results: ConformanceReport['results'],
): ConformanceReport {
  return {
    schema: 'dlock.conformance/1',
    name,
    backend: name,
    capabilities: fenced,
    ...(primitives ? { primitiveCapabilities: primitives } : {}),
    finishedAt: '2026-11-30T00:00:00.000Z',
    results,
  };
}

const reports = [
  report('alpha', { semaphore: unfenced, readWrite: fenced }, [
    { id: 'lock.excl', title: 'never two holders', status: 'held' },
    { id: 'sem.limit', title: 'never more than limit', section: 'semaphore', status: 'held' },
    { id: 'rw.fifo', title: 'no writer starvation', section: 'read-write', status: 'skipped' },
  ]),
  report('beta', { semaphore: null, readWrite: null }, [
    { id: 'lock.excl', title: 'never two holders', section: 'lock', status: 'violated' },
    { id: 'sem.limit', title: 'never more than limit', section: 'semaphore', status: 'skipped' },
  ]),
  // Written before the kit recorded the primitives' capabilities or the sections.
  report('gamma', undefined, [{ id: 'lock.excl', title: 'never two holders', status: 'held' }]),
];

describe('the semantics table', () => {
  it('groups guarantees by kit section, in the kit order, each group opening with what is declared', () => {
    const groups = semanticsGroups(reports);
    expect(groups.map((group) => group.section)).toEqual(['lock', 'semaphore', 'read-write']);
    const [lock, semaphore, readWrite] = groups;
    expect(lock?.rows.map((row) => row.title)).toEqual([
      'fencing (declared)',
      'fairness (declared)',
      'wakeup (declared)',
      'expiry (declared)',
      'never two holders',
    ]);
    expect(lock?.rows.at(-1)?.cells).toEqual(['held', 'VIOLATED', 'held']);
    expect(semaphore?.rows[0]?.cells).toEqual(['none · none · push · ttl', 'none (no such primitive)', '—']);
    expect(semaphore?.rows[1]?.cells).toEqual(['held', 'n/a', '—']);
    expect(readWrite?.rows[0]?.cells[0]).toBe('monotonic · fifo · push · ttl');
    expect(readWrite?.rows[1]?.cells).toEqual(['n/a', '—', '—']);
  });

  it('renders each group under a bold row naming it, one column per backend', () => {
    const lines = renderSemanticsTable(reports).split('\n');
    expect(lines[0]).toBe('| guarantee | alpha | beta | gamma |');
    expect(lines[1]).toBe('|---|---|---|---|');
    expect(lines).toContain('| **lock** |  |  |  |');
    expect(lines).toContain('| **semaphore** |  |  |  |');
    expect(lines).toContain('| **read-write** |  |  |  |');
    expect(lines).not.toContain('| **soak** |  |  |  |');
    expect(lines.indexOf('| **semaphore** |  |  |  |')).toBeLessThan(
      lines.indexOf('| never more than limit | held | n/a | — |'),
    );
  });
});
