import { InvalidArgumentError } from '@dlock/core';
import type { ServerKind } from './results.js';

const SERVER_KINDS: readonly ServerKind[] = ['redis', 'zookeeper', 'etcd'];

/** What each server kind's addresses look like on the command line. */
export const ENDPOINT_SHAPES: Record<
  ServerKind,
  { readonly example: string; readonly valid: (address: string) => boolean }
> = {
  redis: {
    example: 'redis=redis://127.0.0.1:6379',
    valid: (address) => urlWith(address, ['redis:', 'rediss:']),
  },
  zookeeper: { example: 'zookeeper=127.0.0.1:2181', valid: (address) => hostAndPort(address) },
  etcd: { example: 'etcd=http://127.0.0.1:2379', valid: (address) => urlWith(address, ['http:', 'https:']) },
};
export const ENDPOINT_FORMS = SERVER_KINDS.map((kind) => ENDPOINT_SHAPES[kind].example).join(' · ');

function validPort(port: string): boolean {
  return /^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65_535;
}

function urlWith(address: string, protocols: readonly string[]): boolean {
  if (!URL.canParse(address)) return false;
  const url = new URL(address);
  return protocols.includes(url.protocol) && url.hostname !== '' && (url.port === '' || validPort(url.port));
}

function hostAndPort(address: string): boolean {
  const match = /^([^\s:/]+|\[[0-9a-fA-F:]+\]):(\d+)$/.exec(address);
  return match !== null && validPort(match[2] as string);
}

/**
 * Throws InvalidArgumentError (field `--endpoints`, the value as given) unless every address has the
 * shape of a `kind` server's address; checked before anything connects. `withKind`: show the example
 * as `kind=address` (compare's form) rather than the bare address (inspect's form).
 */
export function checkAddresses(
  given: string,
  kind: ServerKind,
  addresses: readonly string[],
  withKind = true,
): void {
  const shape = ENDPOINT_SHAPES[kind];
  const bad = addresses.find((address) => !shape.valid(address));
  if (bad !== undefined) {
    const example = withKind ? shape.example : shape.example.slice(kind.length + 1);
    throw new InvalidArgumentError(
      '--endpoints',
      given,
      `${kind} addresses like ${example} (${JSON.stringify(bad)} is not one)`,
    );
  }
}
