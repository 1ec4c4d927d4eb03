import { View, parse } from 'vega';
import { type TopLevelSpec, compile } from 'vega-lite';
import type { Figure } from '../results.js';

/**
 * Chart text is at least this size in CSS pixels; the report shows charts at their natural width
 * (never scaled down), so this is the size a reader sees. The browser test checks it.
 */
export const CHART_FONT_PX = 13;
/** Width of the plotting area; axis labels and the legend come on top of it. */
export const PLOT_WIDTH = 620;
/** Height of one measure within a row of the row charts (a row holds one point per measure). */
const MEASURE_STEP = 13;

/**
 * Shared look: readable text, and no truncated labels anywhere (labelLimit 0 lifts vega's default
 * limits of 180 px on axes and 160 px in legends, which cut "peer: redis-semaphore RedlockMutex").
 */
const base = {
  background: 'white',
  padding: 8,
  config: {
    font: 'Helvetica, Arial, sans-serif',
    axis: { labelFontSize: CHART_FONT_PX, titleFontSize: CHART_FONT_PX, labelLimit: 0, titlePadding: 10 },
    legend: {
      labelFontSize: CHART_FONT_PX,
      titleFontSize: CHART_FONT_PX,
      labelLimit: 0,
      orient: 'top',
      direction: 'horizontal',
      title: null,
    },
    view: { stroke: '#d8dde6' },
  },
} as const;

export interface RowPoint {
  /** The row: a backend or a peer library; unique within the chart. */
  readonly row: string;
  /** Which measure of the row: "p50", "floor p50", "p99", ... */
  readonly measure: string;
  readonly value: number;
  /** The spread of the value (min–max of its blocks), drawn as a line through the point. */
  readonly low?: number;
  readonly high?: number;
}

/** A figure as a point with its spread. */
export function figurePoint(row: string, measure: string, figure: Figure): RowPoint {
  return { row, measure, value: figure.median, low: figure.min, high: figure.max };
}

/**
 * One row per backend or peer, one point per measure, a line for each point's spread: a dot plot.
 * Measures sit side by side within a row (yOffset), so equal values never hide each other, and the
 * log axis keeps sub-millisecond medians readable next to multi-millisecond tails.
 */
export function rowChart(options: {
  readonly points: readonly RowPoint[];
  readonly measures: readonly string[];
  readonly axisTitle: string;
  readonly log: boolean;
}): TopLevelSpec {
  const rows = [...new Set(options.points.map((point) => point.row))];
  const positive = (value: number) => (options.log ? Math.max(value, 0.001) : value);
  const values = options.points.map((point) => ({
    ...point,
    value: positive(point.value),
    low: point.low === undefined ? undefined : positive(point.low),
    high: point.high === undefined ? undefined : positive(point.high),
  }));
  const y = { field: 'row', type: 'nominal', sort: rows, title: null } as const;
  const yOffset = { field: 'measure', type: 'nominal', sort: options.measures } as const;
  const x = {
    field: 'value',
    type: 'quantitative',
    title: options.axisTitle,
    scale: options.log ? { type: 'log' } : { zero: true, padding: 12 },
  } as const;
  const color = {
    field: 'measure',
    type: 'nominal',
    sort: options.measures,
    scale: { domain: options.measures },
  } as const;
  return {
    ...base,
    width: PLOT_WIDTH,
    height: { step: MEASURE_STEP },
    data: { values },
    layer: [
      {
        transform: [{ filter: 'isValid(datum.low) && isValid(datum.high)' }],
        mark: { type: 'rule', strokeWidth: 2 },
        encoding: { y, yOffset, x: { ...x, field: 'low' }, x2: { field: 'high' }, color },
      },
      {
        mark: { type: 'point', filled: true, size: 70 },
        encoding: {
          y,
          yOffset,
          x,
          color,
          shape: { field: 'measure', type: 'nominal', sort: options.measures, scale: { domain: options.measures } },
        },
      },
    ],
  } as TopLevelSpec;
}

export interface SeriesPoint {
  readonly series: string;
  /** The x position's label, ordered by `order`. */
  readonly x: string;
  readonly order: number;
  readonly value: number;
  readonly low?: number;
  readonly high?: number;
}

/** Lines over an ordinal x axis, a log y axis, and the spread of each point as a vertical line. */
export function seriesChart(options: {
  readonly points: readonly SeriesPoint[];
  readonly xTitle: string;
  readonly yTitle: string;
}): TopLevelSpec {
  const x = { field: 'x', type: 'ordinal', sort: { field: 'order' }, title: options.xTitle, axis: { labelAngle: 0 } } as const;
  const y = { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: options.yTitle } as const;
  const color = { field: 'series', type: 'nominal' } as const;
  return {
    ...base,
    width: PLOT_WIDTH,
    height: 300,
    data: { values: options.points.filter((point) => point.value > 0) },
    layer: [
      {
        transform: [{ filter: 'isValid(datum.low) && isValid(datum.high) && datum.low > 0' }],
        mark: { type: 'rule', strokeWidth: 2 },
        encoding: { x, y: { ...y, field: 'low' }, y2: { field: 'high' }, color },
      },
      { mark: { type: 'line', point: { filled: true, size: 60 } }, encoding: { x, y, color } },
    ],
  } as TopLevelSpec;
}

/** Renders a Vega-Lite spec to an SVG string with vega's headless view (no DOM, no network). */
export async function renderChartSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
