/**
 * The names @dlock/opentelemetry records under, in the style of the OpenTelemetry semantic
 * conventions (docs/general/naming.md): one `dlock.` namespace, metric names that are not pluralized
 * unless they count discrete things (`{request}`, `{lease}`, `{failure}`), UpDownCounters never
 * pluralized (`dlock.lease.active`, as `cicd.pipeline.run.active`), and the registry's `error.type`.
 *
 * Durations are in milliseconds (unit `ms`), not the conventions' seconds: dlock measures, documents
 * and configures every duration in ms (`ttlMs`, `waitMs`, `heldMs`), and a lock wait is typically a
 * fraction of a millisecond to a few seconds.
 */

/** Metric instrument names. */
export const metricNames = {
  /** Histogram (ms): from an acquire call to its outcome. Attributes: backend, kind, mode, outcome, error.type. */
  acquireDuration: 'dlock.acquire.duration',
  /** Counter (`{request}`): acquire calls by outcome. Attributes as `dlock.acquire.duration`. */
  acquireRequests: 'dlock.acquire.requests',
  /** Histogram (ms): how long a lease was held, from the grant to its end. Attributes: backend, kind, end. */
  leaseDuration: 'dlock.lease.duration',
  /** UpDownCounter (`{lease}`): leases granted and not yet released, lost or given up. Attributes: backend, kind. */
  leaseActive: 'dlock.lease.active',
  /** Counter (`{lease}`): leases whose signal aborted, by reason. Attributes: backend, kind, lost reason. */
  leaseLost: 'dlock.lease.lost',
  /** Counter (`{failure}`): releases that gave up (the lock then ends by its ttl or session). */
  releaseFailures: 'dlock.release.failures',
  /** Counter (`{failure}`): extensions that failed, the renewal watchdog's included. */
  extendFailures: 'dlock.extend.failures',
} as const;

/** Span names. */
export const spanNames = {
  /** One span per acquire call (acquire and tryAcquire, every primitive). */
  acquire: 'dlock.acquire',
  /** With `holdSpans: true`: one span per lease, from the grant to its end. */
  hold: 'dlock.hold',
} as const;

/** Attribute keys. */
export const attributeNames = {
  /** The backend of the provider: `memory`, `redis`, `redlock`, `zookeeper`, `etcd`, … */
  backend: 'dlock.backend.name',
  /** `lock`, `permit` (semaphore), `read` or `write` (read-write lock). */
  kind: 'dlock.lease.kind',
  /** `wait` (acquire) or `try` (tryAcquire). */
  mode: 'dlock.acquire.mode',
  /** `granted`, `busy`, `timeout`, `aborted`, `unavailable`, `closed` or `invalid`. */
  outcome: 'dlock.acquire.outcome',
  /** Spans only: attempts sent, transient failures included. */
  tries: 'dlock.acquire.tries',
  /** `released`, `lost` or `release-failed`: how a lease's hold ended. */
  end: 'dlock.lease.end',
  /** `expired`, `session`, `taken-over` or `closed`. */
  lostReason: 'dlock.lease.lost.reason',
  /** Spans only: the fencing token as a decimal string (tokens are 64-bit; a number would round them). */
  token: 'dlock.lease.token',
  /** Spans only: the caller's identity (what `holder()` reports). */
  identity: 'dlock.identity',
  /** Only with `recordKeys: true`: the lock key (or semaphore / read-write lock name). */
  key: 'dlock.key',
  /** The failure's class name (`LockTimeoutError`, `BackendUnavailableError`, `AbortError`, …) or `_OTHER`. */
  errorType: 'error.type',
} as const;

/**
 * Bucket boundaries (ms) the histograms advise; a View in the SDK overrides them. Acquire waits run
 * from a fraction of a millisecond (loopback Redis) to the caller's waitMs; holds from milliseconds
 * to hours (a leader's term).
 */
export const bucketBoundariesMs = {
  acquire: [0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000],
  hold: [
    1, 5, 10, 50, 100, 500, 1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, 14_400_000,
  ],
} as const;
