// The dashboard's entry point: loads /api/config, routes hash URLs to page
// modules, and re-fetches the shown page when /api/events names it (coalesced).

import { h } from "./dom.js";
import { loadConfig } from "./api.js";
import { rolloutsList, rolloutPage } from "./rollouts.js";
import { appsList, appPage } from "./apps.js";

// At most one re-fetch per this many ms, however many events arrive.
const MIN_REFRESH_MS = 300;

let page = null;
let inFlight = false;
let pending = false;
let lastRun = 0;
let timer = null;

function route() {
  const parts = (location.hash.replace(/^#\/?/, "") || "rollouts").split("/").map(decodeURIComponent);
  const main = document.getElementById("main");
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.toggleAttribute("aria-current", link.dataset.nav === parts[0]);
  }
  const [section, ns, name] = parts;
  if (section === "rollouts" && ns && name) page = rolloutPage(main, ns, name, refreshSoon);
  else if (section === "apps" && ns && name) page = appPage(main, ns, name, refreshSoon);
  else if (section === "apps") page = appsList(main);
  else page = rolloutsList(main);
  document.title = name ? `${name} · Tidegate` : `${section === "apps" ? "Applications" : "Rollouts"} · Tidegate`;
  refreshNow();
}

async function refreshNow() {
  if (inFlight) { pending = true; return; }
  inFlight = true;
  lastRun = Date.now();
  const current = page;
  const banner = document.getElementById("banner");
  // A re-render replaces the buttons: keep keyboard focus on the same one.
  const focused = document.activeElement?.closest?.("[data-testid]")?.dataset.testid;
  try {
    await current.refresh();
    banner.hidden = true;
    if (focused && !document.getElementById("confirm").open) {
      const again = document.querySelector(`#main [data-testid="${CSS.escape(focused)}"]`);
      if (again && again !== document.activeElement) again.focus();
    }
  } catch (err) {
    // The page keeps what it last showed; the banner says it may be stale, and the next event retries.
    if (current === page) {
      banner.textContent = `Could not load the latest data: ${err.message}`;
      banner.hidden = false;
    }
  } finally {
    inFlight = false;
    if (pending) { pending = false; refreshSoon(); }
  }
}

/** Coalesce bursts of events into one re-fetch every MIN_REFRESH_MS. */
function refreshSoon() {
  if (timer) return;
  const wait = Math.max(0, MIN_REFRESH_MS - (Date.now() - lastRun));
  timer = setTimeout(() => { timer = null; refreshNow(); }, wait);
}

function live() {
  const badge = document.getElementById("live");
  const events = new EventSource("/api/events");
  const state = (name, text) => { badge.dataset.state = name; badge.textContent = text; };
  events.addEventListener("open", () => { state("live", "live"); refreshSoon(); });
  events.addEventListener("error", () => state("down", "reconnecting…"));
  for (const kind of ["rollout", "application"]) {
    events.addEventListener(kind, (msg) => {
      let data = {};
      try { data = JSON.parse(msg.data); } catch (_) { return; }
      if (page && page.wants({ kind, namespace: data.namespace, name: data.name })) refreshSoon();
    });
  }
}

async function start() {
  try {
    const config = await loadConfig();
    document.getElementById("version").textContent = config.version ? `v${config.version}` : "";
    document.getElementById("readonly-badge").hidden = !config.readOnly;
    document.body.classList.toggle("read-only", Boolean(config.readOnly));
  } catch (err) {
    document.getElementById("main").replaceChildren(h("p", { class: "empty error", role: "alert" },
      `Could not reach the dashboard server: ${err.message}`));
    return;
  }
  window.addEventListener("hashchange", route);
  route();
  live();
}

start();
