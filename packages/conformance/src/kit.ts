import type { Lease, LockProvider, RetryPolicyOptions } from '@dlock/core';
import type { SoakHooks } from './sections/soak.js';

/** Which part of the kit a guarantee belongs to; the semantics tables group rows by it. */
export type Section = 'lock' | 'network' | 'semaphore' | 'read-write' | 'soak';

/** What a backend stores for a name, by primitive. */
export type ResidueKind = 'lock' | 'semaphore' | 'read-write';

/**
 * Faults injected between a provider and its server(s), as the testkit's TCP fault proxy does
 * (`startFaultProxy` in @dlock/testkit satisfies this shape; for several servers, apply each call to
 * every proxy). Every fault is real: sockets are reset, black-holed or refused.
 */
export interface NetworkFaults {
  /** RST every open connection now; new connections are accepted. */
  reset(): void;
  /** Forward nothing either way and send no RST, until heal(). */
  blackhole(): void;
  /** Forward the next request, swallow its reply, then reset: the request was applied, the reply lost. */
  dropNextReply(options?: { thenReset?: boolean }): Promise<void>;
  /** Refuse new connections for `ms` (open connections untouched). */
  refuseConnections(ms: number): void;
  /** Hold bytes in one direction (or both) by `ms`. */
  delay(ms: number, direction: 'upstream' | 'downstream' | 'both'): void;
  /** A blip: reset() and refuseConnections(ms). */
  outage(ms: number): void;
  /** Back to pass-through. */
  heal(): void;
}

export interface NetworkHooks {
  /**
   * A new provider whose every connection goes through `faults`. `options.retry` overrides fields of
   * its retry policy (the kit shortens cleanupMs to make a release give up quickly).
   */
  connect(options?: { retry?: RetryPolicyOptions }): Promise<{
    provider: LockProvider;
    faults: NetworkFaults;
  }>;
  /** The connect timeout those providers use (ms); the long-outage case lasts twice this. */
  connectTimeoutMs: number;
  /** Drop the server's script cache (Redis SCRIPT FLUSH on every node), where the backend has one. */
  flushScriptCache?: () => Promise<void>;
}

export interface ConformanceOptions {
  /** Lease ttl used by timing checks (ms). Default 600. */
  ttlMs?: number;
  /** Slack allowed on every timing bound (ms). Default 400. */
  marginMs?: number;
  /** Contenders (separate provider instances) in the mutual-exclusion check. Default 4. */
  contenders?: number;
  /**
   * Make `provider` stop as if its process had crashed: its connection or session goes away and it
   * releases nothing. Default: simply abandon it (its leases then lapse by ttl).
   */
  crash?: (provider: LockProvider) => Promise<void>;
  /** How long after a crash the lock may still be held (ttl or session timeout). Default: ttlMs. */
  crashRecoveryMs?: number;
  /**
   * Make the leases of `provider` lapse at the backend while the provider object stays usable (stop
   * its renewals or session keepalive and wait until the backend has let go). Default, for backends
   * whose leases expire by their own ttl: wait ttlMs plus the margin.
   */
  lapse?: (provider: LockProvider, lease: Lease) => Promise<void>;
  /** Delete `key`'s lock at the backend, as an operator would. Enables the takeover checks. */
  forceRelease?: (key: string) => Promise<void>;
  /**
   * What the backend still stores for `key` (keys, nodes, queue entries) of the given primitive; must
   * be empty when nothing holds or waits. `kind` is 'lock' unless the semaphore or read-write sections ask.
   */
  residue?: (key: string, kind: ResidueKind) => Promise<string[]>;
  /** Whether the backend shows a lock at `key` exactly as given (simple keys must map unchanged). */
  heldAtRawKey?: (key: string) => Promise<boolean>;
  /** A provider whose backend is down, for the typed-error check. Omit for in-process backends. */
  unreachable?: () => Promise<LockProvider>;
  /** The connect timeout the unreachable provider is configured with (ms). Default 2000. */
  connectTimeoutMs?: number;
  /** Providers whose connections go through a fault proxy: enables the network-faults section. */
  network?: NetworkHooks;
  /** Probes for the churn soak (client listeners, server watches): enables the soak section. */
  soak?: SoakHooks;
  /** Where to write the JSON report. Default: $DLOCK_CONFORMANCE_DIR/<name>.json when that is set. */
  reportPath?: string;
}

export interface Guarantee {
  id: string;
  title: string;
  /** The kit section it belongs to. Default 'lock'. */
  section?: Section;
  /** A reason to skip, or undefined when the check applies. Called when the test runs. */
  skipReason?: () => string | undefined;
  run: () => Promise<void>;
  timeoutMs?: number;
}

/** What every section's guarantees get from the kit. */
export interface KitContext {
  readonly name: string;
  readonly options: ConformanceOptions;
  readonly ttlMs: number;
  readonly marginMs: number;
  readonly connectTimeoutMs: number;
  /** The first provider, opened before any guarantee runs. */
  readonly first: LockProvider;
  /** A new provider from the factory, closed at the end of the run. */
  open(): Promise<LockProvider>;
  /**
   * Like open(), after one tryAcquire + release on a key of its own: its connection (and session)
   * is open, so its next request is sent at once. Guarantees that set up an arrival order, or time
   * one call, use it: a new provider's first request waits for its connect (an etcd lease grant, a
   * ZooKeeper session), which a busy machine can stretch past the pause between two arrivals.
   */
  openWarm(): Promise<LockProvider>;
  /**
   * Resolves once `count` requests wait in line on lock `key`, where the backend shows its line
   * (`inspect().waiters`); elsewhere after a 60 ms pause. Fails the guarantee when the line is not
   * reached within 10 s.
   */
  inLine(key: string, count: number): Promise<void>;
  /** A new provider that the kit does not close (a guarantee that crashes it). */
  factory(): Promise<LockProvider>;
  /** Close `provider` at the end of the run. */
  track(provider: LockProvider): void;
  /** A key no other guarantee uses. */
  freshKey(label: string): string;
  /** Let `lease` lapse at the backend (the `lapse` hook, or ttl + margin). */
  lapse(provider: LockProvider, lease: Lease): Promise<void>;
  /** Asserts that, within marginMs, lock `key` has no holder and (with the residue hook) nothing left behind. */
  expectFree(key: string, kind?: ResidueKind): Promise<void>;
  /**
   * Records a figure (ms) measured by the running guarantee, reported with its result in
   * `dlock.conformance/1` (e.g. "reachable again → orphan gone").
   */
  measure(label: string, valueMs: number): void;
}
