/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

/** Debian's chromium, which scripts/setup.sh installs; the browser checks skip when it is absent. */
export const CHROMIUM = '/usr/bin/chromium';
export const chromiumMissing = existsSync(CHROMIUM)
  ? undefined
  : `${CHROMIUM} is not installed (bash scripts/setup.sh installs Debian's chromium)`;

/** Text below this many CSS pixels is too small to read. */
const MIN_TEXT_PX = 11;
/** Rectangles may touch; overlapping by more than this (px) is an overlap. */
const OVERLAP_SLACK_PX = 0.5;

interface TextBox {
  readonly text: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly fontPx: number;
}

interface ChartLayout {
  readonly title: string;
  readonly svg: { readonly x: number; readonly y: number; readonly width: number; readonly height: number };
  readonly container: { readonly width: number };
  readonly texts: TextBox[];
}

/**
 * Opens a report in headless Chromium (a fresh profile, no network), screenshots every chart and
 * checks each one as a reader would: text large enough to read, no label cut short ("…"), no two
 * labels on top of each other, nothing outside the chart's area, no chart wider than the page.
 * Returns the problems found (each naming the chart and the text) and the screenshots written.
 */
export async function inspectReportInBrowser(
  htmlPath: string,
  screenshotDir: string,
): Promise<{ problems: string[]; screenshots: string[]; charts: number }> {
  const profile = mkdtempSync(join(tmpdir(), 'dlock-chromium-'));
  mkdirSync(screenshotDir, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await context.newPage();
    // The report is self-contained: any request beyond the file itself is a defect.
    const requests: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith('file:')) requests.push(request.url());
    });
    await page.goto(pathToFileURL(htmlPath).href);
    const layouts: ChartLayout[] = await page.$$eval('figure.chart', (figures) =>
      figures.map((figure) => {
        const svg = figure.querySelector('svg') as SVGSVGElement;
        const box = svg.getBoundingClientRect();
        const texts = [...svg.querySelectorAll('text')]
          .filter((text) => {
            const style = getComputedStyle(text);
            const hidden = (element: Element | null): boolean =>
              element !== null &&
              element !== svg &&
              (element.getAttribute('opacity') === '0' || hidden(element.parentElement));
            return (
              (text.textContent ?? '').trim() !== '' &&
              style.visibility !== 'hidden' &&
              style.display !== 'none' &&
              Number(style.opacity) > 0 &&
              !hidden(text)
            );
          })
          .map((text) => {
            const rect = text.getBoundingClientRect();
            const matrix = text.getScreenCTM();
            const scale = matrix ? Math.hypot(matrix.a, matrix.b) : 1;
            return {
              text: text.textContent ?? '',
              x: rect.x,
              y: rect.y,
              width: rect.width,
              height: rect.height,
              fontPx: Number.parseFloat(getComputedStyle(text).fontSize) * scale,
            };
          });
        return {
          title: figure.querySelector('h5')?.textContent ?? '(untitled chart)',
          svg: { x: box.x, y: box.y, width: box.width, height: box.height },
          container: { width: figure.getBoundingClientRect().width },
          texts,
        };
      }),
    );
    const problems: string[] = requests.map((url) => `the report requested ${url}`);
    for (const chart of layouts) {
      const where = `chart "${chart.title}"`;
      if (chart.svg.width > chart.container.width + 1) {
        problems.push(
          `${where}: ${Math.round(chart.svg.width)} px wide in a ${Math.round(chart.container.width)} px column`,
        );
      }
      for (const box of chart.texts) {
        if (box.text.endsWith('…')) problems.push(`${where}: label truncated: "${box.text}"`);
        if (box.fontPx < MIN_TEXT_PX) problems.push(`${where}: "${box.text}" is ${box.fontPx.toFixed(1)} px`);
        const inside =
          box.x >= chart.svg.x - OVERLAP_SLACK_PX &&
          box.y >= chart.svg.y - OVERLAP_SLACK_PX &&
          box.x + box.width <= chart.svg.x + chart.svg.width + OVERLAP_SLACK_PX &&
          box.y + box.height <= chart.svg.y + chart.svg.height + OVERLAP_SLACK_PX;
        if (!inside) problems.push(`${where}: "${box.text}" reaches outside the chart`);
      }
      chart.texts.forEach((a, index) => {
        for (const b of chart.texts.slice(index + 1)) {
          const overlapX = Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x);
          const overlapY = Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y);
          if (overlapX > OVERLAP_SLACK_PX && overlapY > OVERLAP_SLACK_PX) {
            problems.push(`${where}: "${a.text}" overlaps "${b.text}"`);
          }
        }
      });
    }
    const screenshots: string[] = [];
    for (const [index, element] of (await page.$$('figure.chart')).entries()) {
      const path = join(screenshotDir, `chart-${index + 1}.png`);
      await element.screenshot({ path });
      screenshots.push(path);
    }
    await page.screenshot({ path: join(screenshotDir, 'report.png'), fullPage: true });
    screenshots.push(join(screenshotDir, 'report.png'));
    return { problems, screenshots, charts: layouts.length };
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
