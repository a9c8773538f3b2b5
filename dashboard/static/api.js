// The dashboard's HTTP client (dashboard-api.md): GETs, and POSTs carrying the
// per-process CSRF token from /api/config. Used by app.js and the page modules.

let config = { readOnly: true, csrfToken: "", version: "", namespaces: null };

export function getConfig() {
  return config;
}

export async function loadConfig() {
  config = await getJSON("/api/config");
  return config;
}

function path(...parts) {
  return parts.map((part) => encodeURIComponent(part)).join("/");
}

export function rolloutPath(ns, name) {
  return `/api/rollouts/${path(ns, name)}`;
}

export function appPath(ns, name) {
  return `/api/applications/${path(ns, name)}`;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return String(body.error);
  } catch (_) { /* not JSON: fall through to the status line */ }
  return `${resp.status} ${resp.statusText}`;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
  return resp.json();
}

/** POST an action; resolves to the server's message, rejects with its error. */
export async function postAction(url, body) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Tidegate-CSRF": config.csrfToken },
    body: JSON.stringify(body || {}),
  });
  if (!resp.ok) throw new ApiError(resp.status, await errorText(resp));
  const data = await resp.json().catch(() => ({}));
  return data.message || "done";
}
