import { BackendUnavailableError, InvalidArgumentError } from '@dlock/core';
import { type EtcdServer, freePort, startEtcd } from '@dlock/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EtcdProviderOptions, createEtcdProvider } from '../src/index.js';
import { openProvider, sleep } from './etcd.js';

const CALL_TIMEOUT_MS = 1_000;
/** A typed error must arrive within the call timeout, plus room for a busy machine. */
const PROMPTLY_MS = CALL_TIMEOUT_MS + 1_000;
/** etcd's default retry.outageMs for these providers: max(3 × callTimeoutMs, 2 × the 2 s session ttl). */
const OUTAGE_MS = 4_000;

async function outcome(work: () => Promise<unknown>): Promise<{ error: unknown; elapsedMs: number }> {
  const started = performance.now();
  const error = await work().then(
    () => undefined,
    (e: unknown) => e,
  );
  return { error, elapsedMs: performance.now() - started };
}

describe('bad options are rejected with InvalidArgumentError naming the field', () => {
  const valid: EtcdProviderOptions = { hosts: 'http://127.0.0.1:2379' };
  const table: Array<[string, unknown]> = [
    ['options', null],
    ['hosts', { hosts: '' }],
    ['hosts', { hosts: [] }],
    ['hosts', { hosts: 'not a url' }],
    ['hosts', { hosts: 'ftp://127.0.0.1:2379' }],
    ['hosts', { hosts: 42 }],
    ['hosts', { hosts: ['http://127.0.0.1:2379', 'https://127.0.0.1:2380'] }],
    ['namespace', { ...valid, namespace: 7 }],
    ['electionNamespace', { ...valid, electionNamespace: 5 }],
    ['sessionTtlSec', { ...valid, sessionTtlSec: 0 }],
    ['sessionTtlSec', { ...valid, sessionTtlSec: 0.5 }],
    ['sessionTtlSec', { ...valid, sessionTtlSec: -3 }],
    ['sessionTtlSec', { ...valid, sessionTtlSec: Number.NaN }],
    ['sessionTtlSec', { ...valid, sessionTtlSec: '10' }],
    ['callTimeoutMs', { ...valid, callTimeoutMs: 0 }],
    ['callTimeoutMs', { ...valid, callTimeoutMs: Number.POSITIVE_INFINITY }],
    ['auth', { ...valid, auth: { username: '', password: 'x' } }],
    ['auth.password', { ...valid, auth: { username: 'root', password: 5 } }],
    ['tls', { ...valid, tls: { rootCertificate: 'not a buffer' } }],
    ['identity', { ...valid, identity: '' }],
    ['defaultTtlMs', { ...valid, defaultTtlMs: -1 }],
    ['retry.outageMs', { ...valid, retry: { outageMs: -1 } }],
    ['retry.sleepy', { ...valid, retry: { sleepy: 1 } }],
  ];
  for (const [field, options] of table) {
    it(`${field}: ${JSON.stringify(options)}`, () => {
      let error: unknown;
      try {
        createEtcdProvider(options as EtcdProviderOptions);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as InvalidArgumentError).field).toBe(field);
      expect((error as Error).message).toContain(field);
    });
  }

  it('never echoes a password or a certificate in the error', () => {
    expect(() =>
      createEtcdProvider({ ...valid, auth: { username: 'root', password: 9 as unknown as string } }),
    ).toThrow(/not shown/);
  });
});

describe('a server that is down or unreachable gives BackendUnavailableError, never a hang', () => {
  it('a dead port: acquire, tryAcquire, holder and watchHolder all reject promptly, naming the host', async () => {
    const host = `http://127.0.0.1:${await freePort()}`;
    const provider = createEtcdProvider({ hosts: host, callTimeoutMs: CALL_TIMEOUT_MS });
    const calls: Array<() => Promise<unknown>> = [
      () => provider.acquire('down', { waitMs: 60_000 }),
      () => provider.tryAcquire('down'),
      () => provider.holder('down'),
      async () => {
        for await (const _ of provider.watchHolder('down', new AbortController().signal)) break;
      },
    ];
    for (const call of calls) {
      const { error, elapsedMs } = await outcome(call);
      expect(error).toBeInstanceOf(BackendUnavailableError);
      expect((error as BackendUnavailableError).address).toBe(host);
      expect(elapsedMs).toBeLessThan(PROMPTLY_MS);
      // Only what the user can act on: no empty "Resolution note:", no plea to report upstream.
      expect((error as Error).message).toMatch(/no connection: connect ECONNREFUSED 127\.0\.0\.1:\d+$/);
    }
    await provider.close();
  });

  it('a host name that does not resolve rejects BackendUnavailableError promptly', async () => {
    const provider = createEtcdProvider({
      hosts: 'http://dlock-no-such-host.invalid:2379',
      callTimeoutMs: CALL_TIMEOUT_MS,
    });
    const { error, elapsedMs } = await outcome(() => provider.acquire('nowhere', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(elapsedMs).toBeLessThan(PROMPTLY_MS);
    await provider.close();
  });
});

describe('a server that goes away under a held lock', () => {
  let server: EtcdServer;
  beforeAll(async () => {
    server = await startEtcd();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('aborts the lease signal before the session ttl ends; a waiting acquire rides the outage out for retry.outageMs, then rejects; one made during a short outage is granted once etcd is back', async () => {
    const provider = openProvider(server.endpoint, { callTimeoutMs: CALL_TIMEOUT_MS });
    const lease = await provider.acquire('server-dies');
    const firstSession = provider.sessionLeaseId;
    await server.kill();
    const killedAt = performance.now();
    await new Promise<void>((resolve) => lease.signal.addEventListener('abort', () => resolve()));
    // The server could have expired the lease 2 s after the last keepalive it received.
    expect(performance.now() - killedAt).toBeLessThan(2_000);
    // The provider had reached its server: a waiting acquire treats the failures as part of waiting
    // until nothing has answered for retry.outageMs, then names the last cause and the tries.
    const { error, elapsedMs } = await outcome(() => provider.acquire('other', { waitMs: 60_000 }));
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(elapsedMs).toBeGreaterThan(OUTAGE_MS - 500);
    expect(elapsedMs).toBeLessThan(OUTAGE_MS + PROMPTLY_MS);
    expect((error as BackendUnavailableError).tries).toBeGreaterThan(1);
    expect((error as Error).message).toMatch(/gave up after \d+ tries/);

    // A short outage within waitMs is part of waiting: an acquire made while etcd is still down is
    // granted once it is back (a new session serves it).
    const waiting = provider.acquire('server-dies', { waitMs: 15_000 });
    await sleep(1_000);
    await server.restart();
    const next = await waiting;
    expect(provider.sessionLeaseId).not.toBe(firstSession);
    expect(next.token > lease.token).toBe(true);
    await next.release();
    await provider.close();
  });
});
