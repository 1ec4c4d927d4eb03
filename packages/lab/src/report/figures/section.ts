import type { TopLevelSpec } from 'vega-lite';
import type { Results } from '../../results.js';
import type { Table } from '../tables.js';

/** A chart of a figure: a Vega-Lite spec, rendered to inline SVG for the HTML report. */
export interface Chart {
  readonly title: string;
  readonly caption: string;
  readonly spec: TopLevelSpec;
}

/**
 * One figure of the report: what was measured, its chart(s) and table, and what stands out in this
 * run. Sentences in `findings` are derived from the results (never hard-coded numbers), and may link
 * to glossary terms, other figures and fault scenarios with `[text](#anchor)` (see `term`, `figure`,
 * `scenario`), which the HTML and markdown reports both render as links.
 */
export interface FigureSection {
  /** Anchor in both reports: `figure-<id>`. */
  readonly id: string;
  readonly title: string;
  /** What is measured and how, in a sentence or two. */
  readonly caption: string;
  readonly charts: readonly Chart[];
  readonly table: Table;
  readonly findings: readonly string[];
}

/**
 * A kind of figure: the report renders every kind in `figureKinds` order, and leaves out a kind that
 * has no data in this run. A new measurement (a semaphore's permits, a read-write lock's readers)
 * adds a record to results.ts, a file here, and one line in `figureKinds`.
 */
export interface FigureKind {
  readonly id: string;
  build(results: Results): FigureSection | undefined;
}

/** A link to a glossary term: `[text](#term-<id>)`. */
export const term = (id: string, text = id) => `[${text}](#term-${id})`;
/** A link to another figure: `[text](#figure-<id>)`. */
export const figure = (id: string, text: string) => `[${text}](#figure-${id})`;
/** A link to a fault scenario's first result: `[text](#fault-<id>)`. */
export const scenario = (id: string, text = id) => `[${text}](#fault-${id})`;

/**
 * "Not measured: zookeeper — the zookeeper provider does not support semaphores: …": one sentence
 * per backend whose provider threw UnsupportedError for the primitive, so a figure that leaves a
 * backend out says why (the lab asks each provider; it keeps no list of who has what).
 */
export function unsupportedFindings(results: Results, primitive: 'semaphore' | 'readWrite'): string[] {
  return results.backends.flatMap((backend) => {
    const why = primitive === 'semaphore' ? backend.semaphoreUnsupported : backend.readWriteUnsupported;
    return why ? [`Not measured: ${backend.name} — ${why}.`] : [];
  });
}
