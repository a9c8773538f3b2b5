// The Rollouts pages: the list (#/rollouts) and one rollout (#/rollouts/<ns>/<name>).
// Each page is {refresh(), wants(event)}: app.js re-fetches when an SSE event names it.

import { h, fill, badge, card, table, pct, ago, fmtTime } from "./dom.js";
import { getJSON, rolloutPath, getConfig } from "./api.js";
import { actionButton } from "./ui.js";
import { weightChart, metricChart } from "./charts.js";

const STATUS_ORDER = ["Healthy", "Progressing", "Paused", "Degraded"];

function imagesLine(images) {
  return (images || []).map((img) => h("div", { class: "image" },
    h("code", {}, img.image), " ", (img.tags || []).map((tag) => h("span", { class: `tag tag-${tag}` }, tag))));
}

function stepText(r) {
  return r.step === null || r.step === undefined ? "—" : `${r.step}/${r.steps}`;
}

export function rolloutsList(root) {
  let items = [];
  const counts = h("div", { class: "counts", "aria-label": "Status counts" });
  const search = h("input", { type: "search", class: "search", placeholder: "Filter by name, namespace or image",
    "aria-label": "Filter rollouts" });
  const body = h("tbody");
  const empty = h("p", { class: "muted", hidden: true });
  root.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Rollouts"), counts),
    search,
    h("table", { class: "table rows" },
      h("thead", {}, h("tr", {}, ["Name", "Namespace", "Status", "Step", "Set weight", "Actual", "Ready", "Images"]
        .map((t) => h("th", { scope: "col" }, t)))),
      body),
    empty);

  function draw() {
    const needle = search.value.trim().toLowerCase();
    const shown = items.filter((r) => !needle || [r.name, r.namespace, ...(r.images || []).map((i) => i.image)]
      .some((text) => String(text).toLowerCase().includes(needle)));
    body.replaceChildren(...shown.map((r) => {
      const href = `#/rollouts/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`;
      return h("tr", { testid: "rollout-row", "data-name": r.name, "data-namespace": r.namespace },
        h("td", {}, h("a", { href }, r.name)),
        h("td", {}, r.namespace),
        h("td", {}, badge(r.status, { testid: "rollout-status" }), h("div", { class: "small muted" }, r.message || "")),
        h("td", { class: "num" }, stepText(r)),
        h("td", { class: "num" }, pct(r.setWeight)),
        h("td", { class: "num" }, pct(r.actualWeight)),
        h("td", { class: "num" }, `${r.replicas?.ready ?? 0}/${r.replicas?.desired ?? 0}`),
        h("td", {}, imagesLine(r.images)));
    }));
    empty.hidden = shown.length > 0;
    empty.textContent = items.length ? "No rollout matches the filter." : "No rollouts in the watched namespaces.";
  }
  search.addEventListener("input", draw);

  return {
    wants: (ev) => ev.kind === "rollout",
    async refresh() {
      const data = await getJSON("/api/rollouts");
      items = data.items || [];
      const all = { ...Object.fromEntries(STATUS_ORDER.map((k) => [k, 0])), ...(data.counts || {}) };
      counts.replaceChildren(...Object.entries(all).map(([status, n]) =>
        h("span", { class: "count" }, badge(status), h("strong", {}, String(n)))));
      draw();
    },
  };
}

