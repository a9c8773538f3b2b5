// Shared widgets: the confirmation <dialog>, the toast, and action buttons that
// confirm, POST and report. Used by the rollout and application pages.

import { h } from "./dom.js";
import { getConfig, postAction } from "./api.js";

let toastTimer = null;

/** Show an action's result (or error) in the toast region. */
export function toast(message, kind = "ok") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `toast toast-${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 12000 : 6000);
}

/** Ask before acting; resolves {ok, reason}. */
export function confirmDialog({ title, text, askReason = false, okLabel = "Confirm", danger = false }) {
  const dialog = document.getElementById("confirm");
  const reason = document.getElementById("confirm-reason");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-reason-label").hidden = !askReason;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = okLabel;
  ok.className = danger ? "btn btn-primary btn-destructive" : "btn btn-primary";
  reason.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve({ ok: dialog.returnValue === "ok", reason: reason.value.trim() });
    }, { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    if (askReason) reason.focus();
  });
}

/**
 * A button that confirms, POSTs to `url` and toasts the result.
 * Returns null in read-only mode: the page shows no buttons it cannot use.
 */
export function actionButton({ label, testid, url, confirm, body, askReason = false, disabled = false,
                               danger = false, onDone }) {
  if (getConfig().readOnly) return null;
  const button = h("button", { class: danger ? "btn btn-danger" : "btn", testid, type: "button", disabled });
  button.textContent = label;
  button.addEventListener("click", async () => {
    const answer = await confirmDialog({ title: `${label}?`, text: confirm, askReason, okLabel: label, danger });
    if (!answer.ok) return;
    button.disabled = true;
    try {
      const payload = typeof body === "function" ? body(answer) : body;
      toast(await postAction(url, payload), "ok");
      if (onDone) onDone();
    } catch (err) {
      toast(`${label} failed: ${err.message}`, "error");
    } finally {
      button.disabled = disabled;
    }
  });
  return button;
}
