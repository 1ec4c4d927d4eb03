// The vitest-free part of the kit: report files, the semantics table and the overlap checker, for
// tools (the lab, scripts) that run outside vitest — importing vitest there throws.
export {
  type ConformanceReport,
  type GuaranteeResult,
  type GuaranteeStatus,
  writeConformanceReport,
} from './report.js';
export {
  readConformanceReports,
  renderSemanticsTable,
  SEMANTICS_SECTIONS,
  type SemanticsGroup,
  semanticsGroups,
} from './table.js';
export { eventually, type HoldInterval, overlappingHolds, sleep } from './timing.js';
