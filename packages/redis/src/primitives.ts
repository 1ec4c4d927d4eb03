/**
 * The semaphore and read-write building blocks shared with @dlock/redlock, which runs the same scripts
 * on each of its nodes (one copy of each script), and the waiting line's Lua (QUEUE_PRELUDE), which
 * @dlock/redlock's lock scripts put before their own on each node (issue 13). Exported as
 * `@dlock/redis/primitives`; not part of the provider API, and it may change with @dlock/redis.
 */
export {
  type PermitEntry,
  type PermitLayout,
  type PermitPrimitive,
  WRITE_PERMITS,
  decodePermitEntry,
  permitKeys,
  permitLayout,
} from './permit-layout.js';
export {
  permitAcquireScript,
  permitExtendScript,
  permitHoldersScript,
  permitLeaveScript,
} from './permit-scripts.js';
export {
  PERMIT_BUSY,
  PERMIT_GRANTED,
  PERMIT_LIMIT_MISMATCH,
  PLACE_REFRESH_MS,
  type PermitAsk,
  decodeHolders,
  newPermitOwner,
  permitAcquireArgs,
} from './permits.js';
export { PLACE_MS, QUEUE_PRELUDE } from './queue-lua.js';
export { readWriteAsk, readWriteMode } from './read-write.js';
export { type LuaScript, runScript } from './scripts.js';
