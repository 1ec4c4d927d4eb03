import type { Attributes } from '@opentelemetry/api';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { expect } from 'vitest';
import { type InstrumentOptions, type Instrumentation, instrument } from '../src/index.js';

// Parent spans follow async calls only with a context manager, as in any real service's SDK setup.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

/**
 * The real OpenTelemetry SDK with its in-memory exporters, and dlock instrumented into it. Metrics are
 * cumulative: each `collect()` sees every measurement since the start.
 */
export function otelHarness(options: Omit<InstrumentOptions, 'meterProvider' | 'tracerProvider'> = {}) {
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({
    exporter: metricExporter,
    // Exports happen on collect() only.
    exportIntervalMillis: 3_600_000,
  });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  const instrumentation: Instrumentation = instrument({ meterProvider, tracerProvider, ...options });

  return {
    tracer: tracerProvider.getTracer('test'),
    instrumentation,
    /** The metrics recorded so far, by instrument name. */
    async collect(): Promise<Metrics> {
      await reader.forceFlush();
      const latest = metricExporter.getMetrics().at(-1);
      const byName = new Map<string, DataPoint<number | Histogram>[]>();
      for (const scope of latest?.scopeMetrics ?? []) {
        expect(scope.scope.name).toBe('@dlock/opentelemetry');
        for (const metric of scope.metrics) {
          byName.set(metric.descriptor.name, metric.dataPoints as DataPoint<number | Histogram>[]);
        }
      }
      return new Metrics(byName);
    },
    /** The spans ended so far. */
    spans(name?: string): ReadableSpan[] {
      const ended = spanExporter.getFinishedSpans();
      return name === undefined ? ended : ended.filter((span) => span.name === name);
    },
    async shutdown(): Promise<void> {
      instrumentation.unsubscribe();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    },
  };
}

export class Metrics {
  constructor(readonly byName: Map<string, DataPoint<number | Histogram>[]>) {}

  /** The data points of `name` whose attributes include `match`. */
  points(name: string, match: Attributes = {}): DataPoint<number | Histogram>[] {
    return (this.byName.get(name) ?? []).filter((point) =>
      Object.entries(match).every(([key, value]) => point.attributes[key] === value),
    );
  }

  /** The sum of a counter's (or UpDownCounter's) points matching `match`. */
  sum(name: string, match: Attributes = {}): number {
    return this.points(name, match).reduce((total, point) => total + (point.value as number), 0);
  }

  /** How many measurements a histogram's points matching `match` hold. */
  count(name: string, match: Attributes = {}): number {
    return this.points(name, match).reduce((total, point) => total + (point.value as Histogram).count, 0);
  }

  /** Every attribute key on any point of any instrument. */
  attributeKeys(): Set<string> {
    const keys = new Set<string>();
    for (const points of this.byName.values()) {
      for (const point of points) for (const key of Object.keys(point.attributes)) keys.add(key);
    }
    return keys;
  }
}

/** Every attribute key on any of the spans. */
export function spanAttributeKeys(spans: readonly ReadableSpan[]): Set<string> {
  return new Set(spans.flatMap((span) => Object.keys(span.attributes)));
}
