// The public API of every publishable package, tracked in a checked-in report (api-extractor): the
// DistributedLock practice, where an accidental API change shows up in review. One report per entry
// point of `exports`, at packages/<dir>/api/<name>.api.md, read from the built declarations (dist/).
//
//   node scripts/api-report.mjs            check: fails when a report is out of date (bash scripts/test.sh)
//   node scripts/api-report.mjs --update   rewrite the reports (pnpm api:update builds first, then this)
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CompilerState, Extractor, ExtractorConfig } from '@microsoft/api-extractor';
import { publishablePackages, repoRoot } from './packages.mjs';

const update = process.argv.includes('--update');
const updateCommand = 'pnpm api:update';
const scratch = mkdtempSync(join(tmpdir(), 'dlock-api-'));
const stale = [];
/** Only the declarations are read: the packages' own tsconfigs would pull in their sources and tests. */
const compilerOptions = {
  target: 'ES2022',
  lib: ['ES2022', 'ESNext.Disposable', 'ESNext.AsyncIterable'],
  module: 'NodeNext',
  moduleResolution: 'NodeNext',
  types: ['node'],
  strict: true,
  skipLibCheck: true,
};
const failed = [];

/** One api-extractor configuration per entry point of every publishable package. */
const entries = [];
for (const pkg of publishablePackages()) {
  for (const [subpath, target] of Object.entries(pkg.manifest.exports)) {
    const types = typeof target === 'string' ? undefined : target.types;
    if (!types) {
      failed.push(`${pkg.name} exports "${subpath}" without a "types" condition`);
      continue;
    }
    const suffix = subpath === '.' ? '' : `-${subpath.replace(/^\.\//, '').replaceAll('/', '-')}`;
    const reportFolder = join(pkg.path, 'api');
    const reportFileName = `${pkg.dir}${suffix}.api.md`;
    if (update) mkdirSync(reportFolder, { recursive: true });
    entries.push({
      label: `${pkg.name} (${subpath})`,
      report: relative(repoRoot, join(reportFolder, reportFileName)),
      config: ExtractorConfig.prepare({
        configObject: {
          projectFolder: pkg.path,
          mainEntryPointFilePath: join(pkg.path, types),
          newlineKind: 'lf',
          compiler: { overrideTsconfig: { compilerOptions, files: [join(pkg.path, types)] } },
          apiReport: { enabled: true, reportFolder, reportTempFolder: scratch, reportFileName },
          docModel: { enabled: false },
          dtsRollup: { enabled: false },
          tsdocMetadata: { enabled: false },
          messages: {
            // Findings (an exported type that is not exported by name, …) go into the report, where
            // review sees them; they do not fail the check. TSDoc syntax is not enforced.
            compilerMessageReporting: { default: { logLevel: 'error' } },
            extractorMessageReporting: {
              default: { logLevel: 'none', addToApiReportFile: true },
              'ae-missing-release-tag': { logLevel: 'none', addToApiReportFile: false },
              'ae-undocumented': { logLevel: 'none', addToApiReportFile: false },
            },
            tsdocMessageReporting: { default: { logLevel: 'none' } },
          },
        },
        configObjectFullPath: undefined,
        packageJsonFullPath: join(pkg.path, 'package.json'),
      }),
    });
  }
}

try {
  // One TypeScript program over every entry point, shared by all the reports: parsing @types/node and
  // the declarations once instead of once per package is most of the check's time.
  const compilerState = CompilerState.create(entries[0].config, {
    additionalEntryPoints: entries.map((entry) => entry.config.mainEntryPointFilePath),
  });
  for (const entry of entries) {
    const result = Extractor.invoke(entry.config, {
      localBuild: update,
      compilerState,
      messageCallback: (message) => {
        // api-extractor's own texts name its scratch folder and the TypeScript it bundles; ours says
        // which command updates a report.
        if (message.messageId.startsWith('console-')) message.handled = true;
      },
    });
    if (result.errorCount > 0) failed.push(`${entry.label}: api-extractor reported errors`);
    else if (result.apiReportChanged) {
      if (update) console.log(`api-report: updated ${entry.report}`);
      else stale.push(entry.report);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

if (failed.length > 0) {
  console.error(`api-report: ${failed.join('\n  ')}`);
  process.exit(1);
}
if (stale.length > 0) {
  console.error(
    [
      'api-report: the public API changed, and these reports do not show it yet:',
      ...stale.map((report) => `  ${report}`),
      `Run \`${updateCommand}\` (it builds, then rewrites the reports), review the diff and commit it.`,
    ].join('\n'),
  );
  process.exit(1);
}
if (!update) console.log('api-report: every public API matches its report');
