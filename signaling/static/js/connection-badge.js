// Shows a StreamConnection's state in a badge, and on <html data-connection="..."> for styling.
// When the server refused the page (full, rate-limited, wrong token) the badge says why, in its words.

const LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  retrying: "Reconnecting",
  gone: "Session not on server",
  closed: "Offline",
};

/** The badge's text for a "state" event's detail. */
export function connectionText({ state, attempt = 0, delay = 0, reason = "" }) {
  if (state === "busy") return `${reason} · retry in ${Math.ceil(delay / 1000)} s`;
  if (state === "denied") return reason;
  let text = LABELS[state] ?? state;
  if (state === "connecting" && attempt > 0) text = `Reconnecting (try ${attempt + 1})…`;
  if (state === "retrying" || state === "gone") text += ` · retry in ${Math.ceil(delay / 1000)} s`;
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
