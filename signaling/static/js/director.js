// The director page: the stream, its controls, the prompt timeline, stats and share links.
//
// Addresses: `/?token=<API key>` (the URL the server prints) creates a session through POST /sessions,
// keeps the key in this tab's sessionStorage and replaces the address with `/?session=<id>&token=<controller
// token>`, which a reload (or another director) joins. With `--auth none` no token is needed anywhere.

import { api, ServerError, sessionPath } from "./api.js";
import { CommandError, REFUSED, State, StreamConnection, startInPage } from "./connection.js";
import { retrySeconds, showConnection } from "./connection-badge.js";
import { $, h } from "./dom.js";
import { LivePrompt } from "./live-prompt.js";
import { Notices } from "./notices.js";
import { ProgressView } from "./progress.js";
import { RecordingPanel } from "./recording.js";
import { describeError, LIMITS, schedulePrompts } from "./protocol.js";
import { SessionModel } from "./session-model.js";
import { formatStats, StatsMonitor } from "./stats.js";
import { TimelineEditor } from "./timeline.js";
import { param, rememberSession, takeApiKey } from "./urls.js";

const REFRESH_MS = 10000; // get_state now and then, for the viewer count
const NEEDS_API_KEY =
  "this server needs its API key to create a session: open the address it printed at startup (…/?token=<API key>)";

const apiKey = takeApiKey();
let carried = null; // {seed, schedule} a new session starts with (the New session button)

/** POST /sessions with the API key: the new session's id and controller token. */
async function createSession() {
  try {
    const made = await api("/sessions", { method: "POST", token: apiKey, body: carried ?? {} });
    carried = null;
    return { session: made.session, token: made.tokens?.controller ?? null };
  } catch (error) {
    if (error instanceof ServerError && error.status === 401) {
      throw new ServerError(401, apiKey ? "the API key of this link is not valid" : NEEDS_API_KEY);
    }
    throw error;
  }
}

const connection = new StreamConnection({
  video: $("#video"),
  session: param("session"),
  token: param("session") ? param("token") : null,
  role: "controller",
  codec: param("codec"),
  createSession,
  recreate: true,
});
const model = new SessionModel().follow(connection);
const notices = new Notices($("#notices"));

/** Send a command (paced by the server's budget); show the server's error and answer null if refused. */
async function send(type, data = {}) {
  try {
    return await connection.requestPaced(type, data);
  } catch (error) {
    notices.error(error instanceof CommandError ? describeError(error.data) : `${type}: ${error.message}`);
    return null;
  }
}

showConnection($("#connection"), connection);
$("#session-id").textContent = connection.session ?? "new";
new ProgressView($("#progress"), model);
new TimelineEditor(model, send, notices);
new LivePrompt(model, send, notices);
new RecordingPanel($("#recording-panel"), connection, notices);

// --- transport and seed ---------------------------------------------------------------------------

// the server's limits on what a field may hold
$("#seed").max = String(LIMITS.seed);
for (const text of [$("#live-prompt"), $("#schedule-prompt")]) text.maxLength = LIMITS.promptChars;

const transport = {
  start: $("#start"),
  pause: $("#pause"),
  resume: $("#resume"),
  stop: $("#stop"),
  reset: $("#reset"),
};
for (const [command, button] of Object.entries(transport)) {
  if (command !== "reset") button.addEventListener("click", () => send(command));
}
transport.reset.addEventListener("click", () => {
  const count = model.scheduled.length;
  const what = count === 1 ? "the 1 scheduled prompt" : `all ${count} scheduled prompts`;
  if (confirm(`Reset stops the stream and deletes ${what}. (Stop keeps them.) Reset?`)) send("reset");
});

function renderControls() {
  const online = connection.state === State.CONNECTED;
  const status = model.status;
  const opening = model.scheduled.some((entry) => entry.timestamp === 0);
  transport.start.disabled = !online || status !== "idle" || !opening;
  transport.start.title = opening ? "" : "Schedule a prompt at frame 0 first";
  transport.pause.disabled = !online || status !== "running";
  transport.resume.disabled = !online || status !== "paused";
  transport.stop.disabled = !online || status === "idle";
  transport.reset.disabled = !online;
  for (const control of document.querySelectorAll("[data-needs-connection]")) control.disabled = !online;
  const seed = $("#seed");
  if (model.state && document.activeElement !== seed) seed.value = String(model.state.seed);
  $("#stamp-hint").hidden = Boolean(model.state?.generator) && model.state.generator !== "synthetic";
}
model.addEventListener("change", renderControls);
connection.addEventListener("state", renderControls);

$("#seed-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const seed = Number($("#seed").value);
  if (await send("set_seed", { seed })) notices.info(`Seed ${seed} will be used by the next start.`);
});

// --- events the server sends on its own -------------------------------------------------------------

