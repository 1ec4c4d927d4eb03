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
export type { Counts, SoakHooks } from './sections/soak.js';
export * from './results.js';
