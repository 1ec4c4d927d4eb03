import { InvalidArgumentError } from '@dlock/core';

/**
 * Where locks live in ZooKeeper:
 *
 *   <root>/<encoded key>/_c_<uuid>-lock-<10-digit sequence>
 *
 * One persistent parent per key, one EPHEMERAL_SEQUENTIAL child per contender. The names follow
 * Curator's protected-mode convention so an `InterProcessMutex` on the same parent sorts the children
 * exactly as dlock does — each excludes the other. Semaphores and read-write locks use Curator's
 * layouts for them (`InterProcessSemaphoreV2`, `InterProcessReadWriteLock`) under roots of their own,
 * with the same key encoding, protected names and queue order (see semaphore.ts and read-write.ts).
 */

/** Curator's `InterProcessMutex` lock name: the sequence number follows it. */
export const LOCK_NAME = 'lock-';
/** Curator's `InterProcessReadWriteLock` node names (`READ_LOCK_NAME`, `WRITE_LOCK_NAME`). */
export const READ_NAME = '__READ__';
export const WRITE_NAME = '__WRIT__';
/** Curator's `InterProcessSemaphoreV2`: children `locks` (its internal mutex) and `leases` (`lease-<seq>`). */
export const SEMAPHORE_LOCKS = 'locks';
export const SEMAPHORE_LEASES = 'leases';
export const LEASE_NAME = 'lease-';
/** Curator's protected-mode prefix (`CreateBuilderImpl.PROTECTED_PREFIX`). */
const PROTECTED_PREFIX = '_c_';

/** Characters a key keeps as they are; every other UTF-8 byte becomes %XX. */
const KEPT_CHARACTER = /[A-Za-z0-9._:-]/;

/**
 * The node name for `key`. Simple keys (letters, digits, `-`, `_`, `.`, `:`) are used unchanged;
 * any other character — `/`, `%`, spaces, control characters, non-ASCII — is percent-encoded byte by
 * byte (UTF-8, upper-case hex). Because `%` itself is encoded, the mapping is one-to-one: two keys
 * never share a node. `/` is encoded rather than creating hierarchy, so every key is one flat child
 * of the root and its parent can be deleted when empty.
 */
