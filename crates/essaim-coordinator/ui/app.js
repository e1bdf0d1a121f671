// The essaim dashboard: reads /api/v1 every 2 s and draws the cluster, its jobs, workers
// and dead letters. Plain ES2020, no framework, nothing fetched from anywhere else.
//
// Safety rule: every string that comes from the API (job names and standard error are
// user-controlled) reaches the page through h() or svg() below, which make text nodes.
// Nothing here assigns innerHTML.
"use strict";

const API = "/api/v1";
const REGISTRY = "/registry/v1";
const REFRESH_MS = 2000;
const TOKEN_KEY = "essaim.token";
const STALE_HEARTBEAT_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = { committed: "#16a34a", failed: "#dc2626", submitted: "#64748b", busy: "#2563eb" };

// ---------------------------------------------------------------- DOM helpers

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Creates an HTML element; string children become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return appendAll(el, children);
}

/** Creates an SVG element; string children become text nodes. */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return appendAll(el, children);
}

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting

function fmtInt(n) {
  return n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US");
}

/** 950, 1.2k, 34k, 5.6M: compact, for rates and chart axes. */
function fmtSi(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const abs = Math.abs(n);
  if (abs === 0) return "0";
  if (abs < 0.001) return n > 0 ? "<0.001" : ">-0.001";
  if (abs < 1) return String(Number(n.toPrecision(2)));
  if (abs < 1000) return Number.isInteger(n) ? String(n) : n.toFixed(abs < 10 ? 1 : 0);
  for (const [scale, unit] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (abs >= scale) {
      const scaled = n / scale;
      return (Math.abs(scaled) < 10 ? scaled.toFixed(1) : scaled.toFixed(0)) + unit;
    }
  }
  return String(n);
}

const fmtRate = (perSecond) => (perSecond === null || perSecond === undefined ? "–" : fmtSi(perSecond) + "/s");
const fmtPct = (share) => (share === null || share === undefined ? "–" : `${Math.round(share * 100)} %`);

/** 850 ms, 3.4 s, 2m 05s, 1h 02m, 3d 4h. */
function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const pad = (value) => String(Math.floor(value)).padStart(2, "0");
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${pad(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${pad((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d ${Math.floor((seconds % 86400) / 3600)}h`;
}

function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Clock time today, date and time otherwise. */
function fmtTime(unixMs) {
  if (!unixMs) return "–";
  const date = new Date(unixMs);
  const pad = (value) => String(value).padStart(2, "0");
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (date.toDateString() === new Date().toDateString()) return clock;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`;
}

/** A state name from the API, reduced to what may appear in a class name. */
const cssToken = (text) => String(text).toLowerCase().replace(/[^a-z0-9_-]/g, "");

// ---------------------------------------------------------------- API

class ApiError extends Error {
  /** status 0 means the coordinator could not be reached. */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    // The model registry is served beside the API, under its own prefix.
    const url = path.startsWith(REGISTRY) ? path : API + path;
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, error.message);
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, (payload && payload.error) || `HTTP ${response.status}`);
  }
  return payload;
}

/** Moves a token from the fragment (`#token=…`, `#/jobs/7?token=…`) to session storage. */
function takeTokenFromFragment() {
  const fragment = location.hash.slice(1);
  const match = /(?:^|[?&])token=([^&]*)/.exec(fragment);
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  const path = fragment.split("?")[0];
  history.replaceState(null, "", "#" + (path.startsWith("/") ? path : "/"));
}

// ---------------------------------------------------------------- charts

/** The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ value. */
function niceCeil(value, integer) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  // 2.5 × 10^k is a whole number only from 25 up.
  const mantissas = integer && power < 10 ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  const mantissa = mantissas.find((m) => m * power >= value - 1e-9);
  return Math.max(integer ? 1 : 0, mantissa * power);
}

function yDivisions(maxY, integer) {
  if (integer && maxY <= 5) return maxY;
  const mantissa = maxY / 10 ** Math.floor(Math.log10(maxY));
  return Math.abs(mantissa - 2) < 1e-9 ? 4 : 5;
}

/** Draws horizontal grid lines with their labels; returns the value → y function. */
function drawYAxis(root, { width, height, pad, maxY, integer }) {
  const plotHeight = height - pad.top - pad.bottom;
  const yOf = (value) => pad.top + plotHeight - (value / maxY) * plotHeight;
  const divisions = yDivisions(maxY, integer);
  for (let i = 0; i <= divisions; i += 1) {
    const value = (maxY * i) / divisions;
    const y = yOf(value);
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: i === 0 ? "axis" : "grid" }));
    root.append(svg("text", { x: pad.left - 6, y: y + 4, class: "tick", "text-anchor": "end" }, fmtSi(value)));
  }
  return yOf;
}

function legend(items) {
  return h("div", { class: "legend" }, items.map(([label, color]) =>
    h("span", {}, h("i", { class: "swatch", style: `background:${color}` }), label)));
}

/**
 * A step chart over time: each value holds for `bucketMs` from its time (ms). Each
 * series is `{label, color, values, area}`. The window is at least `minSpanMs` wide and
 * ends with the last bucket; before the first point the series are zero.
 */
