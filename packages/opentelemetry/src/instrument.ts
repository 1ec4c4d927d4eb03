import { type TracingChannelSubscribers, channel, tracingChannel } from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import {
  type AcquireMessage,
  type ExtendMessage,
  InvalidArgumentError,
  type LeaseKind,
  type LostMessage,
  type ReleaseFailedMessage,
  type ReleasedMessage,
  channelNames,
} from '@dlock/core';
import {
  type Attributes,
  type Context,
  type MeterProvider,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TracerProvider,
  context,
  metrics,
  trace,
} from '@opentelemetry/api';
import { attributeNames as A, bucketBoundariesMs, metricNames, spanNames } from './names.js';

export interface InstrumentOptions {
  /** Where metrics go. Default: the global MeterProvider (`metrics.getMeterProvider()`) at the time of the call. */
  meterProvider?: MeterProvider;
  /** Where spans go. Default: the global TracerProvider (`trace.getTracerProvider()`) at the time of the call. */
  tracerProvider?: TracerProvider;
  /**
   * Default false. True adds the lock key as `dlock.key` to every metric and span, and error messages
   * (which name the key) to span statuses. Keys can carry tenant data, and one time series per key
   * can exceed a metrics backend's cardinality limits: turn it on for a bounded set of keys you own.
   */
  recordKeys?: boolean;
  /** Default false. True records a `dlock.hold` span per lease, from the grant to its end. */
  holdSpans?: boolean;
}

/** A running instrumentation. */
export interface Instrumentation extends Disposable {
  /**
   * Stops recording: unsubscribes from every channel (idempotent). Leases granted before it are no
   * longer followed: `dlock.lease.active` keeps its last value and their hold spans stay open.
   */
  unsubscribe(): void;
}

/** What we keep of a lease between its grant and its end. */
interface Held {
  readonly attributes: Attributes;
  readonly span: Span | undefined;
}

/** What we keep of an acquire between its start and its outcome. */
interface Pending {
  readonly span: Span;
  readonly parent: Context;
}

const scope = '@dlock/opentelemetry';

/**
 * Subscribes to @dlock/core's diagnostics channels (`channelNames`) and records each event through
 * `@opentelemetry/api`: the metrics in `metricNames`, a `dlock.acquire` span per acquire and, with
 * `holdSpans`, a `dlock.hold` span per lease (names and attributes: the package README). Nothing is
 * subscribed until it is called, so core builds no message at all without it, and after
 * `unsubscribe()` it costs nothing again. Each call records on its own: two calls count every event
 * twice (to two providers, say).
 *
 * The acquire span is a child of the context active when `acquire` was called; the hold span is its
 * sibling (a lease outlives the call that took it).
 *
 * @throws InvalidArgumentError when an option has the wrong type (the field, the value, what is allowed).
 */
