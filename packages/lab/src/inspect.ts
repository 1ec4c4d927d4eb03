import { parseArgs } from 'node:util';
import {
  type HolderInfo,
  InvalidArgumentError,
  type KeyInspection,
  type LockProvider,
  MAX_SEMAPHORE_LIMIT,
  type PermitHolder,
  type QueuedWaiter,
  type ReadWriteHolder,
  UnsupportedError,
} from '@dlock/core';
import { type LabBackend, discoverBackends } from './discovery.js';
import { checkAddresses } from './endpoints.js';

/**
 * `dlock inspect` and `dlock watch` (issue 17): read-only views of who holds a key, built on the
 * provider's `holder()`, `watchHolder()`, the optional `inspect()` / `heldKeys()`, and the primitives'
 * `holders()`. Nothing here takes, extends or releases a lock: a forced release is out of scope.
 */

export const INSPECT_USAGE = `dlock inspect <key> --backend <name> --endpoints <a,b> [options]
                          who holds <key>: identity, fencing token, time left (ttl backends) or
                          session (ZooKeeper, etcd), and the waiters in line where the backend has a queue
  --kind <lock|semaphore|read-write>  which primitive <key> names (default lock): a semaphore's or a
                          read-write lock's holders with their permits or modes
dlock inspect --prefix <p> --backend <name> --endpoints <a,b> [options]
                          the held lock keys starting with <p>, each with its holder
dlock watch <key> --backend <name> --endpoints <a,b> [options]
                          holder changes as they happen (backends that push them), until Ctrl-C
  --max-events <n>        watch: stop after n events (the first is the holder at the start)
  --backend <name>        redis, redlock, zookeeper, etcd (every discovered backend package)
  --endpoints <a,b>       the backend's servers: redis://host:port (redis; redlock: one per node),
                          host:port (zookeeper), http://host:port (etcd)
  --connect-timeout-ms <ms>  bound on connecting and on each call (default 3000): a server that is
                          down gives a clear error within it
  --json                  one JSON document (inspect) or one JSON line per change (watch)`;

const KINDS = ['lock', 'semaphore', 'read-write'] as const;
type Kind = (typeof KINDS)[number];
const DEFAULT_CONNECT_TIMEOUT_MS = 3_000;
const IDENTITY = 'dlock-inspect';

interface Target {
  readonly backend: LabBackend;
  readonly endpoints: string[];
  readonly connectTimeoutMs: number;
  readonly json: boolean;
}

/**
 * Why a lock shows no queue, from what the backend declares. (A backend may keep a line it does not
 * report: Redis keeps one per lock, RedLock one per node, holding request owners, not identities.)
 */
function noQueueReason(provider: LockProvider): string {
  return provider.capabilities.fairness === 'none'
    ? 'its driver does not report waiters, and it promises them no order'
    : 'its driver does not report waiters';
}

/** Why a backend without `heldKeys` cannot list; a backend not named here gets a generic reason. */
const NO_LISTING: Record<string, string> = {
  redlock:
    'a key is held only where a majority of independent nodes agree, so a listing would need a quorum ' +
    'read of every key found on any node',
};

async function parseTarget(values: {
  backend?: string;
  endpoints?: string;
  'connect-timeout-ms'?: string;
  json?: boolean;
}): Promise<Target> {
  const { backends } = await discoverBackends();
  const usable = backends.filter((candidate) => candidate.origin === 'package');
  const names = usable.map((candidate) => candidate.name).join(', ');
  const backend = usable.find((candidate) => candidate.name === values.backend);
  if (!backend) throw new InvalidArgumentError('--backend', values.backend, names);
  const kind = backend.placement as 'redis' | 'zookeeper' | 'etcd';
  const endpoints = (values.endpoints ?? '')
    .split(',')
    .map((address) => address.trim())
    .filter((address) => address !== '');
  if (endpoints.length === 0) {
    throw new InvalidArgumentError(
      '--endpoints',
      values.endpoints,
      `the ${backend.name} servers' addresses, comma-separated (${backend.serverCount} expected by default)`,
    );
  }
  checkAddresses(values.endpoints as string, kind, endpoints, false);
  const connectTimeoutMs =
    values['connect-timeout-ms'] === undefined
      ? DEFAULT_CONNECT_TIMEOUT_MS
      : Number(values['connect-timeout-ms']);
  if (!Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 100 || connectTimeoutMs > 600_000) {
    throw new InvalidArgumentError(
      '--connect-timeout-ms',
      values['connect-timeout-ms'],
      'an integer 100..600000',
    );
  }
  return { backend, endpoints, connectTimeoutMs, json: values.json ?? false };
}

const COMMON_OPTIONS = {
  backend: { type: 'string' },
  endpoints: { type: 'string' },
  'connect-timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
} as const;

