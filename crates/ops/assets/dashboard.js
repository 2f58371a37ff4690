// Missive operations dashboard.
//
// Plain browser JavaScript, no build step. Reads two JSON endpoints from the
// same origin and draws the charts with the vendored uPlot (global `uPlot`).
//
//   GET /dashboard/api/totals
//   GET /dashboard/api/series?range=1h|24h|7d
//
// Query parameters of the page:
//   ?range=1h|24h|7d   initial range (default 1h)
//   ?refresh=<seconds> auto-refresh period (default 10)
//
// State for automated tests is published as `window.missiveDashboard`.

(() => {
  'use strict';

  const RANGES = ['1h', '24h', '7d'];
  const DEFAULT_REFRESH_S = 10;
  const MIN_REFRESH_S = 0.25;
  const CHART_HEIGHT = 220;
  const DASH = '–';

  // Fixed series palette. Fixed charts use fixed slots; RPC services get the
  // next free colour the first time they are seen and keep it afterwards.
  const PALETTE = [
    '#2563eb', // blue
    '#dc2626', // red
    '#16a34a', // green
    '#d97706', // amber
    '#7c3aed', // violet
    '#0891b2', // cyan
    '#db2777', // pink
    '#65a30d', // lime
    '#ea580c', // orange
    '#4f46e5', // indigo
    '#0d9488', // teal
    '#a16207', // brown
  ];

  const AXIS_TEXT = '#5b6675';
  const GRID = '#e9edf2';

  // Totals shown as cards, in this order (the keys of /dashboard/api/totals).
  const TOTALS = [
    ['online', 'Online devices'],
    ['registered_users', 'Registered users'],
    ['groups', 'Groups'],
    ['messages', 'Messages'],
    ['inbox_entries', 'Inbox entries'],
    ['messages_sent', 'Messages sent'],
    ['messages_delivered', 'Messages delivered'],
  ];

  // Charts fed from `series`. Each entry: [series key, legend label, palette slot].
  const FIXED_CHARTS = [
    { key: 'online', fill: true, series: [['online', 'Online devices', 0]] },
    { key: 'registrations', series: [['registrations_per_s', 'Registrations/s', 2]] },
    { key: 'messages', series: [['messages_per_s', 'Messages/s', 4]] },
    { key: 'syncs', series: [['syncs_per_s', 'Syncs/s', 5]] },
    {
      key: 'errors',
      series: [
        ['errors_per_s', 'Errors/s', 1],
        ['sheds_per_s', 'Sheds/s', 3],
      ],
    },
  ];
  // Charts fed from `rpc`, one series per service.
  const RPC_CHARTS = [
    { key: 'rpc_qps', field: 'calls_per_s', unit: '/s' },
    { key: 'rpc_p99', field: 'p99_ms', unit: ' ms' },
  ];
  const CHART_KEYS = [...FIXED_CHARTS.map((c) => c.key), ...RPC_CHARTS.map((c) => c.key)];

  // ---- configuration from the URL ----------------------------------------

  const params = new URLSearchParams(location.search);
  let selectedRange = RANGES.includes(params.get('range')) ? params.get('range') : '1h';
  const refreshS = (() => {
    const raw = params.get('refresh');
    const v = raw == null || raw === '' ? NaN : Number(raw);
    return Number.isFinite(v) && v > 0 ? Math.max(v, MIN_REFRESH_S) : DEFAULT_REFRESH_S;
  })();
  const refreshMs = Math.round(refreshS * 1000);

  // ---- published state ---------------------------------------------------

  const state = {
    ready: false,
    points: Object.fromEntries(CHART_KEYS.map((k) => [k, 0])),
    refreshes: 0,
    error: null,
    range: null, // range of the series currently drawn
    failures: 0,
  };
  window.missiveDashboard = state;

  // ---- formatting --------------------------------------------------------

  const numberFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const smallFmt = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });
  const axisFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });
  const compactFmt = new Intl.NumberFormat(undefined, {
    notation: 'compact',
    maximumFractionDigits: 1,
  });
  const clockFmt = new Intl.DateTimeFormat(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false,
  });
  const legendTimeFmt = uPlot.fmtDate('{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}');

  function fmtTotal(v) {
    return v == null ? DASH : numberFmt.format(v);
  }

  function fmtValue(v) {
    if (v == null || !Number.isFinite(v)) return DASH;
    return Math.abs(v) < 1 && v !== 0 ? smallFmt.format(v) : numberFmt.format(v);
  }

  function fmtAxis(v) {
    if (v == null) return '';
    return Math.abs(v) >= 10000 ? compactFmt.format(v) : axisFmt.format(v);
  }

  // ---- DOM helpers -------------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);
  const errorEl = $('#error');
  const statusEl = $('#status');
  const statusText = $('#status-text');
  const nodeEl = $('#node-name');
  const cardsEl = $('#cards');
  const countedEl = $('#counted-at');

  function setNode(name) {
    if (typeof name === 'string' && name !== '' && nodeEl.textContent !== name) {
      nodeEl.textContent = name;
      document.title = `Missive — operations · ${name}`;
    }
  }

  // ---- totals cards ------------------------------------------------------

  const cards = new Map(); // key -> card element

  function card(key, label) {
    let el = cards.get(key);
    if (!el) {
      el = document.createElement('div');
      el.className = 'card';
      el.dataset.total = key;
      const l = document.createElement('div');
      l.className = 'label';
      l.textContent = label;
      l.title = label;
      const v = document.createElement('div');
      v.className = 'value';
      v.textContent = DASH;
      el.append(l, v);
      cardsEl.append(el);
      cards.set(key, el);
    }
    return el;
  }

  function setCard(key, label, value) {
    const el = card(key, label);
    const v = typeof value === 'number' && Number.isFinite(value) ? value : null;
    const text = fmtTotal(v);
    const valueEl = el.querySelector('.value');
    if (valueEl.textContent !== text) valueEl.textContent = text;
    if (v == null) el.removeAttribute('data-value');
    else el.dataset.value = String(v);
    el.classList.toggle('unknown', v == null);
  }

  function renderTotals(t) {
    if (t == null || typeof t !== 'object' || Array.isArray(t)) {
      throw new Error('totals: response is not a JSON object');
    }
    setNode(t.node);
    for (const [key, label] of TOTALS) {
      setCard(key, label, t[key]);
    }
    const at = t.counted_at_ms;
    countedEl.textContent =
      typeof at === 'number' && Number.isFinite(at) ? `Counted at ${clockFmt.format(new Date(at))}` : '';
  }

  // Known cards exist from the start so the layout does not jump.
  for (const [key, label] of TOTALS) setCard(key, label, null);

  // ---- charts ------------------------------------------------------------

  function hexToRgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  function lastNonNull(arr) {
    for (let i = arr.length - 1; i >= 0; i--) if (arr[i] != null) return i;
    return null;
  }

  // Without the cursor on a chart, its legend shows the latest known value of
  // each series instead of blanks.
  function showLatestWhenIdle(u) {
    if (u.cursor.idx != null) return;
    const xs = u.data[0];
    if (!xs || xs.length === 0) return;
    const idxs = u.data.map((arr, i) => (i === 0 ? xs.length - 1 : lastNonNull(arr)));
    u.setLegend({ idxs }, false);
  }

  // y axis width that fits the longest tick label.
  function axisSize(u, values, axisIdx) {
    const axis = u.axes[axisIdx];
    let size = axis.ticks.size + axis.gap;
    const longest = (values ?? []).reduce((acc, v) => (v.length > acc.length ? v : acc), '');
    if (longest !== '') {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size) + 4;
  }

  function yRange(u, min, max) {
    if (max == null || !Number.isFinite(max) || max <= 0) return [0, 1];
    const lo = min != null && min < 0 ? min : 0;
    return uPlot.rangeNum(lo, max, 0.1, true);
  }

  // With `spanGaps: false` a value surrounded by nulls has no line segment,
  // and a series with only a few values (e.g. a node that just started) is
  // hard to see. Draw such values as points as well.
  const FEW_POINTS = 30;

  function sparsePoints(u, sidx, show) {
    if (show) return null; // uPlot already draws every point
    const d = u.data[sidx];
    const all = [];
    const isolated = [];
    for (let i = 0; i < d.length; i++) {
      if (d[i] == null) continue;
      all.push(i);
      if ((i === 0 || d[i - 1] == null) && (i === d.length - 1 || d[i + 1] == null)) isolated.push(i);
    }
    const idxs = all.length <= FEW_POINTS ? all : isolated;
    return idxs.length ? idxs : null;
  }

  // 24-hour clock time axis; see uPlot's default `values` table for the layout.
  const X_AXIS_VALUES = [
    [86400 * 365, '{YYYY}', null, null, null, null, null, null, 1],
    [86400 * 28, '{MMM}', '\n{YYYY}', null, null, null, null, null, 1],
    [86400, '{MMM} {D}', '\n{YYYY}', null, null, null, null, null, 1],
    [3600, '{HH}:{mm}', '\n{MMM} {D}', null, '\n{MMM} {D}', null, null, null, 1],
    [60, '{HH}:{mm}', '\n{MMM} {D}', null, '\n{MMM} {D}', null, null, null, 1],
    [1, ':{ss}', '\n{MMM} {D} {HH}:{mm}', null, '\n{MMM} {D} {HH}:{mm}', null, '\n{HH}:{mm}', null, 1],
  ];

  function chartOptions(width, defs, unit) {
    const font = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
    return {
      width,
      height: CHART_HEIGHT,
      pxAlign: 1,
      scales: { x: { time: true }, y: { range: yRange } },
      series: [
        {
          label: 'Time',
          value: (u, ts) => (ts == null ? DASH : legendTimeFmt(new Date(ts * 1000))),
        },
        ...defs.map((d) => ({
          label: d.label,
          stroke: d.color,
          width: 2,
          fill: d.fill ? hexToRgba(d.color, 0.1) : undefined,
          spanGaps: false,
          value: (u, v) => (v == null ? DASH : fmtValue(v) + unit),
          points: { filter: sparsePoints },
        })),
      ],
      axes: [
        {
          stroke: AXIS_TEXT,
          font,
          grid: { stroke: GRID, width: 1 },
          ticks: { stroke: GRID, width: 1, size: 6 },
          values: X_AXIS_VALUES,
        },
        {
          stroke: AXIS_TEXT,
          font,
          grid: { stroke: GRID, width: 1 },
          ticks: { stroke: GRID, width: 1, size: 6 },
          size: axisSize,
          values: (u, splits) => splits.map(fmtAxis),
        },
      ],
      // Cursors move together across charts (same time), without zooming.
      cursor: { y: false, sync: { key: 'missive', setSeries: false }, drag: { x: false, y: false } },
      legend: {
        live: true,
        markers: { fill: (u, sidx) => (sidx > 0 ? defs[sidx - 1].color : null) },
      },
      hooks: { setCursor: [showLatestWhenIdle] },
    };
  }

  // key -> { panel, body, empty, u, names }
  const charts = new Map();

  for (const key of CHART_KEYS) {
    const panel = $(`[data-chart="${key}"]`);
    const body = $('.chart-body', panel);
    const empty = document.createElement('div');
    empty.className = 'chart-empty';
    empty.textContent = 'Loading…';
    body.append(empty);
    charts.set(key, { panel, body, empty, u: null, names: null });
  }

  function bodyWidth(body) {
    const w = Math.floor(body.clientWidth);
    return w > 0 ? w : 600;
  }

  const resizeObserver = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = [...charts.values()].find((c) => c.body === entry.target);
      if (!chart || !chart.u) continue;
      const w = Math.floor(entry.contentRect.width);
      if (w > 0 && w !== chart.u.width) chart.u.setSize({ width: w, height: CHART_HEIGHT });
    }
  });
  for (const c of charts.values()) resizeObserver.observe(c.body);

  function countPoints(data) {
    let n = 0;
    for (let i = 1; i < data.length; i++) for (const v of data[i]) if (v != null) n++;
    return n;
  }

  // (Re)draws one chart. `defs` are the series (label/colour); `names`
  // identifies the series set: when it changes the chart is rebuilt.
  function drawChart(key, defs, data, unit, emptyText) {
    const chart = charts.get(key);
    const names = defs.map((d) => d.label).join('\n');
    if (chart.u && chart.names !== names) {
      chart.u.destroy();
      chart.u = null;
    }
    if (chart.u) {
      chart.u.setData(data);
      showLatestWhenIdle(chart.u);
    } else {
      chart.u = new uPlot(chartOptions(bodyWidth(chart.body), defs, unit), data, chart.body);
      chart.names = names;
      chart.body.append(chart.empty); // keep the overlay above the canvas
      showLatestWhenIdle(chart.u);
    }
    const points = countPoints(data);
    state.points[key] = points;
    chart.empty.textContent = defs.length === 0 ? emptyText : 'No data in this range';
    chart.empty.hidden = points > 0;
  }

  // Validates a series response into { node, times, series, rpc }, with every
  // array exactly `times.length` long and holding numbers or nulls.
  function normalizeSeries(s) {
    if (s == null || typeof s !== 'object' || !Array.isArray(s.times)) {
      throw new Error('series: response has no "times" array');
    }
    const times = s.times.map(Number);
    const n = times.length;
    const clean = (arr) => {
      const out = new Array(n).fill(null);
      if (Array.isArray(arr)) {
        for (let i = 0; i < n && i < arr.length; i++) {
          const v = arr[i];
          if (typeof v === 'number' && Number.isFinite(v)) out[i] = v;
        }
      }
      return out;
    };
    const series = s.series && typeof s.series === 'object' ? s.series : {};
    const rpcIn = s.rpc && typeof s.rpc === 'object' ? s.rpc : {};
    const rpc = {};
    for (const name of Object.keys(rpcIn).sort()) {
      const svc = rpcIn[name] && typeof rpcIn[name] === 'object' ? rpcIn[name] : {};
      rpc[name] = Object.fromEntries(RPC_CHARTS.map((c) => [c.field, clean(svc[c.field])]));
    }
    return { node: s.node, times, clean, series, rpc };
  }

  const serviceColors = new Map();

  function serviceColor(name) {
    if (!serviceColors.has(name)) {
      serviceColors.set(name, PALETTE[serviceColors.size % PALETTE.length]);
    }
    return serviceColors.get(name);
  }

  function renderSeries(raw) {
    const s = normalizeSeries(raw);
    setNode(s.node);
    for (const c of FIXED_CHARTS) {
      const defs = c.series.map(([, label, slot]) => ({ label, color: PALETTE[slot], fill: c.fill }));
      const data = [s.times, ...c.series.map(([k]) => s.clean(s.series[k]))];
      drawChart(c.key, defs, data, '', '');
    }
    const services = Object.keys(s.rpc);
    for (const c of RPC_CHARTS) {
      const defs = services.map((name) => ({ label: name, color: serviceColor(name) }));
      const data = [s.times, ...services.map((name) => s.rpc[name][c.field])];
      drawChart(c.key, defs, data, c.unit, 'No RPC services reported');
    }
  }

  // ---- range buttons -----------------------------------------------------

  const rangeButtons = [...document.querySelectorAll('[data-range]')];

  function updateRangeButtons() {
    for (const b of rangeButtons) {
      b.setAttribute('aria-pressed', String(b.dataset.range === selectedRange));
    }
  }

  for (const b of rangeButtons) {
    b.addEventListener('click', () => {
      const r = b.dataset.range;
      if (!RANGES.includes(r)) return;
      selectedRange = r;
      updateRangeButtons();
      const url = new URL(location.href);
      url.searchParams.set('range', r);
      history.replaceState(null, '', url);
      tick();
    });
  }
  updateRangeButtons();

  // ---- fetching and the refresh loop -------------------------------------

  async function getJSON(path) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), Math.max(5000, refreshMs * 2));
    try {
      const res = await fetch(path, {
        cache: 'no-store',
        headers: { Accept: 'application/json' },
        signal: ctrl.signal,
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return await res.json();
    } catch (e) {
      const why = e.name === 'AbortError' ? 'timed out' : e.message;
      throw new Error(`${path.split('?')[0]}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
  }

  let totalsRendered = false;
  let seriesRendered = false;

  async function refresh() {
    const range = selectedRange;
    const [series, totals] = await Promise.allSettled([
      getJSON(`/dashboard/api/series?range=${encodeURIComponent(range)}`),
      getJSON('/dashboard/api/totals'),
    ]);
    const errors = [];
    let ok = true;

    if (totals.status === 'fulfilled') {
      try {
        renderTotals(totals.value);
        totalsRendered = true;
      } catch (e) {
        errors.push(e.message);
      }
    } else {
      errors.push(totals.reason.message);
    }

    if (range !== selectedRange) {
      ok = false; // the range changed while loading; a new refresh follows
    } else if (series.status === 'fulfilled') {
      try {
        renderSeries(series.value);
        seriesRendered = true;
        state.range = range;
      } catch (e) {
        errors.push(e.message);
      }
    } else {
      errors.push(series.reason.message);
    }

    if (errors.length) {
      state.error = errors.join('; ');
      state.failures++;
      errorEl.textContent = `Could not refresh: ${state.error}. Retrying every ${refreshS} s.`;
      errorEl.hidden = false;
      statusEl.className = 'status bad';
      statusText.textContent = `Update failed at ${clockFmt.format(new Date())}`;
      if (!seriesRendered) for (const c of charts.values()) c.empty.textContent = 'Waiting for data…';
      return;
    }
    if (!ok) return;

    state.error = null;
    errorEl.hidden = true;
    errorEl.textContent = '';
    statusEl.className = 'status ok';
    statusText.textContent = `Updated ${clockFmt.format(new Date())} · every ${refreshS} s`;
    if (totalsRendered && seriesRendered) state.ready = true;
    state.refreshes++;
  }

  let timer = null;
  let running = false;
  let again = false;

  // Runs a refresh now (or right after the one in flight) and schedules the next.
  async function tick() {
    clearTimeout(timer);
    timer = null;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await refresh();
    } catch (e) {
      // Rendering bugs must not stop the loop.
      state.error = String(e && e.message ? e.message : e);
      errorEl.textContent = `Dashboard error: ${state.error}`;
      errorEl.hidden = false;
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      tick();
    } else {
      timer = setTimeout(tick, refreshMs);
    }
  }

  tick();
})();
