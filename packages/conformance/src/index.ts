export { describeLockProvider, type ConformanceOptions } from './describe.js';
export * from './results.js';