async function withProvider<T>(target: Target, use: (provider: LockProvider) => Promise<T>): Promise<T> {
  const provider = await target.backend
    .createProvider(target.endpoints, { identity: IDENTITY, connectTimeoutMs: target.connectTimeoutMs })
    .catch((error: unknown) => {
      // The backend's own field (urls, connectString) is the command line's --endpoints.
      if (!(error instanceof InvalidArgumentError)) throw error;
      throw new InvalidArgumentError(
        '--endpoints',
        target.endpoints.join(','),
        `what ${target.backend.name} accepts (${error.message})`,
      );
    });
  try {
    return await use(provider);
  } finally {
    await provider.close();
  }
}

/** A fencing token as a string; null on a backend without fencing (RedLock's tokens are all 0). */
const tokenOf = (provider: LockProvider, token: bigint): string | null =>
  provider.capabilities.fencing === 'none' ? null : token.toString();
const tokenText = (token: string | null) => token ?? 'none (this backend has no fencing)';
const holderJson = (provider: LockProvider, holder: HolderInfo | null) =>
  holder && { identity: holder.identity, token: tokenOf(provider, holder.token) };
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The holder and what the backend says beside it; fields it cannot report stay absent. */
async function readLock(provider: LockProvider, key: string): Promise<KeyInspection> {
  return provider.inspect ? provider.inspect(key) : { holder: await provider.holder(key) };
}

function lockDocument(provider: LockProvider, target: Target, key: string, found: KeyInspection) {
  const ttl = provider.capabilities.expiry === 'ttl';
  return {
    backend: provider.backend,
    endpoints: target.endpoints,
    kind: 'lock' as const,
    key,
    holder: holderJson(provider, found.holder),
    expiry: provider.capabilities.expiry,
    ttlLeftMs: found.ttlLeftMs ?? null,
    session: found.session ?? null,
    waiters: found.waiters?.map((waiter) => ({ ...waiter })) ?? null,
    notes: [
      ...(found.holder && ttl && found.ttlLeftMs === undefined
        ? [`time left: not reported by ${provider.backend}`]
        : []),
      ...(found.waiters === undefined
        ? [`queue: not visible on ${provider.backend} (${noQueueReason(provider)})`]
        : []),
    ],
  };
}

function waiterLine(waiter: QueuedWaiter, index: number): string {
  return `  ${index + 1}. ${waiter.identity}${waiter.session ? `  (session ${waiter.session})` : ''}`;
}

function lockText(document: ReturnType<typeof lockDocument>): string {
  const lines = [`lock "${document.key}" on ${document.backend} (${document.endpoints.join(', ')})`];
  if (document.holder === null) lines.push('holder    none (free)');
  else {
    lines.push(`holder    ${document.holder.identity}`, `token     ${tokenText(document.holder.token)}`);
    if (document.ttlLeftMs !== null) lines.push(`time left ${seconds(document.ttlLeftMs)} (server clock)`);
    if (document.session !== null) lines.push(`session   ${document.session}`);
  }
  if (document.waiters !== null) {
    lines.push(`queue     ${document.waiters.length} waiting`);
    lines.push(...document.waiters.map(waiterLine));
  }
  lines.push(...document.notes);
  return lines.join('\n');
}

type PrimitiveHolder = (PermitHolder | ReadWriteHolder) & { permits?: number; mode?: string };

function primitiveDocument(
  provider: LockProvider,
  target: Target,
  kind: Kind,
  key: string,
  holders: PrimitiveHolder[],
) {
  return {
    backend: provider.backend,
    endpoints: target.endpoints,
    kind,
    key,
    holders: holders.map((holder) => ({
      identity: holder.identity,
      token: tokenOf(provider, holder.token),
      ...(holder.permits !== undefined ? { permits: holder.permits } : {}),
      ...(holder.mode !== undefined ? { mode: holder.mode } : {}),
    })),
    notes: [`queue: not visible on ${provider.backend} (no driver operation reads a ${kind}'s queue)`],
  };
}

function primitiveText(document: ReturnType<typeof primitiveDocument>): string {
  const lines = [
    `${document.kind} "${document.key}" on ${document.backend} (${document.endpoints.join(', ')})`,
  ];
  const permits = document.holders.reduce((sum, holder) => sum + (holder.permits ?? 0), 0);
  lines.push(
    `holders   ${document.holders.length}${document.kind === 'semaphore' ? ` (${permits} permits)` : ''}`,
  );
  for (const holder of document.holders) {
    const what = holder.permits !== undefined ? `permits ${holder.permits}` : `mode ${holder.mode}`;
    lines.push(`  token ${tokenText(holder.token)}  ${what}  ${holder.identity}`);
  }
  lines.push(...document.notes);
  return lines.join('\n');
}

async function readPrimitive(provider: LockProvider, kind: Kind, key: string): Promise<PrimitiveHolder[]> {
  // holders() only reads; the limit given here is never stored.
  if (kind === 'semaphore') return provider.semaphore(key, { limit: MAX_SEMAPHORE_LIMIT }).holders();
  return provider.readWriteLock(key).holders();
}