function actions(r, ns, name, reload) {
  const url = (action) => `${rolloutPath(ns, name)}/${action}`;
  // Resume lifts a user's pause (spec.paused: the status says "manually paused"); a pause step
  // is ended by Promote instead, so on one the button offered is still Pause.
  const manual = r.status === "Paused" && /manually paused/i.test(r.message || "");
  const settled = r.status === "Healthy";
  const aborted = r.status === "Degraded";
  const buttons = [
    actionButton({ label: "Promote", testid: "btn-promote", url: url("promote"), disabled: settled || aborted,
      confirm: `Promote ${ns}/${name} to its next step?`, onDone: reload }),
    actionButton({ label: "Promote full", testid: "btn-promote-full", url: url("promote-full"),
      disabled: settled || aborted,
      confirm: `Skip the remaining steps and analysis of ${ns}/${name} and send all traffic to the canary?`,
      onDone: reload }),
    actionButton({ label: "Abort", testid: "btn-abort", url: url("abort"), danger: true, askReason: true,
      disabled: settled || aborted, body: (answer) => (answer.reason ? { reason: answer.reason } : {}),
      confirm: `Abort the update of ${ns}/${name}? Traffic returns to the stable version.`, onDone: reload }),
    actionButton({ label: "Retry", testid: "btn-retry", url: url("retry"), disabled: !aborted,
      confirm: `Retry the aborted update of ${ns}/${name} from its first step?`, onDone: reload }),
    manual
      ? actionButton({ label: "Resume", testid: "btn-resume", url: url("resume"),
        confirm: `Resume ${ns}/${name}?`, onDone: reload })
      : actionButton({ label: "Pause", testid: "btn-pause", url: url("pause"), disabled: settled || aborted,
        confirm: `Pause ${ns}/${name} where it is?`, onDone: reload }),
  ].filter(Boolean);
  return buttons.length ? h("div", { class: "actions", role: "group", "aria-label": "Actions" }, buttons) : null;
}

function header(r, ns, name, reload) {
  const fact = (label, value, testid) => h("div", { class: "fact" },
    h("dt", {}, label), h("dd", testid ? { testid } : {}, value));
  return h("section", { class: "card header" },
    h("div", { class: "title-row" },
      h("h1", {}, name, h("span", { class: "muted ns" }, ns)),
      badge(r.status, { testid: "rollout-status" }),
      h("span", { class: "spacer" }),
      actions(r, ns, name, reload)),
    r.message ? h("p", { class: "message" }, r.message) : null,
    h("dl", { class: "facts" },
      fact("Strategy", r.strategy || "—"),
      fact("Step", stepText(r)),
      fact("Set weight", pct(r.setWeight), "set-weight"),
      fact("Actual weight", pct(r.actualWeight), "actual-weight"),
      fact("Replicas", `${r.replicas?.ready ?? 0} ready / ${r.replicas?.updated ?? 0} updated / ${r.replicas?.desired ?? 0} desired`),
      fact("Images", imagesLine(r.images))));
}

function stepList(steps) {
  if (!steps.length) return h("p", { class: "muted", testid: "step-list" }, "This strategy has no steps.");
  return h("ol", { class: "steps", testid: "step-list" }, steps.map((step) =>
    h("li", { class: `step step-${step.state}`, "data-state": step.state, "aria-current": step.state === "current" ? "step" : null },
      h("span", { class: "step-mark", "aria-hidden": "true" }, step.state === "done" ? "✓" : step.state === "current" ? "▶" : "·"),
      h("span", { class: "step-text" }, step.text),
      h("span", { class: "step-state" }, step.state))));
}

function revisions(r) {
  const revs = r.revisions || [];
  if (!revs.length) return h("p", { class: "muted" }, "No ReplicaSets yet.");
  return revs.map((rev) => h("div", { class: "revision" },
    h("h3", {}, `Revision ${rev.revision}`),
    (rev.replicaSets || []).map((rs) => h("div", { class: "rs" },
      h("div", { class: "rs-head" }, h("code", {}, rs.name), " ",
        (rs.tags || []).map((tag) => h("span", { class: `tag tag-${tag}` }, tag)),
        h("span", { class: "muted" }, ` ${rs.ready}/${rs.desired} ready`),
        rs.scaleDownAt ? h("span", { class: "muted" }, ` · scales down at ${fmtTime(rs.scaleDownAt)}`) : null),
      (rs.pods || []).length ? h("ul", { class: "pods" }, rs.pods.map((pod) =>
        h("li", { class: "pod" }, badge(pod.ready ? "Healthy" : pod.status, {}),
          h("code", {}, pod.name), h("span", { class: "muted" },
            ` ${pod.readyContainers}/${pod.containers} · ${pod.status} · ${ago(pod.createdAt)}`)))) : null)),
    (rev.analysisRuns || []).map((run) => h("div", { class: "run-line" }, "AnalysisRun ", h("code", {}, run.name), " ",
      badge(run.phase), h("span", { class: "muted" },
        ` ✓${run.successful} ✗${run.failed} ?${run.inconclusive} !${run.error}`)))));
}

