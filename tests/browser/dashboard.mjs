// Headless browser check of the Missive operations dashboard.
//
// Usage: node tests/browser/dashboard.mjs <dashboard-url> <screenshot-path>
//   e.g. node tests/browser/dashboard.mjs 'http://127.0.0.1:1234/dashboard?refresh=1' out/dashboard.png
//
// Needs `npm ci` (or `npm install`) in tests/browser and Chromium at
// /usr/bin/chromium. On success prints one line of JSON to stdout:
//   {"totals": {...}, "points": {...}, "consoleErrors": []}
// and exits 0. Any failed check is reported on stderr with exit status 1.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const READY_TIMEOUT_MS = 30_000;
const REFRESH_TIMEOUT_MS = 30_000;
// How long curves may take to appear (e.g. a server that has just started).
const CURVE_TIMEOUT_MS = 10_000;
// Minimum number of stroke-coloured pixels in the plot area of a chart.
const MIN_STROKE_PIXELS = 8;
const CHARTS = ['online', 'registrations', 'messages', 'syncs', 'errors', 'rpc_qps', 'rpc_p99'];
const CURVE_CHARTS = ['online', 'messages'];

class CheckFailed extends Error {}

// Distinct messages, at most `max` of them, for failure reports.
function summarize(messages, max = 8) {
  const distinct = [...new Set(messages)];
  const more = distinct.length > max ? [`… and ${distinct.length - max} more`] : [];
  return JSON.stringify([...distinct.slice(0, max), ...more]);
}

function fail(msg) {
  throw new CheckFailed(msg);
}

const [url, screenshotPath] = process.argv.slice(2);
if (!url || !screenshotPath) {
  process.stderr.write('usage: node dashboard.mjs <dashboard-url> <screenshot-path>\n');
  process.exit(2);
}