async function listPrefix(provider: LockProvider, target: Target, prefix: string) {
  if (!provider.heldKeys) {
    throw new UnsupportedError(
      provider.backend,
      'listing held keys',
      NO_LISTING[provider.backend] ?? 'its driver cannot list keys',
    );
  }
  const keys = await provider.heldKeys(prefix);
  const held = [];
  for (const key of keys) {
    const found = await readLock(provider, key);
    // Freed between the listing and this read: a snapshot, not a lock.
    if (found.holder) held.push(lockDocument(provider, target, key, found));
  }
  return {
    backend: provider.backend,
    endpoints: target.endpoints,
    prefix,
    held: held.map(({ key, holder, ttlLeftMs, session, waiters }) => ({
      key,
      holder,
      ttlLeftMs,
      session,
      waiting: waiters?.length ?? null,
    })),
  };
}

function prefixText(document: Awaited<ReturnType<typeof listPrefix>>): string {
  const lines = [
    `held keys under "${document.prefix}" on ${document.backend} (${document.endpoints.join(', ')}): ${document.held.length}`,
  ];
  for (const entry of document.held) {
    const extra = [
      entry.ttlLeftMs !== null ? `time left ${seconds(entry.ttlLeftMs)}` : '',
      entry.session !== null ? `session ${entry.session}` : '',
      entry.waiting !== null ? `${entry.waiting} waiting` : '',
    ].filter((part) => part !== '');
    lines.push(
      `  ${entry.key}  ${entry.holder?.identity}  token ${tokenText(entry.holder?.token ?? null)}${extra.length > 0 ? `  ${extra.join('  ')}` : ''}`,
    );
  }
  return lines.join('\n');
}

const stringify = (value: unknown) => JSON.stringify(value);

/** Where the commands write their report: stdout, or a test's collector. */
export type Print = (text: string) => void;

/** `dlock inspect`: prints one report (or one JSON document) and returns the exit code. */
export async function runInspect(argv: string[], print: Print = console.log): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { ...COMMON_OPTIONS, kind: { type: 'string' }, prefix: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  const kind = (values.kind ?? 'lock') as Kind;
  if (!KINDS.includes(kind)) throw new InvalidArgumentError('--kind', values.kind, KINDS.join(', '));
  const prefix = values.prefix;
  if (prefix !== undefined ? positionals.length > 0 : positionals.length !== 1) {
    throw new InvalidArgumentError('inspect', positionals.join(' '), 'one key, or --prefix <p> and no key');
  }
  if (prefix !== undefined && kind !== 'lock') {
    throw new InvalidArgumentError('--kind', kind, 'lock with --prefix (listing covers lock keys)');
  }
  const target = await parseTarget(values);
  const output = await withProvider(target, async (provider) => {
    if (prefix !== undefined) {
      const document = await listPrefix(provider, target, prefix);
      return target.json ? stringify(document) : prefixText(document);
    }
    const key = positionals[0] as string;
    if (kind === 'lock') {
      const document = lockDocument(provider, target, key, await readLock(provider, key));
      return target.json ? stringify(document) : lockText(document);
    }
    const document = primitiveDocument(provider, target, kind, key, await readPrimitive(provider, kind, key));
    return target.json ? stringify(document) : primitiveText(document);
  });
  print(output);
  return 0;
}

/**
 * `dlock watch`: one line (or JSON line) per holder change it observes (close changes coalesce, see
 * LockProvider.watchHolder), from the provider's `watchHolder()`, until
 * SIGINT / SIGTERM or `stop` (exit 0), or `--max-events`. A backend that cannot push gets
 * UnsupportedError; a backend that stops answering, BackendUnavailableError.
 */
export async function runWatch(
  argv: string[],
  print: Print = console.log,
  stop: AbortSignal = new AbortController().signal,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { ...COMMON_OPTIONS, 'max-events': { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) throw new InvalidArgumentError('watch', positionals.join(' '), 'one key');
  const maxEvents =
    values['max-events'] === undefined ? Number.POSITIVE_INFINITY : Number(values['max-events']);
  if (!(maxEvents === Number.POSITIVE_INFINITY || (Number.isInteger(maxEvents) && maxEvents >= 1))) {
    throw new InvalidArgumentError('--max-events', values['max-events'], 'an integer >= 1');
  }
  const key = positionals[0] as string;
  const target = await parseTarget(values);
  return withProvider(target, async (provider) => {
    if (!provider.watchHolder) {
      throw new UnsupportedError(
        provider.backend,
        'watching holder changes',
        `it cannot push them; read the holder now with \`dlock inspect ${key}\``,
      );
    }
    const watching = new AbortController();
    const onSignal = () => watching.abort(new Error('interrupted'));
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const signal = AbortSignal.any([watching.signal, stop]);
    try {
      let events = 0;
      for await (const holder of provider.watchHolder(key, signal)) {
        const at = new Date().toISOString();
        print(
          target.json
            ? stringify({ at, backend: provider.backend, key, holder: holderJson(provider, holder) })
            : `${at}  ${holder ? `holder ${holder.identity}  token ${tokenText(tokenOf(provider, holder.token))}` : 'free'}`,
        );
        if (++events >= maxEvents) break;
      }
      return 0;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  });
}