export function instrument(options: InstrumentOptions = {}): Instrumentation {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'an object');
  }
  const { recordKeys = false, holdSpans = false } = options;
  validateBoolean('recordKeys', recordKeys);
  validateBoolean('holdSpans', holdSpans);
  const meterProvider = options.meterProvider ?? metrics.getMeterProvider();
  const tracerProvider = options.tracerProvider ?? trace.getTracerProvider();
  if (typeof meterProvider?.getMeter !== 'function') {
    throw new InvalidArgumentError('meterProvider', meterProvider, 'an OpenTelemetry MeterProvider');
  }
  if (typeof tracerProvider?.getTracer !== 'function') {
    throw new InvalidArgumentError('tracerProvider', tracerProvider, 'an OpenTelemetry TracerProvider');
  }

  const version = packageVersion();
  const meter = meterProvider.getMeter(scope, version);
  const tracer = tracerProvider.getTracer(scope, version);
  const acquireDuration = meter.createHistogram(metricNames.acquireDuration, {
    unit: 'ms',
    description: 'Time from an acquire call to its outcome.',
    advice: { explicitBucketBoundaries: [...bucketBoundariesMs.acquire] },
  });
  const acquireRequests = meter.createCounter(metricNames.acquireRequests, {
    unit: '{request}',
    description: 'Acquire calls, by outcome.',
  });
  const leaseDuration = meter.createHistogram(metricNames.leaseDuration, {
    unit: 'ms',
    description: 'How long a lease was held, from the grant to its release, loss or failed release.',
    advice: { explicitBucketBoundaries: [...bucketBoundariesMs.hold] },
  });
  const leaseActive = meter.createUpDownCounter(metricNames.leaseActive, {
    unit: '{lease}',
    description: 'Leases held: granted, and not yet released, lost or given up.',
  });
  const leaseLost = meter.createCounter(metricNames.leaseLost, {
    unit: '{lease}',
    description: 'Leases whose ownership could no longer be guaranteed, by reason.',
  });
  const releaseFailures = meter.createCounter(metricNames.releaseFailures, {
    unit: '{failure}',
    description: 'Releases that gave up; the lock then ends by its ttl or session.',
  });
  const extendFailures = meter.createCounter(metricNames.extendFailures, {
    unit: '{failure}',
    description: 'Lease extensions that failed, background renewals included.',
  });

  /** The attributes every metric of one lock carries. */
  const leaseAttributes = (message: { backend: string; kind: LeaseKind; key: string }): Attributes =>
    recordKeys
      ? { [A.backend]: message.backend, [A.kind]: message.kind, [A.key]: message.key }
      : { [A.backend]: message.backend, [A.kind]: message.kind };
  /** Span status for a failure: the message names the key, so it is kept only when keys are. */
  const failed = (error: unknown, fallback: string) => ({
    code: SpanStatusCode.ERROR,
    message: recordKeys && error instanceof Error ? error.message : fallback,
  });

  const pending = new WeakMap<AcquireMessage, Pending>();
  const held = new WeakMap<object, Held>();

  // Node takes any subset of the five handlers; @types/node 20 asks for all of them.
  const acquireHandlers = {
    start(message: AcquireMessage) {
      // Published synchronously inside acquire(): the active context is the caller's.
      const parent = context.active();
      const span = tracer.startSpan(
        spanNames.acquire,
        {
          kind: SpanKind.INTERNAL,
          attributes: {
            ...leaseAttributes(message),
            [A.mode]: message.mode,
            [A.identity]: message.identity,
          },
        },
        parent,
      );
      pending.set(message, { span, parent });
    },
    asyncEnd(message: AcquireMessage) {
      const outcome = message.outcome ?? 'unavailable';
      const failure = message.error;
      const attributes: Attributes = {
        ...leaseAttributes(message),
        [A.mode]: message.mode,
        [A.outcome]: outcome,
      };
      if (failure !== undefined) attributes[A.errorType] = errorType(failure);
      acquireDuration.record(message.waitedMs ?? 0, attributes);
      acquireRequests.add(1, attributes);

      const started = pending.get(message);
      if (!started) return;
      pending.delete(message);
      const { span } = started;
      span.setAttribute(A.outcome, outcome);
      if (message.tries !== undefined) span.setAttribute(A.tries, message.tries);
      if (message.token !== undefined) span.setAttribute(A.token, message.token.toString());
      if (failure !== undefined) {
        span.setAttribute(A.errorType, errorType(failure));
        span.setStatus(failed(failure, outcome));
      }
      span.end();

      const lease = message.result;
      if (outcome !== 'granted' || typeof lease !== 'object' || lease === null) return;
      const leaseAttrs = leaseAttributes(message);
      leaseActive.add(1, leaseAttrs);
      held.set(lease, {
        attributes: leaseAttrs,
        span: holdSpans
          ? tracer.startSpan(
              spanNames.hold,
              {
                kind: SpanKind.INTERNAL,
                attributes: {
                  ...leaseAttrs,
                  [A.identity]: message.identity,
                  [A.token]: message.token?.toString(),
                },
              },
              started.parent,
            )
          : undefined,
      });
    },
  } as TracingChannelSubscribers<AcquireMessage>;

  /** The first of released / lost / release-failed ends a hold; later ones (release after a loss) do not. */
  function endHold(
    lease: object,
    heldMs: number,
    end: 'released' | 'lost' | 'release-failed',
    extra: Attributes,
    status?: { code: SpanStatusCode; message: string },
  ): void {
    const state = held.get(lease);
    if (!state) return;
    held.delete(lease);
    leaseActive.add(-1, state.attributes);
    leaseDuration.record(heldMs, { ...state.attributes, [A.end]: end, ...extra });
    if (state.span) {
      state.span.setAttributes({ [A.end]: end, ...extra });
      if (status) state.span.setStatus(status);
      state.span.end();
    }
  }

  const onReleased = (raw: unknown) => {
    const message = raw as ReleasedMessage;
    endHold(message.lease, message.heldMs, 'released', {});
  };
  const onLost = (raw: unknown) => {
    const message = raw as LostMessage;
    const reason = { [A.lostReason]: message.reason };
    leaseLost.add(1, { ...leaseAttributes(message), ...reason });
    endHold(message.lease, message.heldMs, 'lost', reason, failed(message.error, `lost: ${message.reason}`));
  };
  const onReleaseFailed = (raw: unknown) => {
    const message = raw as ReleaseFailedMessage;
    const type = { [A.errorType]: errorType(message.error) };
    releaseFailures.add(1, { ...leaseAttributes(message), ...type });
    endHold(message.lease, message.heldMs, 'release-failed', type, failed(message.error, 'release failed'));
  };
  const onExtendFailed = (raw: unknown) => {
    const message = raw as ExtendMessage;
    extendFailures.add(1, { ...leaseAttributes(message), [A.errorType]: errorType(message.error) });
  };

  const acquires = tracingChannel<AcquireMessage, AcquireMessage>(channelNames.acquire);
  const subscriptions: [string, (message: unknown) => void][] = [
    [channelNames.released, onReleased],
    [channelNames.lost, onLost],
    [channelNames.releaseFailed, onReleaseFailed],
    [channelNames.extendFailed, onExtendFailed],
  ];
  acquires.subscribe(acquireHandlers);
  for (const [name, onMessage] of subscriptions) channel(name).subscribe(onMessage);

  let subscribed = true;
  const unsubscribe = () => {
    if (!subscribed) return;
    subscribed = false;
    acquires.unsubscribe(acquireHandlers);
    for (const [name, onMessage] of subscriptions) channel(name).unsubscribe(onMessage);
  };
  return { unsubscribe, [Symbol.dispose]: unsubscribe };
}

/**
 * `error.type`: low-cardinality by the conventions' rule. dlock's errors name their class
 * (`LockTimeoutError`, `BackendUnavailableError`, …), the platform's abort reasons are `AbortError` /
 * `TimeoutError`; anything that is not an Error is `_OTHER`.
 */
function errorType(error: unknown): string {
  return error instanceof Error && error.name ? error.name : '_OTHER';
}

function validateBoolean(field: string, value: unknown): void {
  if (typeof value !== 'boolean') throw new InvalidArgumentError(field, value, 'true or false');
}

let version: string | undefined;
/** The instrumentation scope's version: this package's. */
function packageVersion(): string {
  version ??= (createRequire(import.meta.url)('../package.json') as { version: string }).version;
  return version;
}