function timeChart({ id, times, series, bucketMs = 1000, minSpanMs = 60000, width = 820, height = 250 }) {
  const pad = { left: 48, right: 14, top: 12, bottom: 26 };
  const root = svg("svg", { id, class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const maxValue = Math.max(0, ...series.flatMap((s) => s.values));
  const yOf = drawYAxis(root, { width, height, pad, maxY: niceCeil(maxValue, false), integer: false });
  const end = times[times.length - 1] + bucketMs;
  const first = Math.min(times[0], end - minSpanMs);
  const xOf = (t) => pad.left + ((t - first) / (end - first)) * (width - pad.left - pad.right);
  const tickSeconds = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]
    .find((step) => (end - first) / 1000 / step <= 8) || 7200;
  const tickMs = tickSeconds * 1000;
  for (let t = Math.ceil(first / tickMs) * tickMs; t <= end; t += tickMs) {
    const x = xOf(t);
    const clipped = x < pad.left + 20 || x > width - pad.right - 24;
    if (clipped) continue;
    root.append(svg("line", { x1: x, x2: x, y1: yOf(0), y2: yOf(0) + 4, class: "axis" }));
    const label = fmtTime(t);
    root.append(svg("text", { x, y: height - 8, class: "tick", "text-anchor": "middle" },
      tickSeconds < 60 ? label.slice(-8) : label.slice(-8, -3)));
  }
  const at = (t, v) => `${xOf(t).toFixed(1)},${yOf(v).toFixed(1)}`;
  for (const s of series) {
    const steps = s.values.map((v, i) => `L${at(times[i], v)} L${at(times[i] + bucketMs, v)}`);
    const line = `M${at(first, 0)} L${at(times[0], 0)} ${steps.join(" ")}`;
    if (s.area) {
      root.append(svg("path", { d: `${line} L${at(end, 0)} Z`, fill: s.color, "fill-opacity": 0.15, stroke: "none" }));
    }
    root.append(svg("path", {
      d: line, fill: "none", stroke: s.color, "stroke-width": 1.5, "stroke-linejoin": "round", "data-series": s.label,
    }));
  }
  return h("figure", { class: "figure" }, root, legend(series.map((s) => [s.label, s.color])));
}

/** Stacked bars: one per label, each stack `{label, color, values}`. */
function barChart({ id, labels, stacks, titles, width = 560, height = 200, integer = true }) {
  const pad = { left: 44, right: 8, top: 12, bottom: 26 };
  const root = svg("svg", { id, class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  const totals = labels.map((_, i) => stacks.reduce((sum, s) => sum + s.values[i], 0));
  const maxY = niceCeil(Math.max(...totals, 1), integer);
  const yOf = drawYAxis(root, { width, height, pad, maxY, integer });
  const slot = (width - pad.left - pad.right) / Math.max(labels.length, 1);
  const barWidth = Math.min(48, Math.max(1, slot * 0.78));
  const labelEvery = Math.ceil(labels.length / Math.floor((width - pad.left) / 64));
  labels.forEach((label, i) => {
    const x = pad.left + i * slot + (slot - barWidth) / 2;
    let base = 0;
    for (const s of stacks) {
      const value = s.values[i];
      if (value > 0) {
        root.append(svg("rect", { x, y: yOf(base + value), width: barWidth, height: yOf(base) - yOf(base + value), fill: s.color },
          svg("title", {}, `${titles ? titles[i] : label}: ${fmtInt(value)} ${s.label}`)));
      }
      base += value;
    }
    if (i % labelEvery === 0) {
      root.append(svg("text", { x: x + barWidth / 2, y: height - 8, class: "tick", "text-anchor": "middle" }, label));
    }
  });
  return h("figure", { class: "figure" }, root, stacks.length > 1 ? legend(stacks.map((s) => [s.label, s.color])) : null);
}

// ---------------------------------------------------------------- building blocks

function panel(title, body, attrs = {}) {
  return h("section", { class: "panel", ...attrs }, h("h2", {}, title), body);
}

function stat(id, label, value, sub, extraClass) {
  return h("div", { class: `stat ${extraClass || ""}` },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value", id }, value),
    sub ? h("div", { class: "stat-sub" }, sub) : null);
}

function meter(share, title) {
  const width = Math.max(0, Math.min(1, share || 0)) * 100;
  return h("span", { class: "meter", title }, h("span", { style: `width:${width.toFixed(1)}%` }));
}

function stateBadge(state) {
  return h("span", { class: `badge state-${cssToken(state)}`, "data-state": state }, state.replace("_", " "));
}

const emptyRow = (columns, text) => h("tr", { class: "empty" }, h("td", { colspan: columns }, text));

function table(id, headers, rows, attrs = {}) {
  return h("table", { id, class: "table", ...attrs },
    h("thead", {}, h("tr", {}, headers.map((header) => h("th", {}, header)))),
    h("tbody", {}, rows.length ? rows : emptyRow(headers.length, "none")));
}

/** A stage's name: `mapreduce.map` → `map`; other kinds as they are. */
function stageName(stage, index) {
  return stage.kind ? stage.kind.replace(/^mapreduce\./, "") : `stage ${index}`;
}

function progressBar(stage, jobState) {
  // A cancelled job's unfinished tasks were skipped, not failed.
  const lostClass = jobState === "cancelled" ? "seg skip" : "seg bad";
  const share = (count) => `width:${((100 * count) / Math.max(stage.total, 1)).toFixed(2)}%`;
  return h("span", { class: "progress", title: `${stage.succeeded} succeeded, ${stage.running} running, ${stage.failed} failed of ${stage.total}` },
    h("span", { class: "seg ok", style: share(stage.succeeded) }),
    h("span", { class: "seg run", style: share(stage.running) }),
    h("span", { class: lostClass, style: share(stage.failed) }));
}

function stageProgress(stages, jobState) {
  return h("div", { class: "stages" }, stages.map((stage, index) =>
    h("div", { class: "stage", "data-stage": stageName(stage, index) },
      h("span", { class: "stage-name" }, stageName(stage, index)),
      progressBar(stage, jobState),
      h("span", { class: "stage-count" }, `${fmtInt(stage.succeeded)}/${fmtInt(stage.total)}`))));
}

function jobDuration(job, nowMs) {
  return (job.finished_unix_ms || nowMs) - job.submitted_unix_ms;
}

function queueTable(queue) {
  if (!queue) return h("p", { class: "muted" }, "No statistics yet.");
  let drain;
  if (queue.saturated) drain = h("span", { class: "bad-text" }, "saturated: the backlog grows");
  else if (queue.backlog === 0) drain = "empty";
  else drain = queue.drain_seconds === null ? "unknown" : fmtMs(queue.drain_seconds * 1000);
  const growth = queue.backlog_growth_rate;
  const rows = [
    ["arrival", "Arrival rate", fmtRate(queue.arrival_rate)],
    ["completion", "Completion rate", fmtRate(queue.completion_rate)],
    ["service", "Mean service time", queue.mean_service_seconds === null ? "–" : fmtMs(queue.mean_service_seconds * 1000)],
    ["backlog", "Backlog", `${fmtInt(queue.backlog)} tasks`],
    ["growth", "Backlog growth", growth === null ? "–" : `${growth > 0 ? "+" : ""}${fmtRate(growth)}`],
    ["utilisation", "Utilisation", h("span", {}, meter(queue.utilisation), " ", fmtPct(queue.utilisation))],
    ["drain", "Drain time", drain],
    ["slots", "Slots needed", queue.slots_needed.toFixed(1)],
    ["workers", "Recommended workers", fmtInt(queue.recommended_workers)],
  ];
  return h("dl", { class: "kv queue-stats" }, rows.map(([key, label, value]) =>
    [h("dt", {}, label), h("dd", { "data-stat": key }, value)]));
}

function jobsTable(jobs, nowMs, id) {
  const rows = jobs.map((job) => {
    const waiting = job.tasks.pending + job.tasks.retrying;
    const failed = job.tasks.dead_lettered + job.tasks.purged;
    return h("tr", { class: "clickable", "data-job-id": job.id, "data-job-state": job.state, onclick: () => { location.hash = `#/jobs/${job.id}`; } },
      h("td", { class: "num" }, job.id),
      h("td", { class: "name" }, h("a", { href: `#/jobs/${job.id}`, class: "job-name" }, job.name || "(unnamed)")),
      h("td", {}, stateBadge(job.state)),
      h("td", { class: "progress-cell" }, stageProgress(job.stages, job.state)),
      h("td", { class: "counts" },
        h("span", { class: "ok-text", title: "succeeded" }, `✓ ${fmtInt(job.tasks.succeeded)}`),
        h("span", { class: "run-text", title: "running" }, `▶ ${fmtInt(job.tasks.running)}`),
        h("span", { class: "muted", title: "waiting (pending or retrying)" }, `○ ${fmtInt(waiting)}`),
        failed ? h("span", { class: "bad-text", title: "dead-lettered or purged" }, `✗ ${fmtInt(failed)}`) : null,
        job.tasks.skipped ? h("span", { class: "muted", title: "skipped (cancelled or past the deadline)" }, `${fmtInt(job.tasks.skipped)} skipped`) : null),
      h("td", { class: "time" }, fmtTime(job.submitted_unix_ms)),
      h("td", { class: "num" }, fmtMs(jobDuration(job, nowMs))));
  });
  return table(id, ["ID", "Name", "State", "Progress", "Tasks", "Submitted", "Duration"], rows, { class: "table jobs" });
}

function failureBlock(failure, key, showTask = true) {
  return h("div", { class: "failure", "data-task-index": failure.task_index, "data-key": key },
    h("div", { class: "failure-head" },
      showTask ? h("strong", {}, `task ${failure.task_index}`) : null,
      h("span", { class: "muted" }, fmtTime(failure.at_unix_ms)),
      h("span", {}, `on ${failure.worker}`),
      h("code", { class: "muted" }, failure.attempt_id),
      failure.exit_code === null ? null : h("span", { class: "badge state-failed" }, `exit ${failure.exit_code}`),
      h("span", { class: "muted" }, failure.retryable ? "retryable" : "permanent")),
    h("div", { class: "failure-message" }, failure.message),
    failure.stderr_tail ? h("pre", { class: "stderr" }, failure.stderr_tail) : null);
}

// ---------------------------------------------------------------- views

async function viewOverview(route, overview) {
  const jobs = await api("/jobs");
  const now = overview.now_unix_ms;
  const utilisation = overview.slots ? overview.busy_slots / overview.slots : 0;
  const points = overview.throughput;
  const sum = (field) => points.reduce((total, point) => total + point[field], 0);
  const chart = points.length
    ? timeChart({
      id: "throughput-chart",
      times: points.map((p) => p.unix_second * 1000),
      series: [
        { label: "committed/s", color: COLORS.committed, values: points.map((p) => p.committed), area: true },
        { label: "failed/s", color: COLORS.failed, values: points.map((p) => p.failed) },
      ],
    })
    : h("p", { class: "muted" }, "No activity yet.");
  return [
    h("h1", {}, "Cluster overview"),
    h("div", { class: "stats" },
      stat("workers-count", "Workers", fmtInt(overview.workers), h("a", { href: "#/workers" }, "see workers")),
      stat("slots-count", "Busy slots", `${fmtInt(overview.busy_slots)} / ${fmtInt(overview.slots)}`,
        h("span", {}, meter(utilisation), ` ${fmtPct(utilisation)} used`)),
      stat("jobs-running", "Jobs running", fmtInt(overview.jobs_running), `${fmtInt(overview.jobs_total)} held`),
      stat("tasks-waiting", "Tasks waiting", fmtInt(overview.tasks_waiting), "pending or retrying"),
      stat("tasks-running", "Tasks running", fmtInt(overview.tasks_running)),
      stat("dead-letters-count", "Dead letters", fmtInt(overview.dead_letters),
        h("a", { href: "#/dead-letters" }, "inspect"), overview.dead_letters ? "warn" : ""),
      stat("committed-rate", "Committed", fmtRate(overview.committed_per_second_1m), "last minute")),
    h("div", { class: "columns wide-left" },
      panel(h("span", {}, "Throughput ", h("small", { class: "muted" },
        `last 15 minutes · ${fmtInt(sum("submitted"))} submitted, ${fmtInt(sum("committed"))} committed, ${fmtInt(sum("failed"))} failed`)), chart, { id: "throughput" }),
      panel("Queue", queueTable(overview.queue), { id: "cluster-queue" })),
    panel(h("span", {}, "Recent jobs ", h("a", { href: "#/jobs", class: "small" }, "all jobs →")),
      jobsTable(jobs.slice(0, 8), now, "recent-jobs")),
  ];
}

async function viewJobs(route, overview) {
  const jobs = await api("/jobs");
  const running = jobs.filter((job) => job.state === "running").length;
  return [
    h("h1", {}, "Jobs ", h("small", { class: "muted" }, `${jobs.length} held, ${running} running`)),
    h("section", { class: "panel" }, jobsTable(jobs, overview.now_unix_ms, "jobs-table")),
  ];
}

async function cancelJob(job) {
  if (!confirm(`Cancel job ${job.id} (${job.name})? Its pending tasks are skipped and its running attempts stopped.`)) return;
  try {
    await api(`/jobs/${job.id}/cancel`, { method: "POST" });
    showNotice(`Job ${job.id} cancelled.`);
  } catch (error) {
    showError(error);
  }
  refresh();
}

function workerLoad(shares) {
  if (!shares.length) return h("p", { class: "muted" }, "No attempt committed yet.");
  const maxCommitted = Math.max(...shares.map((s) => s.committed), 1);
  const maxBusy = Math.max(...shares.map((s) => s.busy_ms), 1);
  const meanCommitted = shares.reduce((total, s) => total + s.committed, 0) / shares.length;
  const busiest = maxCommitted / Math.max(meanCommitted, 1e-9);
  // Below a few tasks per worker, chance alone makes the shares uneven.
  const judged = shares.length >= 2 && meanCommitted >= 10;
  const balanced = busiest <= 1.25;
  let balance = `the busiest worker committed ${busiest.toFixed(2)}× the mean`;
  if (shares.length < 2) balance = "one worker did it all";
  else if (!judged) balance = `too few tasks to judge the balance (${balance})`;
  else balance = `${balanced ? "balanced" : "unbalanced"}: ${balance}`;
  const rows = shares.map((share) => h("tr", { "data-worker-name": share.name },
    h("td", { class: "name" }, share.name),
    h("td", { class: "bar-cell" }, h("span", { class: "hbar ok", style: `width:${(75 * share.committed / maxCommitted).toFixed(1)}%` }),
      h("span", { class: "hbar-label" }, fmtInt(share.committed))),
    h("td", { class: "bar-cell" }, h("span", { class: "hbar busy", style: `width:${(75 * share.busy_ms / maxBusy).toFixed(1)}%` }),
      h("span", { class: "hbar-label" }, fmtMs(share.busy_ms))),
    h("td", { class: share.failed ? "num bad-text" : "num" }, fmtInt(share.failed))));
  return h("div", {},
    h("p", { class: judged && !balanced ? "warn-text" : "muted", id: "load-balance" }, balance),
    table("worker-load", ["Worker", "Committed", "Busy time", "Failed"], rows));
}

function durationHistogram(durations) {
  if (!durations.count) return h("p", { class: "muted" }, "No attempt committed yet.");
  const counts = durations.counts;
  const first = counts.findIndex((count) => count > 0);
  const last = counts.length - 1 - [...counts].reverse().findIndex((count) => count > 0);
  const bounds = durations.bounds_ms;
  const label = (i) => (i < bounds.length ? `≤${fmtMs(bounds[i])}` : `>${fmtMs(bounds[bounds.length - 1])}`);
  const indices = [];
  for (let i = Math.max(0, first - 1); i <= Math.min(counts.length - 1, last + 1); i += 1) indices.push(i);
  const stats = [["mean", durations.mean_ms], ["min", durations.min_ms], ["p50 ≤", durations.p50_ms],
    ["p95 ≤", durations.p95_ms], ["p99 ≤", durations.p99_ms], ["max", durations.max_ms]];
  return h("div", {},
    barChart({
      id: "duration-histogram",
      labels: indices.map(label),
      stacks: [{ label: "attempts", color: COLORS.busy, values: indices.map((i) => counts[i]) }],
    }),
    h("div", { class: "inline-stats" }, `${fmtInt(durations.count)} attempts`,
      stats.map(([name, value]) => h("span", {}, `${name} `, h("strong", {}, fmtMs(value))))));
}

async function viewJob(route, overview) {
  let detail;
  try {
    detail = await api(`/jobs/${route.jobId}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    return [h("h1", {}, `Job ${route.jobId}`), h("p", { class: "muted", id: "job-missing" }, error.message),
      h("a", { href: "#/jobs" }, "← all jobs")];
  }
  const job = detail.job;
  const history = detail.history;
  const tasks = job.tasks;
  const waiting = tasks.pending + tasks.retrying;
  const timeline = history.timeline;
  const counterRows = Object.entries(detail.counters).map(([name, value]) =>
    h("tr", { "data-counter": name }, h("td", {}, name), h("td", { class: "num" }, fmtInt(value),
      name.endsWith("bytes") && value >= 1024 ? h("span", { class: "muted" }, ` (${fmtBytes(value)})`) : null)));
  const slowRows = history.slowest.map((slow) => h("tr", { class: slow.running ? "running" : "", "data-task-index": slow.task_index },
    h("td", { class: "num" }, slow.task_index),
    h("td", { class: "num" }, fmtMs(slow.duration_ms)),
    h("td", {}, slow.worker),
    h("td", {}, slow.running ? h("span", { class: "badge state-running" }, "running") : "committed")));
  const stateCounts = [["pending", tasks.pending], ["running", tasks.running], ["retrying", tasks.retrying],
    ["succeeded", tasks.succeeded], ["dead_lettered", tasks.dead_lettered], ["purged", tasks.purged], ["skipped", tasks.skipped]];
  return h("div", { id: "job-page", "data-job-id": job.id, "data-job-state": job.state },
    h("div", { class: "page-head" },
      h("a", { href: "#/jobs", class: "back" }, "← Jobs"),
      h("h1", {}, h("span", { class: "muted" }, `Job ${job.id} · `), h("span", { id: "job-name" }, job.name || "(unnamed)")),
      stateBadge(job.state),
      job.state === "running"
        ? h("button", { id: "cancel-job", class: "danger", type: "button", onclick: () => cancelJob(job) }, "Cancel job")
        : null),
    job.reason ? h("p", { class: "reason", id: "job-reason" }, job.reason) : null,
    h("div", { class: "stats" },
      stat("job-total", "Tasks", fmtInt(job.total), `priority ${job.priority}`),
      stat("job-succeeded", "Succeeded", fmtInt(tasks.succeeded), fmtPct(tasks.succeeded / Math.max(job.total, 1))),
      stat("job-running", "Running", fmtInt(tasks.running)),
      stat("job-waiting", "Waiting", fmtInt(waiting), `${fmtInt(tasks.retrying)} retrying`),
      stat("job-dead-lettered", "Dead-lettered", fmtInt(tasks.dead_lettered), null, tasks.dead_lettered ? "warn" : ""),
      stat("job-attempts", "Attempts", fmtInt(job.attempts_started), `${fmtInt(job.attempts_failed)} failed`),
      stat("job-duration", "Duration", fmtMs(jobDuration(job, overview.now_unix_ms)), `since ${fmtTime(job.submitted_unix_ms)}`)),
    panel("Progress", h("div", { class: "columns tight" },
      h("div", { id: "job-stages" }, stageProgress(job.stages, job.state)),
      h("dl", { class: "kv four", id: "task-states" }, stateCounts.map(([state, count]) =>
        [h("dt", {}, stateBadge(state)), h("dd", { "data-state-count": state }, fmtInt(count))])))),
    panel(h("span", {}, "Timeline ", h("small", { class: "muted" }, `committed and failed attempts per ${fmtMs(history.bucket_ms)}`)),
      timeline.length
        ? barChart({
          id: "timeline-chart",
          width: 1160,
          height: 170,
          labels: timeline.map((b) => fmtTime(b.start_unix_ms)),
          stacks: [
            { label: "committed", color: COLORS.committed, values: timeline.map((b) => b.committed) },
            { label: "failed", color: COLORS.failed, values: timeline.map((b) => b.failed) },
          ],
        })
        : h("p", { class: "muted" }, "Nothing happened yet.")),
    h("div", { class: "columns" },
      panel("Load per worker", workerLoad(history.workers)),
      panel("Task durations", durationHistogram(history.durations))),
    h("div", { class: "columns" },
      panel("Slowest tasks", table("slowest-tasks", ["Task", "Duration", "Worker", ""], slowRows)),
      panel("Counters", counterRows.length ? table("counters", ["Counter", "Value"], counterRows)
        : h("p", { class: "muted", id: "counters" }, "No counters reported (MapReduce tasks report theirs)."))),
    h("div", { class: "columns" },
      panel("Queue", job.state === "running" ? queueTable(detail.queue)
        : h("p", { class: "muted" }, "Queue statistics are kept while the job runs."), { id: "job-queue" }),
      panel("Attempts", h("dl", { class: "kv" },
        [["Started", job.attempts_started], ["Failed", job.attempts_failed], ["Results rejected", job.results_rejected],
          ["Speculative copies", job.speculative_attempts], ["Outputs lost", job.outputs_lost]]
          .map(([label, value]) => [h("dt", {}, label), h("dd", {}, fmtInt(value))])))),
    panel("Recent failures", history.recent_failures.length
      ? h("div", { id: "recent-failures" },
        history.recent_failures.slice(0, 4).map((f) => failureBlock(f, `f-${f.attempt_id}`)),
        history.recent_failures.length > 4
          ? h("details", { "data-key": "more-failures" }, h("summary", {}, `${history.recent_failures.length - 4} more`),
            history.recent_failures.slice(4).map((f) => failureBlock(f, `f-${f.attempt_id}`)))
          : null)
      : h("p", { class: "muted", id: "recent-failures" }, "No failure.")));
}

async function viewWorkers(route, overview) {
  const workers = await api("/workers");
  workers.sort((a, b) => a.name.localeCompare(b.name));
  const rows = workers.map((worker) => {
    const stale = worker.last_heartbeat_age_ms > STALE_HEARTBEAT_MS;
    return h("tr", { "data-worker-id": worker.id, "data-worker-name": worker.name, class: stale ? "stale" : "" },
      h("td", { class: "name" }, worker.name),
      h("td", {}, h("code", {}, worker.id)),
      h("td", { class: "num" }, fmtInt(worker.slots)),
      h("td", { class: "nowrap" }, meter(worker.busy_slots / Math.max(worker.slots, 1)), ` ${fmtInt(worker.busy_slots)}`),
      h("td", { class: "num" }, fmtInt(worker.held_attempts)),
      h("td", { class: stale ? "num bad-text" : "num", "data-heartbeat-age-ms": worker.last_heartbeat_age_ms },
        `${fmtMs(worker.last_heartbeat_age_ms)} ago`),
      h("td", { "data-draining": worker.draining }, worker.draining
        ? h("span", { class: "badge state-retrying" }, "draining") : h("span", { class: "badge state-succeeded" }, "active")),
      h("td", {}, worker.kinds.map((kind) => h("span", { class: "chip" }, kind))));
  });
  return [
    h("h1", {}, "Workers ", h("small", { class: "muted" },
      `${workers.length} live · ${fmtInt(overview.slots)} slots · ${fmtInt(overview.busy_slots)} busy`)),
    h("section", { class: "panel" },
      table("workers-table", ["Name", "ID", "Slots", "Busy", "Held attempts", "Last heartbeat", "State", "Kinds"], rows)),
  ];
}

// A unit whose last commit is older than this is shown as stalled.
const STALLED_COMMIT_S = 60;

function unitRow(unit) {
  const age = unit.last_commit_age_s;
  const stalled = age !== null && age > STALLED_COMMIT_S;
  return h("tr", { "data-unit": `${unit.stage}/${unit.unit}`, "data-worker-name": unit.worker_name, class: stalled ? "stale" : "" },
    h("td", {}, `${unit.stage} ${unit.unit}`),
    h("td", { class: "name" }, unit.worker_name || h("code", {}, unit.worker)),
    h("td", { class: "num", "data-lag": unit.lag }, fmtInt(unit.lag)),
    h("td", { class: "num" }, fmtSi(unit.records_per_second)),
    h("td", { class: "num" }, fmtInt(unit.records_in)),
    h("td", { class: "num" }, fmtInt(unit.records_out)),
    h("td", { class: stalled ? "num bad-text" : "num" }, age === null ? "—" : `${fmtMs(age * 1000)} ago`),
    h("td", { class: unit.dead_letters ? "num bad-text" : "num" }, fmtInt(unit.dead_letters)));
}

async function viewStreams() {
  const pipelines = await api("/streams");
  if (pipelines.length === 0) {
    return [h("h1", {}, "Streams"), h("p", { class: "muted", id: "no-streams" }, "No pipeline is running.")];
  }
  return [
    h("h1", {}, "Streams ", h("small", { class: "muted" }, `${pipelines.length} running`)),
    ...pipelines.map((pipeline) => h("section", { class: "panel", "data-pipeline": pipeline.pipeline },
      h("h2", {}, pipeline.pipeline),
      h("div", { class: "stats" },
        stat(`lag-${pipeline.pipeline}`, "Lag", fmtInt(pipeline.lag), "messages not yet read"),
        stat(`rate-${pipeline.pipeline}`, "Throughput", fmtSi(pipeline.records_per_second), "records/s read"),
        stat(`workers-${pipeline.pipeline}`, "Workers", fmtInt(pipeline.workers),
          `${fmtInt(pipeline.recommended_workers)} recommended`,
          pipeline.recommended_workers > pipeline.workers ? "warn" : "")),
      table(`units-${pipeline.pipeline}`,
        ["Unit", "Worker", "Lag", "Records/s", "Read", "Written", "Last commit", "Dead letters"],
        pipeline.units.map(unitRow)))),
  ];
}

function lineageText(lineage) {
  const parts = [];
  if (lineage.training_job != null) parts.push(`train #${lineage.training_job}`);
  if (lineage.evaluation_job != null) parts.push(`eval #${lineage.evaluation_job}`);
  if (lineage.input) parts.push(`input ${lineage.input.sha256.slice(0, 12)}`);
  return parts.length ? parts.join(" · ") : "—";
}

function useChip(use) {
  const role = use.role === "primary" ? "" : ` (${use.rollout} ${use.role})`;
  return h("span", { class: "chip", "data-served-by": use.runner, title: `${use.reference} at ${use.address}` },
    `${use.runner}${role}`);
}

function versionRow(model, version) {
  const metrics = Object.entries(version.metrics).map(([name, value]) => `${name} ${value.toFixed(4)}`);
  const stage = version.stage ? h("span", { class: `badge stage-${cssToken(version.stage)}` }, version.stage) : "—";
  return h("tr", { "data-model": model.name, "data-version": version.version, class: version.archived ? "stale" : "" },
    h("td", { class: "num" }, String(version.version)),
    h("td", {}, stage),
    h("td", {}, version.aliases.length ? version.aliases.join(", ") : "—"),
    h("td", {}, metrics.length ? metrics.join(" · ") : "—"),
    h("td", {}, lineageText(version.lineage)),
    h("td", {}, h("code", { title: version.sha256 }, version.sha256.slice(0, 12))),
    h("td", { "data-used-by": version.used_by.map((use) => use.runner).join(" ") },
      version.used_by.length ? version.used_by.map(useChip) : h("span", { class: "muted" }, "not served")));
}

function runnerRow(runner) {
  const serves = runner.models.map((served) => `${served.name} (${served.rollout})`).join(", ");
  return h("tr", { "data-runner": runner.runner },
    h("td", { class: "name" }, runner.runner),
    h("td", {}, h("code", {}, runner.address)),
    h("td", { class: "num" }, `${fmtMs(runner.age_ms)} ago`),
    h("td", {}, serves));
}

async function viewModels() {
  const view = await api(`${REGISTRY}/governance`);
  const served = view.runners.length;
  return [
    h("h1", {}, "Models ", h("small", { class: "muted" }, `${view.models.length} registered · ${served} runner${served === 1 ? "" : "s"} serving`)),
    view.models.length === 0 ? h("p", { class: "muted", id: "no-models" }, "No model is registered.") : null,
    ...view.models.map((model) => h("section", { class: "panel", "data-model-panel": model.name },
      h("h2", {}, model.name),
      table(`versions-${model.name}`, ["Version", "Stage", "Aliases", "Metrics", "Lineage", "Artifact", "Served by"],
        model.versions.map((version) => versionRow(model, version))),
      model.waiting.length
        ? h("p", { class: "muted" }, "Loading: ", model.waiting.map(useChip))
        : null)),
    panel("Runners", table("runners-table", ["Runner", "Address", "Last report", "Serves"], view.runners.map(runnerRow))),
  ];
}

async function deadLetterAction(action, jobId, jobName) {
  const verb = action === "requeue" ? "Requeue" : "Purge for good";
  if (!confirm(`${verb} every dead letter of job ${jobId} (${jobName})?`)) return;
  try {
    const change = await api(`/dead-letters/${action}`, { method: "POST", body: { job_id: jobId } });
    showNotice(`${action === "requeue" ? "Requeued" : "Purged"} ${change.affected} dead letter(s) of job ${jobId}.`);
  } catch (error) {
    showError(error);
  }
  refresh();
}

async function viewDeadLetters() {
  const letters = await api("/dead-letters");
  const byJob = new Map();
  for (const letter of letters) {
    if (!byJob.has(letter.job_id)) byJob.set(letter.job_id, []);
    byJob.get(letter.job_id).push(letter);
  }
  const newestFirst = [...byJob.entries()].sort(([a], [b]) => b - a);
  const groups = newestFirst.map(([jobId, jobLetters]) => {
    const jobName = jobLetters[0].job_name;
    const rows = jobLetters.map((letter) => {
      const last = letter.errors[letter.errors.length - 1];
      const key = `${letter.job_id}:${letter.task_index}`;
      let payload = letter.payload_text;
      if (payload === null) payload = `(${fmtBytes(letter.payload_bytes)} of binary)`;
      else if (payload === "") payload = "(empty payload)";
      else if (payload.length > 300) payload = payload.slice(0, 300) + "…";
      const earlier = letter.errors.slice(0, -1).reverse();
      return h("div", { class: "letter", "data-dead-letter": key, "data-job-id": letter.job_id, "data-task-index": letter.task_index },
        h("div", { class: "letter-head" },
          h("strong", {}, `task ${letter.task_index}`),
          h("span", { class: "chip" }, letter.kind),
          h("code", { class: "payload", title: `${fmtBytes(letter.payload_bytes)} payload` }, payload),
          h("span", { class: "muted" }, `${letter.errors.length} failure(s), last:`)),
        last ? failureBlock(last, `dl-${key}-last`, false) : null,
        earlier.length ? h("details", { "data-key": `dl-${key}` },
          h("summary", {}, `${earlier.length} earlier failure(s)`),
          earlier.map((error, i) => failureBlock(error, `dl-${key}-${i}`, false))) : null);
    });
    return h("section", { class: "panel", "data-job-id": jobId },
      h("div", { class: "panel-head" },
        h("h2", {}, h("a", { href: `#/jobs/${jobId}` }, `Job ${jobId} · `, jobName || "(unnamed)"),
          h("small", { class: "muted" }, ` ${jobLetters.length} dead letter(s)`)),
        h("div", { class: "actions" },
          h("button", { type: "button", "data-action": "requeue", "data-job-id": jobId, onclick: () => deadLetterAction("requeue", jobId, jobName) }, "Requeue all"),
          h("button", { type: "button", class: "danger", "data-action": "purge", "data-job-id": jobId, onclick: () => deadLetterAction("purge", jobId, jobName) }, "Purge all"))),
      rows);
  });
  return [
    h("h1", {}, "Dead letters ", h("small", { class: "muted", id: "dead-letters-total" }, `${letters.length} in ${byJob.size} job(s)`)),
    groups.length ? h("div", { id: "dead-letters" }, groups)
      : h("section", { class: "panel", id: "dead-letters" }, h("p", { class: "muted" }, "The dead-letter queue is empty.")),
  ];
}

function viewNotFound(route) {
  return [h("h1", {}, "Not found"), h("p", {}, `No page at #${route.path}. `, h("a", { href: "#/" }, "Back to the overview"))];
}

const VIEWS = {
  overview: viewOverview,
  jobs: viewJobs,
  job: viewJob,
  workers: viewWorkers,
  streams: viewStreams,
  models: viewModels,
  "dead-letters": viewDeadLetters,
  "not-found": viewNotFound,
};

// ---------------------------------------------------------------- routing and refresh

function parseRoute() {
  const path = location.hash.slice(1).split("?")[0] || "/";
  const job = /^\/jobs\/(\d+)$/.exec(path);
  if (job) return { view: "job", jobId: Number(job[1]) };
  const views = { "/": "overview", "/jobs": "jobs", "/workers": "workers", "/streams": "streams", "/models": "models", "/dead-letters": "dead-letters" };
  return { view: views[path] || "not-found", path };
}

const state = { route: parseRoute(), generation: 0, inFlight: -1, paused: false };

function showView(view, content, sameRoute) {
  const main = $("view");
  // Keep what the reader opened and where they were across refreshes.
  const open = new Set([...main.querySelectorAll("details[open][data-key]")].map((d) => d.dataset.key));
  const scroll = window.scrollY;
  main.replaceChildren(...[content].flat());
  for (const details of main.querySelectorAll("details[data-key]")) details.open = open.has(details.dataset.key);
  main.dataset.view = view;
  main.dataset.loaded = "true";
  window.scrollTo(0, sameRoute ? scroll : 0);
}

function showError(error) {
  const needsToken = error.status === 401;
  $("error-text").textContent = needsToken
    ? `The coordinator wants the cluster token (${error.message}). Enter it below, or open the page with #token=….`
    : error.status === 0
      ? `Cannot reach the coordinator (${error.message}); retrying every ${REFRESH_MS / 1000} s.`
      : `The coordinator answered ${error.status}: ${error.message}`;
  $("error-banner").dataset.status = error.status;
  $("error-banner").hidden = false;
  $("token-form").hidden = !needsToken;
  $("last-updated").textContent = needsToken ? "token needed" : "not updated";
  if (!$("view").dataset.loaded) {
    $("view").replaceChildren(h("p", { class: "muted" }, needsToken ? "Waiting for the cluster token." : "Waiting for the coordinator."));
  }
}

function clearError() {
  $("error-banner").hidden = true;
  $("token-form").hidden = true;
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(showNotice.timer);
  showNotice.timer = setTimeout(() => { notice.hidden = true; }, 6000);
}

// The header names the leading coordinator and its epoch (several coordinators elected
// through etcd), or nothing for a single coordinator. Best effort: never an error banner.
async function showCluster() {
  try {
    const cluster = await api("/cluster");
    const text = cluster.mode === "etcd"
      ? `leader ${cluster.leader ?? "none"} · epoch ${cluster.epoch ?? "?"} · ${cluster.standbys.length} standby`
      : "";
    $("cluster-role").textContent = text;
  } catch (_) {
    $("cluster-role").textContent = "";
  }
}

async function refresh() {
  const generation = state.generation;
  showCluster();
  if (state.inFlight === generation) return; // the previous refresh of this page is still running
  state.inFlight = generation;
  const route = state.route;
  const firstOfRoute = $("view").dataset.generation !== String(generation);
  try {
    const overview = await api("/overview");
    const content = await VIEWS[route.view](route, overview);
    if (generation !== state.generation) return; // the reader moved on meanwhile
    showView(route.view, content, !firstOfRoute);
    $("view").dataset.generation = generation;
    const pill = $("nav-dead-letters");
    pill.textContent = fmtInt(overview.dead_letters);
    pill.hidden = overview.dead_letters === 0;
    clearError();
    $("last-updated").textContent = state.paused ? "paused" : `updated ${fmtTime(Date.now())}`;
  } catch (error) {
    if (generation === state.generation) showError(error);
  } finally {
    if (state.inFlight === generation) state.inFlight = -1;
  }
}

function navigate() {
  takeTokenFromFragment();
  state.route = parseRoute();
  state.generation += 1;
  const section = state.route.view === "job" ? "jobs" : state.route.view;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.nav === section);
  }
  refresh();
}

function start() {
  $("refresh-toggle").addEventListener("click", () => {
    state.paused = !state.paused;
    $("refresh-toggle").textContent = state.paused ? "Resume" : "Pause";
    $("refresh-toggle").classList.toggle("paused", state.paused);
    $("last-updated").textContent = state.paused ? "paused" : "resuming…";
    if (!state.paused) refresh();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    refresh();
  });
  window.addEventListener("hashchange", navigate);
  setInterval(() => {
    if (!state.paused && !document.hidden) refresh();
  }, REFRESH_MS);
  navigate();
}

start();
