import type { IKeyValue } from 'etcd3';

/*
 * The key layout of Go's client/v3/concurrency, which `etcdctl lock` and `etcdctl elect` use:
 *
 *   <namespace><name>/<session lease id in lowercase hex>
 *
 * Every contender for `name` puts one key under the prefix `<namespace><name>/`, attached to its
 * session lease. The owner (or leader) is the key with the lowest create revision; the others wait
 * in create-revision order. Because ownership is decided over the whole prefix, `name` and
 * `name/child` share a queue, exactly as they do in Go.
 */

/** Go's `pfx` for a mutex or election: `<namespace><name>/`. */
export function queuePrefix(namespace: string, name: string): string {
  return `${namespace}${name}/`;
}

/**
 * Go's `fmt.Sprintf("%s%x", pfx, lease)`. Go lets two requests of one session share that key (and so
 * both believe they own it); here a second concurrent request of the same session on the same name
 * gets `-<n>` appended instead, which Go contenders still order correctly, since they compare only
 * create revisions under the prefix.
 */
export function entryKey(prefix: string, leaseHex: string, ordinal: number): string {
  return ordinal === 0 ? `${prefix}${leaseHex}` : `${prefix}${leaseHex}-${ordinal}`;
}

/** etcd returns int64s as decimal strings; lease ids exceed 2^53, so they never pass through Number. */
export function leaseHex(leaseId: string): string {
  return BigInt(leaseId).toString(16);
}

/**
 * Who a queue entry belongs to: dlock stores the holder's identity as the value; Go's Mutex and
 * `etcdctl lock` store an empty value, so the entry's key (which names the session lease) stands in.
 */
export function entryIdentity(kv: IKeyValue): string {
  const value = kv.value.toString('utf8');
  return value === '' ? kv.key.toString('utf8') : value;
}
