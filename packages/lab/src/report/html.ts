import type { Results } from '../results.js';
import { verdictLine } from './markdown.js';
import {
  type Table,
  backendsTable,
  contentionTable,
  faultTable,
  handoffFailoverTable,
  latencyTable,
  overviewTable,
  verdictLabel,
} from './tables.js';

export interface RenderedChart {
  readonly title: string;
  readonly caption: string;
  readonly svg: string;
}

const escapeHtml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function htmlTable(table: Table, cellClass?: (row: readonly string[], column: number) => string | undefined): string {
  const head = `<tr>${table.header.map((cell) => `<th>${escapeHtml(cell)}</th>`).join('')}</tr>`;
  const body = table.rows
    .map((row) => {
      const cells = row.map((cell, column) => {
        const css = cellClass?.(row, column);
        return `<td${css ? ` class="${css}"` : ''}>${escapeHtml(cell)}</td>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('\n');
  return `<table>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

const htmlList = (items: readonly string[]) =>
  items.length === 0 ? '' : `<ul>\n${items.map((item) => `<li>${escapeHtml(item)}</li>`).join('\n')}\n</ul>`;

/** The conformance kit renders markdown; turn its table into a Table (cells are plain text). */
function parseMarkdownTable(markdown: string): Table | undefined {
  const lines = markdown.split('\n').filter((line) => line.startsWith('|'));
  const cells = (line: string) => line.slice(1, -1).split('|').map((cell) => cell.trim().replace(/^\*(.*)\*$/, '$1'));
  const [header, , ...rows] = lines;
  return header ? { header: cells(header), rows: rows.map(cells) } : undefined;
}

const verdictClass = (text: string) => {
  if (text === 'held') return 'ok';
  if (text === 'VIOLATED' || text === verdictLabel['claim-violated']) return 'bad';
  if (text === verdictLabel['known-violation']) return 'warn';
  return undefined;
};

const STYLE = `
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2330; margin: 0 auto; max-width: 1180px; padding: 24px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { margin-top: 40px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
p.meta { color: #5a6375; margin-top: 0; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; width: 100%; }
th, td { border: 1px solid #d8dde6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f9; } tbody tr:nth-child(even) { background: #fafbfd; }
td.ok { color: #11733a; font-weight: 600; } td.bad { color: #fff; background: #b3261e; font-weight: 700; } td.warn { color: #8a4b00; font-weight: 600; }
.verdict { padding: 10px 14px; border-radius: 6px; background: #eef7f0; border: 1px solid #b7dec2; white-space: pre-line; }
.verdict.failed { background: #fdecea; border-color: #f1b0aa; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px; }
figure { margin: 0; min-width: 0; } figure svg { max-width: 100%; height: auto; } figcaption { color: #5a6375; font-size: 13px; }
dl.explanations dt { font-weight: 600; margin-top: 10px; } dl.explanations dd { margin: 2px 0 0 0; }
`;

/** report/index.html: one self-contained file — inline CSS and SVG, no script, no network. */
export function renderHtmlReport(results: Results, charts: readonly RenderedChart[]): string {
  const semantics = parseMarkdownTable(results.semanticsTable);
  const chartFigures = charts
    .map(
      (chart) =>
        `<figure><h3>${escapeHtml(chart.title)}</h3>\n${chart.svg}\n<figcaption>${escapeHtml(chart.caption)}</figcaption></figure>`,
    )
    .join('\n');
  const explanations = results.faults
    .map(
      (fault) =>
        `<dt>${escapeHtml(fault.title)} — ${escapeHtml(fault.backend)}: ${escapeHtml(verdictLabel[fault.verdict])}</dt><dd>${escapeHtml(fault.explanation)}</dd>`,
    )
    .join('\n');
  const notes = [
    ...results.notes,
    ...results.benchmarks.flatMap((bench) => bench.errors.map((error) => `${bench.backend}: ${error}`)),
  ];
  const faultColumns = faultTable(results);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dlock compare — ${escapeHtml(results.startedAt)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>dlock compare</h1>
<p class="meta">${escapeHtml(results.startedAt)} · ${results.machine.cpus}× ${escapeHtml(results.machine.cpuModel)} · Node ${escapeHtml(results.machine.node)} · ${results.options.durationSeconds} s of benchmarks per backend. One run, one machine: compare ratios, not absolute numbers, across machines.</p>
<div class="verdict${results.verdict.exitCode === 0 ? '' : ' failed'}">${escapeHtml(verdictLine(results))}</div>
<h2>Overview</h2>
${htmlTable(overviewTable(results))}
<h2>Backends and what they declare</h2>
${htmlTable(backendsTable(results))}
<h2>Semantics (conformance kit)</h2>
${semantics ? htmlTable(semantics, (row, column) => (column > 0 ? verdictClass(row[column] ?? '') : undefined)) : '<p>No conformance report was available.</p>'}
${htmlList(results.semantics.filter((entry) => entry.note).map((entry) => `${entry.backend}: ${entry.note}`))}
<h2>Benchmarks</h2>
<div class="charts">
${chartFigures}
</div>
<h3>Uncontended acquire + release</h3>
<p>The floor is the raw client round trips the same protocol cannot avoid, measured on the same servers in the same run.</p>
${htmlTable(latencyTable(results))}
<h3>Throughput under contention (operations / s)</h3>
${htmlTable(contentionTable(results))}
<h3>Hand-off and failover</h3>
${htmlTable(handoffFailoverTable(results))}
<h2>Fault scenarios</h2>
<p>Contenders in separate processes update a shared counter under the lock; the counter stamps each request with its own clock and the writer's fencing token. Stale writes are the ones a fencing resource rejects; "lost with fencing" is damage it would still let through.</p>
${htmlTable(faultColumns, (row, column) => (column === 3 ? verdictClass(row[3] ?? '') : undefined))}
<dl class="explanations">
${explanations}
</dl>
${notes.length > 0 ? `<h2>Notes</h2>\n${htmlList(notes)}` : ''}
</body>
</html>
`;
}
