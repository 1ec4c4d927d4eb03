export { describeLockProvider } from './describe.js';
export type {
  ConformanceOptions,
  Guarantee,
  KitContext,
  NetworkFaults,
  NetworkHooks,
  ResidueKind,
  Section,
} from './kit.js';
export * from './results.js';
