// Inline SVG charts drawn by our own code (no chart library): set vs actual
// weight over time, and one AnalysisRun metric's measurements against its
// condition. Used by rollouts.js.

import { h, s } from "./dom.js";

const W = 560;
const H = 180;
const PAD = { left: 40, right: 12, top: 10, bottom: 26 };

function scale(domainMin, domainMax, rangeMin, rangeMax) {
  const span = domainMax - domainMin || 1;
  return (value) => rangeMin + ((value - domainMin) / span) * (rangeMax - rangeMin);
}

function clock(ms) {
  return new Date(ms).toISOString().slice(11, 19);
}

function frame(yTicks, y, label) {
  const parts = [];
  for (const tick of yTicks) {
    parts.push(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(tick.value), y2: y(tick.value), class: "grid" }));
    parts.push(s("text", { x: PAD.left - 6, y: y(tick.value) + 4, class: "tick", "text-anchor": "end" }, tick.text));
  }
  return s("g", { "aria-hidden": "true" }, parts, s("title", {}, label));
}

/** A step line through (x, y) points: weights hold until the next sample. */
function stepPath(points) {
  let d = "";
  points.forEach(([x, y], i) => {
    if (i === 0) d += `M${x.toFixed(1)},${y.toFixed(1)}`;
    else d += `H${x.toFixed(1)}V${y.toFixed(1)}`;
  });
  return d;
}

/** Set vs actual canary weight over the samples the server has seen. */
export function weightChart(history, { setWeight, actualWeight }) {
  const samples = (history || []).filter((p) => p.time);
  const now = Date.now();
  // A live rollout with no samples yet still gets a chart: today's weights, now.
  if (!samples.length) samples.push({ time: new Date(now).toISOString(), setWeight, actualWeight });
  const times = samples.map((p) => new Date(p.time).getTime());
  const t0 = Math.min(...times);
  const t1 = Math.max(now, ...times, t0 + 60000);
  const x = scale(t0, t1, PAD.left, W - PAD.right);
  const y = scale(0, 100, H - PAD.bottom, PAD.top);
  const series = (key) => {
    const pts = samples.filter((p) => p[key] !== null && p[key] !== undefined)
      .map((p) => [x(new Date(p.time).getTime()), y(p[key])]);
    if (pts.length) pts.push([x(t1), pts[pts.length - 1][1]]);
    return pts;
  };
  const set = series("setWeight");
  const actual = series("actualWeight");
  const ticks = [0, 25, 50, 75, 100].map((v) => ({ value: v, text: `${v}%` }));
  const summary = `Canary weight over time: set ${setWeight ?? "—"}%, actual ${actualWeight ?? "—"}%`;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": summary },
    frame(ticks, y, summary),
    s("text", { x: PAD.left, y: H - 6, class: "tick" }, clock(t0)),
    s("text", { x: W - PAD.right, y: H - 6, class: "tick", "text-anchor": "end" }, clock(t1)),
    set.length ? s("path", { d: stepPath(set), class: "line line-set" }) : null,
    actual.length ? s("path", { d: stepPath(actual), class: "line line-actual" }) : null);
  return h("figure", { class: "chart-figure", testid: "weight-chart" }, svg,
    h("figcaption", { class: "legend" },
      h("span", { class: "key key-set" }, "set weight"),
      h("span", { class: "key key-actual" }, "actual weight"),
      h("span", { class: "muted" }, `${samples.length} sample${samples.length === 1 ? "" : "s"} since the dashboard started`)));
}

