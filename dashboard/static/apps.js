// The Applications pages: the list (#/apps) and one Application (#/apps/<ns>/<name>):
// resource tree, last operation, history, diffs of OutOfSync resources, actions.

import { h, fill, badge, card, table, fmtTime } from "./dom.js";
import { getJSON, appPath, getConfig } from "./api.js";
import { actionButton } from "./ui.js";

function short(rev) {
  return rev ? String(rev).slice(0, 10) : "—";
}

function sourceText(source) {
  if (!source || typeof source !== "object") return String(source || "—");
  const where = [source.repoURL, source.path || source.chart].filter(Boolean).join(" · ");
  return source.targetRevision ? `${where} @ ${source.targetRevision}` : where || "—";
}

export function appsList(root) {
  let items = [];
  const counts = h("div", { class: "counts", "aria-label": "Health counts" });
  const search = h("input", { type: "search", class: "search", placeholder: "Filter by name, namespace or repository",
    "aria-label": "Filter applications" });
  const body = h("tbody");
  const empty = h("p", { class: "muted", hidden: true });
  root.replaceChildren(h("div", { class: "page-head" }, h("h1", {}, "Applications"), counts), search,
    h("table", { class: "table rows" },
      h("thead", {}, h("tr", {}, ["Name", "Namespace", "Project", "Source", "Revision", "Sync", "Health", "Operation"]
        .map((t) => h("th", { scope: "col" }, t)))), body), empty);

  function draw() {
    const needle = search.value.trim().toLowerCase();
    const shown = items.filter((a) => !needle || [a.name, a.namespace, a.repo, a.path]
      .some((text) => String(text || "").toLowerCase().includes(needle)));
    body.replaceChildren(...shown.map((a) => h("tr", { testid: "app-row", "data-name": a.name, "data-namespace": a.namespace },
      h("td", {}, h("a", { href: `#/apps/${encodeURIComponent(a.namespace)}/${encodeURIComponent(a.name)}` }, a.name)),
      h("td", {}, a.namespace), h("td", {}, a.project || "—"),
      h("td", {}, h("code", { class: "small" }, `${a.repo || ""}${a.path ? ` · ${a.path}` : ""}`),
        h("span", { class: "muted small" }, a.targetRevision ? ` @ ${a.targetRevision}` : "")),
      h("td", {}, h("code", {}, short(a.revision))),
      h("td", {}, badge(a.sync)), h("td", {}, badge(a.health)),
      h("td", {}, a.operation ? badge(a.operation) : "—"))));
    empty.hidden = shown.length > 0;
    empty.textContent = items.length ? "No Application matches the filter." : "No Applications in the watched namespaces.";
  }
  search.addEventListener("input", draw);

  return {
    wants: (ev) => ev.kind === "application",
    async refresh() {
      const data = await getJSON("/api/applications");
      items = data.items || [];
      counts.replaceChildren(...Object.entries(data.counts || {}).map(([status, n]) =>
        h("span", { class: "count" }, badge(status), h("strong", {}, String(n)))));
      draw();
    },
  };
}

// The namespace is shown only where it differs from the one around it (the app's, or the parent's).
function resourceLabel(node, around) {
  return [h("span", { class: "kind" }, node.kind), " ", h("code", { class: "name" }, node.name),
    node.namespace && node.namespace !== around ? h("span", { class: "muted small" }, ` ${node.namespace}`) : null];
}

function treeNodes(nodes, around) {
  return h("ul", { class: "tree" }, nodes.map((node) => h("li", {},
    h("div", { class: "node", testid: "resource-node", "data-kind": node.kind, "data-name": node.name },
      h("span", { class: "node-label" }, resourceLabel(node, around)),
      node.status ? badge(node.status) : null, node.health ? badge(node.health) : null),
    (node.children || []).length ? treeNodes(node.children, node.namespace || around) : null)));
}

// The namespace most resources live in: shown once in the header, not on every node.
function dest(data) {
  const seen = {};
  for (const r of data.resources || []) if (r.namespace) seen[r.namespace] = (seen[r.namespace] || 0) + 1;
  return Object.keys(seen).sort((a, b) => seen[b] - seen[a])[0] || "";
}

function resourceTree(data, namespace) {
  const roots = (data.tree || []).length ? data.tree
    : (data.resources || []).map((r) => ({ ...r, children: [] }));
  if (!roots.length) return h("p", { class: "muted", testid: "resource-tree" }, "No resources.");
  const tree = treeNodes(roots, namespace);
  tree.setAttribute("data-testid", "resource-tree");
  return tree;
}

function diffBlock(d) {
  const lines = String(d.diff || "").split("\n").map((line) => {
    let cls = "ctx";
    if (line.startsWith("+++") || line.startsWith("---")) cls = "file";
    else if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    return h("span", { class: `dl dl-${cls}` }, `${line}\n`);
  });
  return h("div", { class: "diff-wrap" },
    h("h3", {}, h("span", { class: "kind" }, d.kind), " ", h("code", {}, d.name),
      d.namespace ? h("span", { class: "muted small" }, ` ${d.namespace}`) : null),
    h("pre", { class: "diff", testid: "diff", "data-kind": d.kind, "data-name": d.name,
      "aria-label": `Differences of ${d.kind} ${d.name}: lines starting with - are live, + are desired` }, lines));
}

