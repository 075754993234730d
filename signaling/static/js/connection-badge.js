// Shows a StreamConnection's state in a badge, and on <html data-connection="..."> for styling.

const LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  retrying: "Reconnecting",
  gone: "Session not on server",
  closed: "Offline",
};

export function showConnection(badge, connection) {
  connection.addEventListener("state", (event) => {
    const { state, attempt = 0, delay = 0, reason = "" } = event.detail;
    document.documentElement.dataset.connection = state;
    if (!badge) return;
    badge.dataset.state = state;
    let text = LABELS[state] ?? state;
    if (state === "connecting" && attempt > 0) text = `Reconnecting (try ${attempt + 1})…`;
    if (state === "retrying" || state === "gone") text += ` · retry in ${Math.ceil(delay / 1000)} s`;
    badge.textContent = text;
    badge.title = reason;
  });
}