connection.addEventListener("message", ({ detail: event }) => {
  if (event.type === "error" && event.id === undefined) notices.error(describeError(event.data));
});

// --- stats ----------------------------------------------------------------------------------------

const statsList = $("#stats");
new StatsMonitor(connection, (sample) => {
  const rows = formatStats(sample);
  if (model.state) {
    rows.push(["stalls", String(model.state.stalls ?? 0)], ["viewers", String(model.state.viewers ?? 0)]);
    rows.push(["generator", model.state.generator ?? "–"]);
  }
  statsList.replaceChildren(...rows.map(([label, value]) => h("div", { class: "stat" }, h("dt", {}, label), h("dd", {}, value))));
}).start();
setInterval(() => {
  if (connection.state === State.CONNECTED) connection.request("get_state").catch(() => {});
}, REFRESH_MS);

// --- session, share links, refusals, lost sessions --------------------------------------------------

let restore = null; // {scheduled, seed} put back into a session the server recreated after a restart

/** The session's ready links (its viewer token in them) from GET /sessions/{id}. */
async function showShareLinks(session, token) {
  let urls = {};
  try {
    ({ urls } = await api(sessionPath(session), { token }));
  } catch {
    return; // offline again: the next answer brings them
  }
  for (const name of ["viewer", "obs", "whep"]) $(`#${name}-link`).value = urls[name] ?? "";
  $("#open-viewer").href = urls.viewer ?? "";
  $("#open-obs").href = urls.obs ?? "";
}

connection.addEventListener("session", ({ detail }) => {
  if (detail.created && (model.scheduled.length || model.state)) {
    restore = { scheduled: model.scheduled, seed: model.state?.seed ?? 0 }; // the server restarted: put it back
  }
  rememberSession(detail.session, detail.token);
  $("#session-id").textContent = detail.session;
  showShareLinks(detail.session, detail.token);
});

connection.addEventListener("state", async ({ detail }) => {
  $("#gone-banner").hidden = detail.state !== State.GONE;
  showRefusal(detail);
  if (detail.state === State.CONNECTED && restore) {
    const { scheduled, seed } = restore;
    restore = null;
    await send("set_seed", { seed });
    await schedulePrompts(send, scheduled);
    notices.info(`Session ${connection.session}: ${scheduled.length} prompts and seed ${seed} restored.`);
  }
});

/** The server's reason, in a banner, while it refuses this page (full, rate-limited, wrong token). */
function showRefusal({ state, status, reason = "", delay = 0 }) {
  if (state === State.CONNECTING) return; // keep the last reason up until this attempt ends
  const banner = $("#refused-banner");
  banner.hidden = !REFUSED.includes(state);
  if (banner.hidden) return;
  if (status !== 503 || connection.session) $("#refused-sessions").hidden = true;
  else showSessionsHolding();
  const busy = state === State.BUSY;
  $("#refused-title").textContent = busy ? "Waiting for the server:" : "The server refused this page:";
  $("#refused-message").textContent = busy ? `${reason}. Trying again in ${retrySeconds(delay)} s.` : `${reason}.`;
  const link = $("#refused-link");
  link.hidden = true;
  if (status === 403 && connection.session && connection.token) {
    // a viewer's link opened as the director: offer the page it is for
    link.href = `/view/${encodeURIComponent(connection.session)}?token=${encodeURIComponent(connection.token)}`;
    link.textContent = "Watch it on the viewer page";
    link.hidden = false;
  }
}

/**
 * The server is full and this page holds the API key: name the sessions that hold the slots, with their
 * director links, so that one's own earlier session (another tab, a lost link) can be rejoined or freed.
 */
async function showSessionsHolding() {
  const line = $("#refused-sessions");
  if (!apiKey) return;
  let described;
  try {
    const { sessions } = await api("/sessions", { token: apiKey });
    described = await Promise.all(sessions.slice(0, 5).map((entry) => api(sessionPath(entry.session), { token: apiKey })));
  } catch {
    return;
  }
  const links = described.map((live) =>
    h("span", { class: "held" }, h("a", { href: live.urls.director }, live.session),
      ` (${live.status}, ${live.viewers} viewer${live.viewers === 1 ? "" : "s"})`),
  );
  line.replaceChildren("Sessions holding the slots (open one to direct it): ", ...links);
  line.hidden = links.length === 0;
}

$("#new-session").addEventListener("click", () => {
  const schedule = model.scheduled.map(({ timestamp, prompt, transition }) => ({ timestamp, prompt, transition }));
  carried = { seed: model.state?.seed ?? 0, schedule };
  connection.switchSession(null, null);
});

for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", () => copy($(`#${button.dataset.copy}`)));
}

async function copy(input) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select(); // no clipboard access (plain http): leave it selected for Ctrl+C
    return;
  }
  notices.info("Link copied.");
}

// --- start --------------------------------------------------------------------------------------

renderControls();
startInPage(connection, { model, send });
