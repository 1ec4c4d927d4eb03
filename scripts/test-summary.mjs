// The closing line of the test command: what every package's vitest run counted.
//   node scripts/test-summary.mjs [results-dir]      (from the workspace root; default .dlock/test-results)
// Each workspace package with a `test` script writes vitest's JSON report, with the errors no test owns
// added by scripts/vitest-json-reporter.mjs, to <results-dir>/<package directory name>.json
// (`--reporter=../../scripts/vitest-json-reporter.mjs --outputFile.json=...` in that script). Counting
// from those reports, not from the console, keeps the count right whether or not vitest colours its
// output (under CI=true it does, even into a pipe). Exits 1 when a package left no report (its vitest
// crashed or never ran), when a report cannot be read, or when one shows a failed test, a test file that
// failed to run, an error outside any test, or no test file at all.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join, relative } from 'node:path';

const resultsDir = process.argv[2] ?? '.dlock/test-results';
const kinds = ['passed', 'failed', 'skipped', 'todo'];
/** vitest's per-test statuses; 'pending' is a test that never ran to an outcome. */
const kindOfStatus = {
  passed: 'passed',
  failed: 'failed',
  skipped: 'skipped',
  pending: 'skipped',
  todo: 'todo',
};
const listedFailures = 5;

/** The workspace's package directories, from pnpm-workspace.yaml (entries `dir` and `dir/*`). */
function workspacePackages() {
  const manifest = readFileSync('pnpm-workspace.yaml', 'utf8');
  const entries = [...manifest.matchAll(/^\s*-\s*['"]?([^'"#\s]+)['"]?\s*(?:#.*)?$/gm)].map((m) => m[1]);
  return entries.flatMap((entry) => {
    if (!entry.endsWith('/*')) return [entry];
    if (/[*!?{[]/.test(entry.slice(0, -2))) {
      throw new Error(`pnpm-workspace.yaml: "${entry}" is not supported here (use "dir" or "dir/*")`);
    }
    const parent = entry.slice(0, -2);
    return readdirSync(parent, { withFileTypes: true })
      .filter((item) => item.isDirectory())
      .map((item) => join(parent, item.name))
      .sort();
  });
}

const hasTestScript = (dir) => {
  const manifest = join(dir, 'package.json');
  return existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).scripts?.test !== undefined;
};

/** What one package's report says: counts by kind (none without a readable report), and why it failed. */
function readReport(dir) {
  const file = join(resultsDir, `${basename(dir)}.json`);
  const counts = Object.fromEntries(kinds.map((kind) => [kind, 0]));
  if (!existsSync(file)) {
    return { counts: undefined, problems: [`no report at ${file}: its vitest crashed or did not run`] };
  }
  let report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    return { counts: undefined, problems: [`unreadable report ${file}: ${error.message}`] };
  }
  const problems = [];
  if (!Array.isArray(report.runErrors)) {
    problems.push(`${file} has no runErrors: the test script must use scripts/vitest-json-reporter.mjs`);
  }
  for (const error of report.runErrors ?? []) problems.push(`error outside any test: ${error}`);
  const files = report.testResults ?? [];
  if (files.length === 0) problems.push('no test file ran');
  for (const testFile of files) {
    const where = relative(dir, testFile.name);
    const failed = testFile.assertionResults.filter((test) => test.status === 'failed');
    for (const test of testFile.assertionResults) counts[kindOfStatus[test.status] ?? 'skipped'] += 1;
    for (const test of failed) problems.push(`failed: ${where} > ${test.fullName}`);
    // A file that did not load, or whose hook threw, fails without any failed test in it.
    if (testFile.status === 'failed' && failed.length === 0) {
      problems.push(`file failed: ${where}: ${testFile.message.split('\n')[0]}`);
    }
  }
  return { counts, problems };
}

const totals = Object.fromEntries(kinds.map((kind) => [kind, 0]));
const failing = [];
const packages = workspacePackages().filter(hasTestScript);
if (packages.length === 0) failing.push('(no package has a test script)');
const width = Math.max(0, ...packages.map((dir) => dir.length));
const describeCounts = (counts) => kinds.map((kind) => `${counts[kind]} ${kind}`).join(', ');
for (const dir of packages) {
  const { counts, problems } = readReport(dir);
  for (const kind of kinds) totals[kind] += counts?.[kind] ?? 0;
  const outcome = [counts && describeCounts(counts), problems.length > 0 && 'FAILED'].filter(Boolean);
  console.log(`${dir.padEnd(width)}  ${outcome.join('  ')}`);
  for (const problem of problems.slice(0, listedFailures)) console.log(`${' '.repeat(width)}    ${problem}`);
  if (problems.length > listedFailures) {
    console.log(`${' '.repeat(width)}    ... and ${problems.length - listedFailures} more`);
  }
  if (problems.length > 0) failing.push(dir);
}
const verdict = failing.length > 0 ? `; FAILED: ${failing.join(', ')}` : '';
console.log(`tests: ${describeCounts(totals)} in ${packages.length} packages${verdict}`);
process.exit(failing.length > 0 ? 1 : 0);
