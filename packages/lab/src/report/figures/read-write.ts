import type { ReadWriteRecord, Results } from '../../results.js';
import { type RowPoint, figurePoint, rowChart } from '../charts.js';
import { formatFigure, formatMs, formatRateFigure, readWriteTable } from '../tables.js';
import { type FigureKind, scenario, term, unsupportedFindings } from './section.js';
import { noisyFinding } from './uncontended.js';

/** A writer waiting this many times as long as a reader on the same lock (p50) is starvation showing. */
const STARVED = 2;

const fairnessOf = (results: Results, backend: string) =>
  results.backends.find((entry) => entry.name === backend)?.readWriteCapabilities?.fairness;

function backendFinding(results: Results, entry: ReadWriteRecord): string {
  const share = Math.round(entry.writeShare * 100);
  const fair = fairnessOf(results, entry.backend) === 'fifo';
  const parts = [
    `${entry.backend}: ${formatRateFigure(entry.opsPerSecond)} reads + writes/s (${entry.reads} reads, ${entry.writes} writes measured; ${share}% writes), up to ${entry.mostReadersTogether} readers holding together; read wait p50 ${formatFigure(entry.readWaitMs.p50Ms)}, p99 ${formatMs(entry.readWaitMs.p99Ms)}; write wait p50 ${formatFigure(entry.writeWaitMs.p50Ms)}, p99 ${formatMs(entry.writeWaitMs.p99Ms)}.`,
    fair
      ? `One queue in arrival order (${term('fifo', 'FIFO')}): a writer waits for the readers ahead of it, and readers that arrive after a waiting writer wait for it — so readers wait too, and a writer never waits for readers that came after it.`
      : `No queue: a writer gets the lock only at a moment when no reader holds it, and readers that arrive meanwhile are let in at once (${term('starvation', 'writer starvation')} is possible).`,
  ];
  if (entry.conflicts > 0) {
    parts.push(
      `The contenders saw ${entry.conflicts} write leases held beside another lease: a violation of the read-write lock’s one promise.`,
    );
  }
  return parts.join(' ');
}

/** How many times a reader's wait a writer's is, at p50. */
const writerOverReader = (entry: ReadWriteRecord) =>
  entry.writeWaitMs.p50Ms.median / Math.max(entry.readWaitMs.p50Ms.median, 0.001);

/**
 * The starvation check. Absolute waits do not show it: in a FIFO queue everyone waits its turn, readers
 * as long as writers. A writer waiting far longer than readers on the same lock does, and its p99 beside
 * the FIFO backends' says how far its turn can slip.
 */
function starvationFinding(results: Results, entries: readonly ReadWriteRecord[]): string[] {
  const fifo = entries.filter((entry) => fairnessOf(results, entry.backend) === 'fifo');
  const unfair = entries.filter((entry) => fairnessOf(results, entry.backend) === 'none');
  if (unfair.length === 0) return [];
  const ratio = (entry: ReadWriteRecord) =>
    `${entry.backend} ×${writerOverReader(entry).toFixed(1)} (write p50 ${formatMs(entry.writeWaitMs.p50Ms.median)}, p99 ${formatMs(entry.writeWaitMs.p99Ms)})`;
  const starved = unfair.filter((entry) => writerOverReader(entry) >= STARVED);
  const fairPart =
    fifo.length > 0
      ? ` On the FIFO backends a writer waits about as long as a reader — ${fifo.map(ratio).join(', ')} — because readers that arrive after a waiting writer queue behind it.`
      : '';
  const bound = Math.max(...unfair.map((entry) => entry.blockMs));
  return [
    `The ${term('starvation', 'starvation check')}, a writer’s wait as a multiple of a reader’s on the same lock: ${unfair.map((entry) => `${ratio(entry)} with fairness none`).join(', ')}.${fairPart} ${
      starved.length > 0
        ? `With no queue, a writer waits for a moment when no reader holds the lock, and a steady stream of readers rarely leaves one: readers walk in while the writer waits. A wait longer than a block (${formatMs(bound)}) shows as the block’s length, so the writer’s tail may be longer still.`
        : `Starvation did not show in this run: with each reader holding ${unfair[0]?.holdMs} ms, moments with no reader inside still came often enough. Nothing in a lock without a queue makes a writer’s turn come, so it is not ruled out.`
    }`,
  ];
}

/** Read-write locks: a read-mostly mix, and how long writers wait beside readers. */
export const readWriteFigure: FigureKind = {
  id: 'read-write',
  build(results) {
    const entries = results.readWriteLocks ?? [];
    const unsupported = unsupportedFindings(results, 'readWrite');
    if (entries.length === 0 && unsupported.length === 0) return undefined;
    const throughput: RowPoint[] = entries.map((entry) =>
      figurePoint(entry.backend, 'reads + writes / s', entry.opsPerSecond),
    );
    const waits: RowPoint[] = entries.flatMap((entry) => [
      figurePoint(entry.backend, 'read wait p50', entry.readWaitMs.p50Ms),
      { row: entry.backend, measure: 'read wait p99', value: entry.readWaitMs.p99Ms },
      figurePoint(entry.backend, 'write wait p50', entry.writeWaitMs.p50Ms),
      { row: entry.backend, measure: 'write wait p99', value: entry.writeWaitMs.p99Ms },
    ]);
    const [first] = entries;
    const mix = first
      ? `${first.contenders} contenders on one ${term('read-write', 'read-write lock')}, ${Math.round((1 - first.writeShare) * 100)}% of their operations reads and ${Math.round(first.writeShare * 100)}% writes, each lease held ${first.holdMs} ms`
      : `Contenders on one ${term('read-write', 'read-write lock')} (no backend in this run has one)`;
    return {
      id: 'read-write',
      title: 'Read-write locks: a read-mostly load, and the writers’ wait',
      caption: `${mix}, over up to 8 client connections; backends interleaved block by block. A wait is an acquire call’s duration; one still waiting when its block ended counts with its wait so far, so a writer starved for a whole block shows in the tail.`,
      charts: entries.length === 0 ? [] : [
        {
          title: 'Reads + writes per second',
          caption: 'Median block, with the min–max of the blocks (log scale).',
          spec: rowChart({
            points: throughput,
            measures: ['reads + writes / s'],
            axisTitle: 'operations / s (log scale)',
            log: true,
          }),
        },
        {
          title: 'How long readers and writers waited: p50 (with its spread) and p99',
          caption: 'The write wait p99 is the starvation check (log scale).',
          spec: rowChart({
            points: waits,
            measures: ['read wait p50', 'read wait p99', 'write wait p50', 'write wait p99'],
            axisTitle: 'ms (log scale)',
            log: true,
          }),
        },
      ],
      table: readWriteTable(results),
      findings: [
        ...unsupported,
        ...entries.map((entry) => backendFinding(results, entry)),
        ...starvationFinding(results, entries),
        `What a writer paused past its lease does to readers: ${scenario('read-write-writer-pause')}; which guarantees the conformance kit checked: [the read-write section of the semantics](#semantics-read-write).`,
        ...noisyFinding(entries.flatMap((entry) => (entry.opsPerSecond.noisy ? [entry.backend] : []))),
      ],
    };
  },
};
