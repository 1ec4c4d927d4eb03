import { failoverFigure } from './failover.js';
import { handoffFigure } from './handoff.js';
import { readWriteFigure } from './read-write.js';
import type { FigureKind, FigureSection } from './section.js';
import { semaphoreFigure } from './semaphore.js';
import { throughputFigure } from './throughput.js';
import { uncontendedFigure } from './uncontended.js';

/** Every figure kind, in report order. Add a kind here to have both reports render it. */
export const figureKinds: readonly FigureKind[] = [
  uncontendedFigure,
  throughputFigure,
  handoffFigure,
  failoverFigure,
  semaphoreFigure,
  readWriteFigure,
];

/** The figures this run has data for. */
export function buildFigures(results: Parameters<FigureKind['build']>[0]): FigureSection[] {
  return figureKinds.flatMap((kind) => kind.build(results) ?? []);
}

export type { Chart, FigureKind, FigureSection } from './section.js';
export { figure, scenario, term } from './section.js';
