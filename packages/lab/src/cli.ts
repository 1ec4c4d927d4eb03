#!/usr/bin/env node
import { writeFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InvalidArgumentError, UnsupportedError } from '@dlock/core';
import { stopAll } from '@dlock/testkit';
import { COMPARE_USAGE, compare, parseCompareOptions, planCompare, reportPaths } from './compare.js';
import { INSPECT_USAGE, runInspect, runWatch } from './inspect.js';
import { DLOCK_COMMAND } from './paths.js';
import { Progress } from './progress.js';
import { renderHtmlReport } from './report/html.js';
import { readResultsJson, renderResultsJson } from './report/json.js';
import { renderMarkdownReport, renderReadmeTable, textTable, verdictLine } from './report/markdown.js';
import { overviewTable } from './report/tables.js';
import type { Results, ServerKind } from './results.js';
import { serversDown, serversUp } from './servers.js';

const USAGE = `dlock — compare distributed lock backends on this machine
(from the repository: \`${DLOCK_COMMAND} <command>\`)

${COMPARE_USAGE}

${INSPECT_USAGE}

dlock servers up [--kinds redis,zookeeper,etcd]   start a local playground; prints addresses, runs until Ctrl-C
dlock servers down                                stop the playground started by \`servers up\`
dlock report <results.json> [--out dir]           render index.html and report.md again from a compare run
dlock readme-table <results.json>                 print the README comparison table from a compare run
dlock help                                        this text

exit codes: 0 every claimed guarantee held · 1 a backend violated a guarantee it claims ·
            2 bad usage · 3 part of the run could not complete · 130 interrupted
            inspect, watch: 0 answered (watch: stopped by Ctrl-C or --max-events) · 2 bad usage, or
            an operation the backend does not support · 3 the backend did not answer`;

async function writeReports(
  results: Results,
  out: string,
  progress: Progress,
): Promise<ReturnType<typeof reportPaths>> {
  const paths = reportPaths(out);
  const html = await renderHtmlReport(results, (chart, error) =>
    progress.note(
      `chart "${chart.title}" could not be rendered: ${error instanceof Error ? error.message : error}`,
    ),
  );
  writeFileSync(paths.json, renderResultsJson(results));
  writeFileSync(paths.markdown, renderMarkdownReport(results));
  writeFileSync(paths.html, html);
  return paths;
}

async function runCompare(argv: string[]): Promise<number> {
  const options = parseCompareOptions(argv);
  if (options.dryRun) {
    console.log(await planCompare(options));
    return 0;
  }
  const progress = new Progress();
  const interrupted = new AbortController();
  let interrupts = 0;
  const onInterrupt = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    progress.note('interrupted: stopping servers and contenders…');
    interrupted.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onInterrupt);
  process.on('SIGTERM', onInterrupt);
  try {
    const results = await compare(options, interrupted.signal, progress);
    const paths = await writeReports(results, options.out, progress);
    if (options.json) {
      process.stdout.write(renderResultsJson(results));
    } else {
      const where = relative(process.cwd(), paths.dir) || '.';
      console.log(`\n${textTable(overviewTable(results))}\n\n${verdictLine(results)}`);
      console.log(`\nreport: ${where}/index.html (also ${where}/report.md, ${where}/results.json)`);
    }
    return results.verdict.exitCode;
  } catch (error) {
    if (interrupted.signal.aborted) return 130;
    throw error;
  } finally {
    await stopAll();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'compare':
      return runCompare(rest);
    case 'inspect':
      return runInspect(rest);
    case 'watch':
      return runWatch(rest);
    case 'servers': {
      const [action, ...options] = rest;
      if (action === 'down') {
        await serversDown();
        return 0;
      }
      if (action === 'up') {
        const { values } = parseArgs({ args: options, options: { kinds: { type: 'string' } }, strict: true });
        const kinds = values.kinds?.split(',').map((kind) => kind.trim()) as ServerKind[] | undefined;
        for (const kind of kinds ?? []) {
          if (!['redis', 'zookeeper', 'etcd'].includes(kind)) {
            throw new InvalidArgumentError('--kinds', kind, 'redis, zookeeper, etcd');
          }
        }
        return serversUp(kinds);
      }
      throw new InvalidArgumentError('servers', action, 'up or down');
    }
    case 'report': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { out: { type: 'string' } },
        strict: true,
        allowPositionals: true,
      });
      const [path] = positionals;
      if (!path || positionals.length > 1)
        throw new InvalidArgumentError('report', positionals.join(' '), 'the path of one results.json');
      const results = readResultsJson(path);
      const paths = await writeReports(results, resolve(values.out ?? dirname(path)), new Progress());
      console.log(`report: ${relative(process.cwd(), paths.html) || paths.html}`);
      return 0;
    }
    case 'readme-table': {
      const [path] = rest;
      if (!path) throw new InvalidArgumentError('readme-table', undefined, 'the path of a results.json');
      console.log(renderReadmeTable(readResultsJson(path)));
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new InvalidArgumentError(
        'command',
        command,
        'compare, inspect, watch, servers, report, readme-table, help',
      );
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const usage =
      error instanceof InvalidArgumentError ||
      (error as { code?: string })?.code?.startsWith('ERR_PARSE_ARGS');
    console.error(`dlock: ${error instanceof Error ? error.message : String(error)}`);
    if (usage) console.error(`\nrun \`${DLOCK_COMMAND} help\` for usage`);
    process.exit(usage || error instanceof UnsupportedError ? 2 : 3);
  },
);