// "result[0] < 0.5", "result <= 200", "0.9 < result": a threshold to draw; anything else is text only.
const THRESHOLD = /^\s*(?:result(?:\[\d+\])?\s*(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)|(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*(<=|>=|<|>)\s*result(?:\[\d+\])?)\s*$/i;

export function threshold(condition) {
  const match = THRESHOLD.exec(condition || "");
  if (!match) return null;
  return match[2] !== undefined ? Number(match[2]) : Number(match[3]);
}

// A one-sample vector is stored as "[0.13]"; when the server sent no number, read it from that.
const ONE_SAMPLE = /^\s*\[\s*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s*\]\s*$/i;

export function numberOf(m) {
  if (typeof m.number === "number") return m.number;
  const match = ONE_SAMPLE.exec(String(m.value ?? ""));
  return match ? Number(match[1]) : null;
}

const PHASE_CLASS = { Successful: "pt-ok", Failed: "pt-bad", Error: "pt-err", Inconclusive: "pt-warn" };

/**
 * One metric's measurements in order: numbers as points (failed ones as a cross), the
 * conditions' thresholds as dashed lines, and measurements without a number (errors,
 * non-numeric results) as grey ticks on the bottom edge so they are not silently dropped.
 */
export function metricChart(metric) {
  const all = (metric.measurements || []).map((m) => ({ ...m, number: numberOf(m) }));
  const numeric = all.filter((m) => typeof m.number === "number");
  const lines = [metric.successCondition, metric.failureCondition]
    .map((cond) => ({ cond, value: threshold(cond) })).filter((l) => l.cond && l.value !== null);
  const values = [...numeric.map((m) => m.number), ...lines.map((l) => l.value)];
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const margin = (hi - lo) * 0.1;
  lo -= margin; hi += margin;
  const x = scale(0, Math.max(1, all.length - 1), PAD.left + 8, W - PAD.right - 8);
  const y = scale(lo, hi, H - PAD.bottom, PAD.top);
  const fmt = (v) => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : String(+v.toFixed(3)));
  const ticks = [lo, (lo + hi) / 2, hi].map((v) => ({ value: v, text: fmt(v) }));
  const failed = all.filter((m) => m.phase === "Failed").length;
  const errors = all.length - numeric.length;
  const summary = `${metric.name}: ${all.length} measurements, ${failed} failed, ${errors} without a number`;
  const marks = all.map((m, i) => {
    const cx = x(i);
    const tip = s("title", {}, `#${i + 1} ${m.value ?? ""} — ${m.phase} at ${m.finishedAt || m.startedAt || "?"}`);
    if (typeof m.number !== "number") {
      const by = H - PAD.bottom;
      return s("path", { d: `M${cx},${by - 9}L${cx - 5},${by}L${cx + 5},${by}Z`, class: "pt pt-err" }, tip);
    }
    const cy = y(m.number);
    if (m.phase === "Failed") {
      return s("g", { class: "pt pt-bad" }, tip,
        s("path", { d: `M${cx - 5},${cy - 5}L${cx + 5},${cy + 5}M${cx - 5},${cy + 5}L${cx + 5},${cy - 5}` }));
    }
    return s("circle", { cx, cy, r: 4, class: `pt ${PHASE_CLASS[m.phase] || "pt-err"}` }, tip);
  });
  const path = all.map((m, i) => (typeof m.number === "number" ? [x(i), y(m.number)] : null)).filter(Boolean)
    .map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join("");
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": summary },
    frame(ticks, y, summary),
    lines.map((l) => s("g", {},
      s("line", { x1: PAD.left, x2: W - PAD.right, y1: y(l.value), y2: y(l.value), class: "threshold" }),
      s("text", { x: W - PAD.right, y: y(l.value) - 4, class: "tick", "text-anchor": "end" }, l.cond))),
    numeric.length > 1 ? s("path", { d: path, class: "line line-metric" }) : null,
    marks,
    all.length ? null : s("text", { x: W / 2, y: H / 2, class: "tick", "text-anchor": "middle" }, "no measurements yet"));
  return h("figure", { class: "chart-figure metric-chart", "data-metric": metric.name }, svg,
    h("figcaption", { class: "legend" },
      h("span", {}, "success: ", h("code", {}, metric.successCondition || "—")),
      h("span", {}, "failure: ", h("code", {}, metric.failureCondition || "—")),
      h("span", { class: "key key-ok" }, "successful"),
      h("span", { class: "key key-bad" }, `failed (${failed})`),
      errors ? h("span", { class: "key key-err" }, `error / no number (${errors})`) : null));
}
