export { describeLockProvider, type ConformanceOptions } from './describe.js';
export {
  type ConformanceReport,
  type GuaranteeResult,
  type GuaranteeStatus,
  writeConformanceReport,
} from './report.js';
export { eventually, type HoldInterval, overlappingHolds, sleep } from './timing.js';
export { readConformanceReports, renderSemanticsTable } from './table.js';
