// Ready to publish: every publishable package is packed as `pnpm publish` would pack it, then
//  - publint (strict) lints the tarball: exports, files, formats;
//  - "are the types wrong" (@arethetypeswrong/core, the engine of @arethetypeswrong/cli) resolves every
//    entry point as TypeScript does under node16 from ESM, node16 from CommonJS and bundler;
//  - a CommonJS process require()s every entry point (Node's require(esm), unflagged since 20.19).
// Runs in bash scripts/test.sh after the build. Reproduce one package's attw table with
//   pnpm exec attw --pack packages/<dir> --profile node16 --ignore-rules cjs-resolves-to-esm
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPackage, createPackageFromTarballData } from '@arethetypeswrong/core';
import { problemKindInfo } from '@arethetypeswrong/core/problems';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { publishablePackages, repoRoot } from './packages.mjs';

/**
 * Entry points that cannot be require()d, with the reason; the check insists they still fail that
 * way, so an entry here cannot outlive its cause. The root README ("Publishing and API") lists them.
 */
const esmOnly = {
  '@dlock/lab': {
    code: 'ERR_REQUIRE_ASYNC_MODULE',
    why: 'its report renderer imports vega, whose vega-canvas loads node-canvas with a top-level await (the dlock CLI is unaffected)',
  },
};

const packages = publishablePackages();
const scratch = mkdtempSync(join(tmpdir(), 'dlock-pack-'));
const failures = [];

try {
  // One pnpm process packs them all (workspace: ranges become versions, as on publish).
  const packed = spawnSync(
    'pnpm',
    [
      '-r',
      ...packages.flatMap((pkg) => ['--filter', pkg.name]),
      'pack',
      '--pack-destination',
      scratch,
      '--json',
    ],
    { cwd: repoRoot, encoding: 'utf8' },
  );
  if (packed.status !== 0) throw new Error(`pnpm pack failed:\n${packed.stderr}`);
  const tarballs = new Map(JSON.parse(packed.stdout).map((entry) => [entry.name, entry.filename]));

  for (const pkg of packages) {
    const tarball = tarballs.get(pkg.name);
    if (!tarball) {
      failures.push(`${pkg.name}: not packed`);
      continue;
    }
    const data = readFileSync(tarball);

    const lint = await publint({
      pack: { tarball: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) },
      strict: true,
    });
    for (const message of lint.messages) {
      const text = `${pkg.name}: publint ${message.type}: ${formatMessage(message, lint.pkg) ?? message.code}`;
      if (message.type === 'suggestion') console.log(text);
      else failures.push(text);
    }

    const analysis = await checkPackage(createPackageFromTarballData(new Uint8Array(data)));
    if (!analysis.types) {
      failures.push(`${pkg.name}: attw found no types`);
      continue;
    }
    for (const problem of analysis.problems) {
      // The node16 profile: TypeScript's node10 resolution (moduleResolution "node") cannot see
      // subpath exports and is not supported.
      if ('resolutionKind' in problem && problem.resolutionKind === 'node10') continue;
      // attw does not model require(esm) yet (arethetypeswrong.github.io issue #252): it reports every
      // ESM-only package as CJSResolvesToESM from CommonJS. The require() below checks it for real.
      if (problem.kind === 'CJSResolvesToESM') continue;
      const where = [problem.entrypoint, problem.resolutionKind].filter(Boolean).join(', ');
      failures.push(
        `${pkg.name}: attw ${problem.kind} (${where}): ${problemKindInfo[problem.kind].description}`,
      );
    }
  }

  // A CommonJS consumer: require() every entry point, through each package's own exports map (a
  // package can require itself by name), in one plain Node process. An entry point that fails is
  // also import()ed: one that cannot load outside its host (the conformance kit needs vitest's
  // runner) fails from ESM too, and that is no CommonJS problem.
  const specifiers = packages.flatMap((pkg) =>
    Object.keys(pkg.manifest.exports).map((subpath) => ({
      from: join(pkg.path, 'package.json'),
      specifier: pkg.name + subpath.slice(1),
    })),
  );
  const consumer = `
    const { createRequire } = require('node:module');
    const { pathToFileURL } = require('node:url');
    const describe = (error) => (error.code ? error.code + ' ' : '') + String(error.message).split('\\n')[0];
    (async () => {
      for (const { from, specifier } of ${JSON.stringify(specifiers)}) {
        const requireFrom = createRequire(from);
        let failure;
        try {
          const loaded = requireFrom(specifier);
          if (Object.keys(loaded).length === 0) throw new Error('loaded with no exports');
        } catch (error) {
          failure = { code: error.code, message: describe(error) };
          const viaImport = await import(pathToFileURL(requireFrom.resolve(specifier)).href).then(
            () => undefined,
            (importError) => describe(importError),
          );
          failure.failsFromEsmToo = viaImport === failure.message;
        }
        console.log(JSON.stringify({ specifier, failure }));
      }
    })();`;
  const required = spawnSync(process.execPath, ['--input-type=commonjs', '-e', consumer], {
    encoding: 'utf8',
  });
  for (const line of required.stdout.split('\n').filter(Boolean)) {
    const { specifier, failure } = JSON.parse(line);
    const exception = esmOnly[specifier];
    if (exception) {
      if (failure?.code === exception.code) {
        console.log(`check-publish: ${specifier} loads with import() only, as declared: ${exception.why}`);
      } else {
        failures.push(
          `${specifier} is declared import()-only (${exception.code}) but ${failure ? `fails with ${failure.message}` : 'now loads from CommonJS: remove it from esmOnly in scripts/check-publish.mjs and from the README'}`,
        );
      }
    } else if (failure?.failsFromEsmToo) {
      console.log(
        `check-publish: require() not checked for ${specifier}: ${failure.message} (fails from ESM too)`,
      );
    } else if (failure) {
      failures.push(`require() from CommonJS: ${specifier}: ${failure.message}`);
    }
  }
  if (required.status !== 0 || required.stderr.trim() !== '') {
    failures.push(`require() from CommonJS: exit ${required.status}\n${required.stderr}`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

if (failures.length > 0) {
  console.error(`check-publish: ${failures.length} problem(s)\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(`check-publish: ${packages.length} packages pass publint, attw (node16 profile) and require()`);