function operation(op, namespace) {
  if (!op) return h("p", { class: "muted" }, "No operation yet.");
  // The destination namespace is in the header; a column of it would only squeeze the messages.
  const showNs = (op.results || []).some((r) => r.namespace && r.namespace !== namespace);
  return [
    h("p", {}, badge(op.phase), " ", op.message || "",
      h("span", { class: "muted small" }, ` · revision ${short(op.revision)} · ${fmtTime(op.startedAt)} → ${fmtTime(op.finishedAt)}`)),
    (op.results || []).length ? table(["Kind", showNs ? "Namespace" : null, "Name", "Result", "Hook", "Message"].filter(Boolean),
      op.results.map((r) => h("tr", {}, h("td", {}, r.kind), showNs ? h("td", {}, r.namespace || "—") : null,
        h("td", {}, h("code", {}, r.name)),
        h("td", {}, badge(r.status)), h("td", {}, r.hookPhase || "—"), h("td", {}, r.message || "")))) : null,
  ];
}

export function appPage(root, ns, name, reload) {
  root.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  const url = (action) => `${appPath(ns, name)}/${action}`;
  return {
    wants: (ev) => ev.kind === "application" && ev.namespace === ns && ev.name === name,
    async refresh() {
      let data;
      try {
        data = await getJSON(appPath(ns, name));
      } catch (err) {
        if (err.status === 404) {
          root.replaceChildren(h("p", { class: "crumbs" }, h("a", { href: "#/apps" }, "Applications")),
            h("p", { class: "empty" }, `Application ${ns}/${name} was not found.`));
          return;
        }
        throw err;
      }
      const a = data.application;
      const history = data.history || [];
      const buttons = [
        actionButton({ label: "Sync", testid: "btn-sync", url: url("sync"), confirm: `Sync ${ns}/${name} to ${a.targetRevision || "its target"} now?`, onDone: reload }),
        actionButton({ label: "Refresh", testid: "btn-refresh", url: url("refresh"), confirm: `Compare ${ns}/${name} with Git and the cluster again?`, onDone: reload }),
        actionButton({ label: "Rollback", testid: "btn-rollback", url: url("rollback"), danger: true, disabled: history.length < 2,
          confirm: `Roll ${ns}/${name} back to the previous deployed revision? Automated sync must be off.`, onDone: reload }),
      ].filter(Boolean);
      fill(root,
        h("p", { class: "crumbs" }, h("a", { href: "#/apps" }, "Applications"), " / ", ns, " / ", name),
        h("section", { class: "card header" },
          h("div", { class: "title-row" }, h("h1", {}, name, h("span", { class: "muted ns" }, ns)),
            badge(a.sync, { testid: "app-sync" }), badge(a.health, { testid: "app-health" }), h("span", { class: "spacer" }),
            buttons.length ? h("div", { class: "actions", role: "group", "aria-label": "Actions" }, buttons) : null),
          h("dl", { class: "facts" },
            h("div", { class: "fact" }, h("dt", {}, "Project"), h("dd", {}, a.project || "—")),
            h("div", { class: "fact" }, h("dt", {}, "Source"), h("dd", {}, h("code", {}, a.repo || "—"), a.path ? ` · ${a.path}` : "")),
            h("div", { class: "fact" }, h("dt", {}, "Target"), h("dd", {}, a.targetRevision || "—")),
            h("div", { class: "fact" }, h("dt", {}, "Synced revision"), h("dd", {}, h("code", {}, short(a.revision)))),
            dest(data) ? h("div", { class: "fact" }, h("dt", {}, "Destination"), h("dd", {}, dest(data))) : null),
          (data.conditions || []).map((c) => h("p", { class: "condition" }, badge("Degraded", {}), ` ${c.type}: ${c.message}`))),
        getConfig().readOnly ? h("p", { class: "muted small" }, "Read-only dashboard: actions are disabled.") : null,
        h("div", { class: "two-col even" },
          card("Resources", resourceTree(data, dest(data))),
          card("Last operation", operation(data.operation, dest(data)))),
        card("Differences (OutOfSync resources)", (data.diffs || []).length ? data.diffs.map(diffBlock)
          : h("p", { class: "muted" }, "Live state matches Git.")),
        card("History", history.length ? table(["ID", "Revision", "Deployed", "Source"], [...history].reverse().map((e) =>
          h("tr", {}, h("td", { class: "num" }, String(e.id)), h("td", {}, h("code", {}, short(e.revision))),
            h("td", {}, fmtTime(e.deployedAt)), h("td", {}, h("code", { class: "small" }, sourceText(e.source)))))) : h("p", { class: "muted" }, "No history.")));
    },
  };
}
