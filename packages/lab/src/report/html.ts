import type { Results } from '../results.js';
import { renderChartSvg } from './charts.js';
import { type Block, buildReportDocument } from './document.js';
import type { Chart } from './figures/index.js';
import { escapeHtml, htmlWithLinks } from './links.js';
import { runDescription, verdictLine } from './markdown.js';
import type { Table } from './tables.js';

/** A cell's class from its text: the fault result column and the conformance kit's verdict cells. */
function resultClass(text: string): string | undefined {
  if (text === 'held') return 'ok';
  if (text === 'VIOLATED' || text === 'claim-violated') return 'bad';
  if (text === 'known-unsafe') return 'warn';
  if (text === 'error' || text === 'not-reproduced') return 'muted';
  return undefined;
}

function htmlTable(table: Table, role: 'semantics' | 'faults' | undefined): string {
  const resultColumn = role === 'faults' ? table.header.indexOf('result') : -1;
  const head = `<tr>${table.header.map((cell) => `<th>${escapeHtml(cell)}</th>`).join('')}</tr>`;
  const body = table.rows
    .map((row) => {
      const cells = row.map((cell, column) => {
        const css =
          (role === 'semantics' && column > 0) || column === resultColumn ? resultClass(cell) : undefined;
        return `<td${css ? ` class="${css}"` : ''}>${escapeHtml(cell)}</td>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('\n');
  return `<div class="table"><table>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table></div>`;
}

const STYLE = `
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2330; margin: 0 auto; max-width: 1180px; padding: 24px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { margin-top: 40px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }
h4 { margin: 14px 0 4px; }
p.meta { color: #5a6375; margin-top: 0; }
a { color: #1f5fbf; }
div.table { overflow-x: auto; }
table { border-collapse: collapse; margin: 12px 0; font-size: 13px; width: 100%; }
th, td { border: 1px solid #d8dde6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f9; } tbody tr:nth-child(even) { background: #fafbfd; }
td.ok { color: #11733a; font-weight: 600; } td.bad { color: #fff; background: #b3261e; font-weight: 700; } td.warn { color: #8a4b00; font-weight: 600; } td.muted { color: #5a6375; font-style: italic; }
.verdict { padding: 10px 14px; border-radius: 6px; background: #eef7f0; border: 1px solid #b7dec2; white-space: pre-line; }
.verdict.failed { background: #fdecea; border-color: #f1b0aa; }
figure { margin: 12px 0 18px; overflow-x: auto; } figure h5 { font-size: 14px; margin: 0 0 4px; }
figure svg { display: block; } figcaption { color: #5a6375; font-size: 13px; }
dl dt { font-weight: 600; margin-top: 10px; } dl dd { margin: 2px 0 0 0; }
`;

/** report/index.html: one self-contained file — inline CSS and SVG, no script, no network. */
export async function renderHtmlReport(
  results: Results,
  onChartError: (chart: Chart, error: unknown) => void = () => {},
): Promise<string> {
  const { blocks, anchors } = buildReportDocument(results);
  const text = (value: string) => htmlWithLinks(value, anchors);
  const renderBlock = async (block: Block): Promise<string> => {
    switch (block.kind) {
      case 'heading':
        return `<h${block.level}${block.id ? ` id="${block.id}"` : ''}>${escapeHtml(block.text)}</h${block.level}>`;
      case 'paragraph':
        return `<p>${text(block.text)}</p>`;
      case 'list':
        return `<ul>\n${block.items.map((item) => `<li>${text(item)}</li>`).join('\n')}\n</ul>`;
      case 'table':
        return htmlTable(block.table, block.role);
      case 'definitions':
        return `<dl>\n${block.items
          .map(
            (item) =>
              `<dt${item.ids[0] ? ` id="${item.ids[0]}"` : ''}>${item.ids
                .slice(1)
                .map((id) => `<span id="${id}"></span>`)
                .join('')}${escapeHtml(item.term)}</dt><dd>${text(item.text)}</dd>`,
          )
          .join('\n')}\n</dl>`;
      case 'charts': {
        const figures: string[] = [];
        for (const chart of block.charts) {
          let svg: string;
          try {
            svg = await renderChartSvg(chart.spec);
          } catch (error) {
            onChartError(chart, error);
            svg = `<p>(this chart could not be rendered: ${escapeHtml(error instanceof Error ? error.message : String(error))})</p>`;
          }
          figures.push(
            `<figure class="chart"><h5>${escapeHtml(chart.title)}</h5>\n${svg}\n<figcaption>${text(chart.caption)}</figcaption></figure>`,
          );
        }
        return figures.join('\n');
      }
    }
  };
  const body: string[] = [];
  for (const block of blocks) body.push(await renderBlock(block));
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
<p class="meta">${escapeHtml(results.startedAt)} · ${escapeHtml(runDescription(results))}. One run on one machine: figures from another machine, or another run here, differ within and beyond their spreads.</p>
<div class="verdict${results.verdict.exitCode === 0 ? '' : ' failed'}">${escapeHtml(verdictLine(results))}</div>
${body.join('\n')}
</body>
</html>
`;
}