// Runs in the page: for one chart, counts pixels in the plotting area whose
// colour is the stroke colour of one of the chart's series.
function strokePixelsInPage(key) {
  const root = document.querySelector(`[data-chart="${key}"]`);
  const canvas = root && root.querySelector('.uplot canvas');
  const over = root && root.querySelector('.uplot .u-over');
  if (!canvas || !over) return { error: 'no uPlot canvas or plot area' };

  // Series colours as uPlot shows them in the legend markers (skip the x series).
  const parse = (css) => {
    const m = /rgba?\(\s*(\d+)[,\s]+(\d+)[,\s]+(\d+)/.exec(css || '');
    return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
  };
  const colours = [...root.querySelectorAll('.u-legend .u-series')]
    .slice(1)
    .map((row) => parse(getComputedStyle(row.querySelector('.u-marker')).borderTopColor))
    .filter(Boolean);
  if (colours.length === 0) return { error: 'no series colours in the legend' };

  // Plot area (the .u-over element) in canvas pixel coordinates.
  const cr = canvas.getBoundingClientRect();
  const or = over.getBoundingClientRect();
  const sx = canvas.width / cr.width;
  const sy = canvas.height / cr.height;
  const x0 = Math.max(0, Math.round((or.left - cr.left) * sx));
  const y0 = Math.max(0, Math.round((or.top - cr.top) * sy));
  const w = Math.min(canvas.width - x0, Math.round(or.width * sx));
  const h = Math.min(canvas.height - y0, Math.round(or.height * sy));
  if (w <= 0 || h <= 0) return { error: `empty plot area ${w}x${h}` };

  // The canvas is transparent except for what was drawn. An opaque-enough
  // pixel whose (unpremultiplied) colour is close to a series stroke colour is
  // a piece of that series' line; grid lines, axes and the translucent area
  // fill never match.
  const px = canvas.getContext('2d').getImageData(x0, y0, w, h).data;
  const TOL = 40;
  let hits = 0;
  let opaque = 0;
  for (let i = 0; i < px.length; i += 4) {
    if (px[i + 3] < 128) continue;
    opaque++;
    for (const [r, g, b] of colours) {
      if (Math.abs(px[i] - r) <= TOL && Math.abs(px[i + 1] - g) <= TOL && Math.abs(px[i + 2] - b) <= TOL) {
        hits++;
        break;
      }
    }
  }
  return { hits, opaque, area: [x0, y0, w, h], colours };
}

async function main() {
  const consoleErrors = [];
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
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
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        const loc = msg.location();
        consoleErrors.push(loc && loc.url ? `${msg.text()} (${loc.url})` : msg.text());
      }
    });
    page.on('pageerror', (err) => consoleErrors.push(`page error: ${err.message}`));
    page.on('requestfailed', (req) =>
      consoleErrors.push(`request failed: ${req.url()} (${req.failure()?.errorText ?? 'unknown'})`),
    );
    page.on('response', (res) => {
      if (res.status() >= 400) consoleErrors.push(`HTTP ${res.status()} for ${res.url()}`);
    });

    const resp = await page.goto(url, { waitUntil: 'load', timeout: READY_TIMEOUT_MS });
    if (!resp || !resp.ok()) fail(`loading ${url} gave HTTP ${resp ? resp.status() : 'no response'}`);

    try {
      await page.waitForFunction(() => window.missiveDashboard && window.missiveDashboard.ready === true, null, {
        timeout: READY_TIMEOUT_MS,
        polling: 100,
      });
    } catch {
      const st = await page.evaluate(() => window.missiveDashboard ?? null).catch(() => null);
      fail(
        `dashboard not ready after ${READY_TIMEOUT_MS / 1000} s; state: ${JSON.stringify(st)}; ` +
          `console errors: ${summarize(consoleErrors)}`,
      );
    }

    const title = await page.title();
    if (!title.startsWith('Missive — operations')) fail(`unexpected page title ${JSON.stringify(title)}`);

    // Every chart container holds a uPlot canvas with a non-zero size.
    const sizes = await page.evaluate((keys) => {
      const out = {};
      for (const k of keys) {
        const c = document.querySelector(`[data-chart="${k}"] .uplot canvas`);
        out[k] = c ? { w: c.width, h: c.height, cw: c.clientWidth, ch: c.clientHeight } : null;
      }
      return out;
    }, CHARTS);
    for (const k of CHARTS) {
      const s = sizes[k];
      if (!s) fail(`chart "${k}": no uPlot canvas in [data-chart="${k}"]`);
      if (!(s.w > 0 && s.h > 0 && s.cw > 0 && s.ch > 0)) fail(`chart "${k}": canvas has zero size ${JSON.stringify(s)}`);
    }

    // The curves really drew: stroke-coloured pixels inside the plot area.
    for (const key of CURVE_CHARTS) {
      const deadline = Date.now() + CURVE_TIMEOUT_MS;
      let r;
      for (;;) {
        r = await page.evaluate(strokePixelsInPage, key);
        if (!r.error && r.hits >= MIN_STROKE_PIXELS) break;
        if (Date.now() > deadline) {
          const pts = await page.evaluate((k) => window.missiveDashboard.points[k], key);
          fail(
            `chart "${key}": no curve drawn in the plot area after ${CURVE_TIMEOUT_MS / 1000} s ` +
              `(${r.error ?? `${r.hits} stroke-coloured pixels, need ${MIN_STROKE_PIXELS}; ` +
                `${r.opaque} drawn pixels; colours ${JSON.stringify(r.colours)}`}; points=${pts})`,
          );
        }
        await page.waitForTimeout(250);
      }
    }

    // Switching the range refetches and moves aria-pressed.
    for (const range of ['24h', '1h']) {
      const before = await page.evaluate(() => window.missiveDashboard.refreshes);
      await page.click(`[data-range="${range}"]`);
      try {
        await page.waitForFunction(
          ([r, n]) => {
            const d = window.missiveDashboard;
            const pressed = [...document.querySelectorAll('[data-range]')].filter(
              (b) => b.getAttribute('aria-pressed') === 'true',
            );
            return d.refreshes > n && d.range === r && d.error === null && pressed.length === 1 && pressed[0].dataset.range === r;
          },
          [range, before],
          { timeout: REFRESH_TIMEOUT_MS, polling: 100 },
        );
      } catch {
        const st = await page.evaluate(() => ({
          state: window.missiveDashboard,
          pressed: [...document.querySelectorAll('[data-range]')].map((b) => [b.dataset.range, b.getAttribute('aria-pressed')]),
        }));
        fail(`no refresh with range ${range} after clicking its button: ${JSON.stringify(st)}`);
      }
    }

    await mkdir(path.dirname(path.resolve(screenshotPath)), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });

    const result = await page.evaluate(() => {
      const totals = {};
      for (const el of document.querySelectorAll('[data-total]')) {
        const raw = el.getAttribute('data-value');
        totals[el.dataset.total] = raw == null || raw === '' ? null : Number(raw);
      }
      return { totals, points: window.missiveDashboard.points };
    });

    if (consoleErrors.length) fail(`console errors: ${summarize(consoleErrors)}`);
    process.stdout.write(`${JSON.stringify({ ...result, consoleErrors })}\n`);
  } finally {
    await browser.close();
  }
}

try {
  await main();
  process.exit(0);
} catch (e) {
  process.stderr.write(`dashboard check FAILED: ${e instanceof CheckFailed ? e.message : e?.stack ?? e}\n`);
  process.exit(1);
}
