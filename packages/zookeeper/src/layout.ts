import { InvalidArgumentError } from '@dlock/core';

/**
 * Where locks live in ZooKeeper:
 *
 *   <root>/<encoded key>/_c_<uuid>-lock-<10-digit sequence>
 *
 * One persistent parent per key, one EPHEMERAL_SEQUENTIAL child per contender. The names follow
 * Curator's protected-mode convention so an `InterProcessMutex` on the same parent sorts the children
 * exactly as dlock does — each excludes the other.
 */

/** Curator's `InterProcessMutex` lock name: the sequence number follows it. */
export const LOCK_NAME = 'lock-';
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

/** The path prefix our EPHEMERAL_SEQUENTIAL node is created with; ZooKeeper appends the sequence. */
export function protectedNodePrefix(parent: string, protectedId: string): string {
  return `${parent}/${PROTECTED_PREFIX}${protectedId}-${LOCK_NAME}`;
}

/** Whether the child `name` was created with `protectedId` (the protected-mode lookup after a lost reply). */
export function isProtectedNode(name: string, protectedId: string): boolean {
  return name.startsWith(`${PROTECTED_PREFIX}${protectedId}-${LOCK_NAME}`);
}

/**
 * The lock node layouts dlock recognises: Curator's protected `_c_<uuid>-lock-<seq>` (what dlock and
 * Curator's InterProcessMutex create) and the plain `lock-<seq>` of the classic recipe. The sequence is
 * ZooKeeper's `%010d` of the parent's signed 32-bit
 * child counter.
 */
const LOCK_NODE =
  /^(?:_c_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-)?lock-(?:\d{10}|-\d{9})$/;

/**
 * Whether a child of a lock parent is a contender. Anything else (an operator's `.config`, a tool's
 * `#meta`, a node of another recipe) is not in the queue: if it were, a name that sorts before the
 * sequence digits would be taken as the holder for ever (dlock issue 12).
 */
export function isLockNode(name: string): boolean {
  return LOCK_NODE.test(name);
}

/**
 * The part of a child's name that orders it, as Curator's `StandardLockInternalsDriver.fixForSorting`
 * computes it: the text after the last "lock-".
 */
function sortKey(name: string): string {
  return name.slice(name.lastIndexOf(LOCK_NAME) + LOCK_NAME.length);
}

/** The lock nodes among a lock parent's children, in queue order: the first one holds the lock. */
export function queueOrder(children: readonly string[]): string[] {
  return children
    .filter(isLockNode)
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

/** The root every lock parent lives under. */
export function validateRoot(root: unknown): asserts root is string {
  if (typeof root !== 'string' || !isValidNodePath(root) || /^\/zookeeper(\/|$)/.test(root)) {
    throw new InvalidArgumentError(
      'root',
      root,
      "an absolute ZooKeeper path other than '/' and outside /zookeeper, without empty, '.' or '..' " +
        'segments, a trailing slash, or control, surrogate or private-use characters (e.g. "/dlock")',
    );
  }
}
