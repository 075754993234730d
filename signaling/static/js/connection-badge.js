// Shows a StreamConnection's state in a badge, and on <html data-connection="..."> for styling.
// When the server refused the page (full, rate-limited, wrong token) the badge says why, in its words.

import { State } from "./connection.js";

const LABELS = {
  [State.CONNECTING]: "Connecting…",
  [State.CONNECTED]: "Connected",
  [State.RETRYING]: "Reconnecting",
  [State.GONE]: "Session not on server",
  [State.CLOSED]: "Offline",
};

/** The whole seconds a page shows for a retry `delay` (ms, a "state" event's detail). */
export function retrySeconds(delay) {
  return Math.ceil(delay / 1000);
}

/** The badge's text for a "state" event's detail. */
function connectionText({ state, attempt = 0, delay = 0, reason = "" }) {
  if (state === State.BUSY) return `${reason} · retry in ${retrySeconds(delay)} s`;
  if (state === State.DENIED) return reason;
  let text = LABELS[state] ?? state;
  if (state === State.CONNECTING && attempt > 0) text = `Reconnecting (try ${attempt + 1})…`;
  if (state === State.RETRYING || state === State.GONE) text += ` · retry in ${retrySeconds(delay)} s`;
  return text;
}

export function showConnection(badge, connection) {
  connection.addEventListener("state", (event) => {
    const { state, reason = "" } = event.detail;
    document.documentElement.dataset.connection = state;
    if (!badge) return;
    badge.dataset.state = state;
    badge.textContent = connectionText(event.detail);
    badge.title = reason;
  });
}
