// Tiny DOM helpers for the dashboard: build elements from data without innerHTML,
// so nothing the API returns is ever parsed as markup. Used by every page module.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "testid") el.setAttribute("data-testid", value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

/** An HTML element: h("td", {class: "num"}, "3"). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Replace an element's children, skipping null/false (replaceChildren would print "null"). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An SVG element (charts). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const STATUS_CLASS = {
  Healthy: "ok", Synced: "ok", Successful: "ok", Succeeded: "ok", done: "ok", Running: "info",
  Progressing: "info", current: "info", Paused: "warn", Suspended: "warn", OutOfSync: "warn",
  Inconclusive: "warn", Pending: "info", Degraded: "bad", Failed: "bad", Error: "bad", Missing: "bad",
};

/** A status pill: colour plus the word itself, so colour is never the only signal. */
export function badge(text, attrs = {}) {
  const label = text === null || text === undefined || text === "" ? "Unknown" : String(text);
  // "Failed: did not meet ..." and "paused" colour like "Failed" and "Paused": the first word decides.
  const word = label.split(/[:\s]/)[0];
  const kind = STATUS_CLASS[word] || STATUS_CLASS[word.charAt(0).toUpperCase() + word.slice(1)] || "muted";
  return h("span", { ...attrs, class: `badge badge-${kind}` }, label);
}

export function fmtTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

export function ago(value) {
  if (!value) return "—";
  const seconds = Math.max(0, Math.round((Date.now() - new Date(value).getTime()) / 1000));
  if (Number.isNaN(seconds)) return "—";
  if (seconds < 90) return `${seconds}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${value}%`;
}

/** A titled card section. */
export function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function table(headers, rows, attrs = {}) {
  return h("table", { class: "table", ...attrs },
    h("thead", {}, h("tr", {}, headers.map((head) => h("th", { scope: "col" }, head)))),
    h("tbody", {}, rows));
}
