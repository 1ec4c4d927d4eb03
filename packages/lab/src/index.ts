export { SafetyChecker, type ResourceEvent, type ResourceVersions } from './checker.js';
export { compare, type CompareOptions, parseCompareOptions } from './compare.js';
export { discoverBackends, type Discovery, type LabBackend } from './discovery.js';
export { faultScenarios } from './faults/index.js';
export type { FaultScenario, ScenarioContext, ScenarioOutcome } from './faults/scenario.js';
export { readResultsJson } from './report/json.js';
export { renderMarkdownReport, renderReadmeTable } from './report/markdown.js';
export { buildReportDocument, type Block, type ReportDocument } from './report/document.js';
export { figureKinds, type FigureKind, type FigureSection } from './report/figures/index.js';
export { glossary, type GlossaryEntry } from './report/glossary.js';
export { renderHtmlReport } from './report/html.js';
export {
  checkConsistency,
  type JsonSchema,
  loadResultsSchema,
  validateAgainstSchema,
  validateResults,
} from './report/validate.js';
export { SharedResource } from './resource.js';
export * from './results.js';