export function encodeKey(key: string): string {
  // `.` and `..` are not legal node names on their own.
  if (key === '.' || key === '..') return key.replaceAll('.', '%2E');
  let name = '';
  for (const character of key) {
    if (KEPT_CHARACTER.test(character)) {
      name += character;
      continue;
    }
    for (const byte of Buffer.from(character, 'utf8')) {
      name += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  }
  return name;
}

/**
 * The key a node name stands for: `encodeKey` undone. Undefined for a name `encodeKey` never produces
 * (a node some other tool put under the root).
 */
export function decodeKey(name: string): string | undefined {
  let key: string;
  try {
    key = decodeURIComponent(name);
  } catch {
    return undefined;
  }
  return encodeKey(key) === name ? key : undefined;
}

/** The persistent parent holding the contenders for `key`. */
export function lockPath(root: string, key: string): string {
  return `${root}/${encodeKey(key)}`;
}

/**
 * The path prefix our EPHEMERAL_SEQUENTIAL node is created with (`name`: the recipe's node name, e.g.
 * `lock-`, `__READ__`, `lease-`); ZooKeeper appends the sequence.
 */
export function protectedNodePrefix(parent: string, protectedId: string, name = LOCK_NAME): string {
  return `${parent}/${PROTECTED_PREFIX}${protectedId}-${name}`;
}

/**
 * Whether the child `name` was created with `protectedId` under the recipe's node name `nodeName` (the
 * protected-mode lookup after a lost reply).
 */
export function isProtectedNode(name: string, protectedId: string, nodeName = LOCK_NAME): boolean {
  return name.startsWith(`${PROTECTED_PREFIX}${protectedId}-${nodeName}`);
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const PROTECTED_ID = new RegExp(`^${PROTECTED_PREFIX}(${UUID})-`);
/** One pattern per list of node names, built once. */
const NODE_PATTERNS = new Map<string, RegExp>();

/**
 * The pattern of a recipe's queue nodes: Curator's protected `_c_<uuid>-<name><seq>` (what dlock and
 * Curator create) or the plain `<name><seq>` of the classic recipes, for each of `names` (`lock-`;
 * `lease-`; `__READ__` and `__WRIT__`). The sequence is ZooKeeper's `%010d` of the parent's signed 32-bit
 * child counter.
 */
function nodePattern(names: readonly string[]): RegExp {
  const id = names.join('\u0000');
  let pattern = NODE_PATTERNS.get(id);
  if (!pattern) {
    const alternatives = names.map((name) => name.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&')).join('|');
    pattern = new RegExp(`^(?:${PROTECTED_PREFIX}${UUID}-)?(?:${alternatives})(?:\\d{10}|-\\d{9})$`);
    NODE_PATTERNS.set(id, pattern);
  }
  return pattern;
}

/**
 * Whether a child of a recipe's parent is one of its contenders (`names`: the node names the recipe
 * creates; a lock's by default). Anything else (an operator's `.config`, a tool's `#meta`, a node of
 * another recipe) is not in the queue: if it were, a name that sorts before the sequence digits would
 * be taken as the holder for ever (dlock issue 12).
 */
export function isLockNode(name: string, names: readonly string[] = [LOCK_NAME]): boolean {
  return nodePattern(names).test(name);
}

/**
 * The part of a contender's name that orders it: its sequence, the text after the last occurrence of
 * its node name, as Curator's `StandardLockInternalsDriver.fixForSorting` computes it (and, for a
 * read-write lock's two names, its `SortingLockInternalsDriver`). Compared as text, as Curator does.
 */
function sortKey(name: string): string {
  return name.slice(-10);
}

/**
 * The contenders among a recipe's children (`names`: the node names it creates; a lock's by default),
 * in queue order: the first one holds a lock.
 */
export function queueOrder(children: readonly string[], names: readonly string[] = [LOCK_NAME]): string[] {
  const pattern = nodePattern(names);
  return children
    .filter((name) => pattern.test(name))
    .map((name) => ({ name, order: sortKey(name) }))
    .sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0))
    .map(({ name }) => name);
}

/**
 * Characters ZooKeeper refuses in a path (`PathUtils.validatePath`): NUL, C0 and C1 controls, DEL,
 * surrogates and the private-use area, and U+FFF0..U+FFFF.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters ZooKeeper refuses.
const FORBIDDEN_PATH_CHARACTER = /[\u0000-\u001f\u007f-\u009f\ud800-\uf8ff\ufff0-\uffff]/;

/** A ZooKeeper absolute path other than `/` (for the root option and a connect string's chroot). */
export function isValidNodePath(path: string): boolean {
  if (!path.startsWith('/') || path === '/' || path.endsWith('/')) return false;
  if (FORBIDDEN_PATH_CHARACTER.test(path)) return false;
  return path
    .slice(1)
    .split('/')
    .every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

/** The root every lock parent (or semaphore, or read-write lock: `field`) lives under. */
export function validateRoot(root: unknown, field = 'root'): asserts root is string {
  if (typeof root !== 'string' || !isValidNodePath(root) || /^\/zookeeper(\/|$)/.test(root)) {
    throw new InvalidArgumentError(
      field,
      root,
      "an absolute ZooKeeper path other than '/' and outside /zookeeper, without empty, '.' or '..' " +
        'segments, a trailing slash, or control, surrogate or private-use characters (e.g. "/dlock")',
    );
  }
}

/**
 * Where a provider's semaphores and read-write locks live unless told otherwise: beside the lock
 * parents, under names no lock key can take (`#` is always percent-encoded in a key), so a lock, a
 * semaphore and a read-write lock with the same name never share a node.
 */
export function primitiveRoots(root: string): { semaphores: string; readWrite: string } {
  return { semaphores: `${root}/#semaphores`, readWrite: `${root}/#rwlocks` };
}

/** A node name some key encodes to (encodeKey's output alphabet). */
const ENCODED_KEY = /^(?:[A-Za-z0-9._:-]|%[0-9A-F]{2})+$/;

/**
 * Throws InvalidArgumentError when two recipes' roots could share a node: the same path, or one
 * inside the other under a name some key encodes to (`<root>/#semaphores` inside `<root>` is fine: `#`
 * is always encoded in a key).
 */
export function validateSeparateRoots(roots: Record<string, string>): void {
  const entries = Object.entries(roots);
  for (const [index, [field, root]] of entries.entries()) {
    for (const [otherField, other] of entries.slice(0, index)) {
      const [outer, inner] = root.length < other.length ? [root, other] : [other, root];
      const below =
        inner === outer ? '' : inner.startsWith(`${outer}/`) ? inner.slice(outer.length + 1) : undefined;
      if (below === undefined) continue;
      const segment = below.split('/')[0] ?? '';
      if (below === '' || ENCODED_KEY.test(segment)) {
        throw new InvalidArgumentError(
          field,
          root,
          `a path apart from ${otherField} (${other}): not the same, and not inside it under a name a key could take ` +
            `(e.g. "${outer}/#${field}")`,
        );
      }
    }
  }
}

/** The protected id in a child's name (`_c_<uuid>-…`), or undefined for a name created without protection. */
export function protectedIdOf(name: string): string | undefined {
  return PROTECTED_ID.exec(name)?.[1];
}