function analysisRuns(runs) {
  if (!runs.length) return h("p", { class: "muted" }, "No AnalysisRuns for this rollout.");
  return runs.map((run) => h("div", { class: "analysis-run" },
    h("h3", {}, h("code", {}, run.name), " ", badge(run.phase),
      h("span", { class: "muted small" }, ` started ${fmtTime(run.startedAt)}`)),
    h("div", { class: "metric-grid" }, (run.metrics || []).map((metric) =>
      h("div", { class: "metric" }, h("h4", {}, metric.name), metricChart(metric))))));
}

function explainLog(explain, ui) {
  if (!explain) return h("p", { class: "muted" }, "No decision log.");
  return [
    h("p", { class: "summary" }, explain.summary || ""),
    (explain.steps || []).length ? table(["#", "Step", "State", "Started", "Ended", "Why"], explain.steps.map((st) =>
      h("tr", {}, h("td", { class: "num" }, String(st.index + 1)), h("td", {}, h("code", {}, st.step)),
        h("td", {}, badge(st.state)), h("td", {}, fmtTime(st.startedAt)), h("td", {}, fmtTime(st.endedAt)),
        h("td", {}, st.why || "")))) : null,
    measurementsTable(explain.measurements || [], ui),
  ];
}

// The latest few measurements in the open; the rest one click away, so the log stays readable.
const RECENT_MEASUREMENTS = 6;

function measurementRows(list) {
  return list.map((m) => h("tr", { class: String(m.verdict || "").startsWith("Failed") ? "row-bad" : null },
    h("td", {}, m.analysisRun), h("td", {}, m.metric), h("td", {}, h("code", { class: "query" }, m.query || "")),
    h("td", { class: "num" }, m.value ?? "—"), h("td", {}, h("code", {}, m.condition || "")),
    h("td", {}, badge(m.verdict)), h("td", {}, fmtTime(m.at))));
}

function measurementsTable(all, ui) {
  if (!all.length) return null;
  const heads = ["Run", "Metric", "Query", "Value", "Condition", "Verdict", "At"];
  const older = all.slice(0, Math.max(0, all.length - RECENT_MEASUREMENTS));
  const recent = all.slice(older.length);
  const failed = all.filter((m) => String(m.verdict || "").startsWith("Failed")).length;
  return [
    h("h3", {}, `Measurements (${all.length}, ${failed} failed)`),
    older.length ? h("details", { class: "older", open: ui.olderOpen,
      ontoggle: (ev) => { ui.olderOpen = ev.target.open; } },
    h("summary", {}, `${older.length} earlier measurements`), table(heads, measurementRows(older))) : null,
    table(heads, measurementRows(recent)),
  ];
}

export function rolloutPage(root, ns, name, reload) {
  root.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  // What the reader opened survives the re-renders that live updates cause.
  const ui = { olderOpen: false };
  return {
    wants: (ev) => ev.kind === "rollout" && ev.namespace === ns && ev.name === name,
    async refresh() {
      let data;
      try {
        data = await getJSON(rolloutPath(ns, name));
      } catch (err) {
        if (err.status === 404) {
          root.replaceChildren(h("p", { class: "crumbs" }, h("a", { href: "#/rollouts" }, "Rollouts")),
            h("p", { class: "empty" }, `Rollout ${ns}/${name} was not found.`));
          return;
        }
        throw err;
      }
      const r = data.rollout;
      fill(root,
        h("p", { class: "crumbs" }, h("a", { href: "#/rollouts" }, "Rollouts"), " / ", ns, " / ", name),
        header(r, ns, name, reload),
        getConfig().readOnly ? h("p", { class: "muted small" }, "Read-only dashboard: actions are disabled.") : null,
        h("div", { class: "two-col" },
          card("Steps", stepList(data.steps || [])),
          card("Canary weight", weightChart(data.weightHistory, r))),
        card("Why it is where it is", explainLog(data.explain, ui)),
        card("Analysis", analysisRuns(data.analysisRuns || [])),
        card("Revisions, ReplicaSets and pods", revisions(r)));
    },
  };
}
