// The director page: the stream, its controls, the prompt timeline, stats and share links.

import { CommandError, StreamConnection } from "./connection.js";
import { showConnection } from "./connection-badge.js";
import { $, h } from "./dom.js";
import { Notices } from "./notices.js";
import { ProgressView } from "./progress.js";
import { describeError } from "./protocol.js";
import { SessionModel } from "./session-model.js";
import { formatStats, StatsMonitor } from "./stats.js";
import { TimelineEditor } from "./timeline.js";
import { param, rememberSession, shareLinks } from "./urls.js";

const REFRESH_MS = 10000; // get_state now and then, for the viewer count

const connection = new StreamConnection({
  video: $("#video"),
  session: param("session"),
  role: "controller",
  codec: param("codec"),
});
const model = new SessionModel().follow(connection);
const notices = new Notices($("#notices"));

/** Send a command; show the server's error and answer null if it is refused. */
async function send(type, data = {}) {
  try {
    return await connection.request(type, data);
  } catch (error) {
    notices.error(error instanceof CommandError ? describeError(error.data) : `${type}: ${error.message}`);
    return null;
  }
}

showConnection($("#connection"), connection);
$("#session-id").textContent = connection.session ?? "new";
new ProgressView($("#progress"), model);
new TimelineEditor(model, send, notices);

// --- transport and seed ---------------------------------------------------------------------------

const transport = {
  start: $("#start"),
  pause: $("#pause"),
  resume: $("#resume"),
  reset: $("#reset"),
};
for (const [command, button] of Object.entries(transport)) {
  button.addEventListener("click", () => send(command));
}

function renderControls() {
  const online = connection.state === "connected";
  const status = model.status;
  transport.start.disabled = !online || status !== "idle";
  transport.pause.disabled = !online || status !== "running";
  transport.resume.disabled = !online || status !== "paused";
  transport.reset.disabled = !online;
  for (const control of document.querySelectorAll("[data-needs-connection]")) control.disabled = !online;
  const seed = $("#seed");
  if (model.state && document.activeElement !== seed) seed.value = String(model.state.seed);
}
model.addEventListener("change", renderControls);
connection.addEventListener("state", renderControls);

$("#seed-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const seed = Number($("#seed").value);
  if (await send("set_seed", { seed })) notices.info(`Seed ${seed} will be used by the next start.`);
});

// --- live prompt ----------------------------------------------------------------------------------

const live = $("#live-prompt");
live.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("#live-form").requestSubmit();
  }
});
$("#live-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = live.value.trim();
  if (!prompt) return;
  const frame = model.currentFrame;
  if (await send("schedule_prompt", { new_prompt: prompt, timestamp: frame })) {
    live.value = "";
    notices.info(`Live prompt scheduled at frame ${frame}: it takes over at the next block start.`);
  }
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
  if (connection.state === "connected") connection.request("get_state").catch(() => {});
}, REFRESH_MS);

// --- session, share links, lost sessions --------------------------------------------------------------

let restore = null; // {scheduled, seed} carried into a new session

connection.addEventListener("session", ({ detail }) => {
  if (detail.created && (model.scheduled.length || model.state)) {
    restore = { scheduled: model.scheduled, seed: model.state?.seed ?? 0 }; // the server restarted: put it back
  }
  rememberSession(detail.session);
  const links = shareLinks(detail.session);
  $("#session-id").textContent = detail.session;
  $("#viewer-link").value = links.viewer;
  $("#obs-link").value = links.obs;
  $("#open-viewer").href = links.viewer;
  $("#open-obs").href = links.obs;
});

connection.addEventListener("state", async ({ detail }) => {
  $("#gone-banner").hidden = detail.state !== "gone";
  if (detail.state === "connected" && restore) {
    const { scheduled, seed } = restore;
    restore = null;
    await send("set_seed", { seed });
    for (const { timestamp, prompt } of scheduled) await send("schedule_prompt", { new_prompt: prompt, timestamp });
    notices.info(`Session ${connection.session}: ${scheduled.length} prompts and seed ${seed} restored.`);
  }
});

$("#new-session").addEventListener("click", () => {
  restore = { scheduled: model.scheduled, seed: model.state?.seed ?? 0 };
  connection.switchSession(null);
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

window.longlive = { connection, model };
renderControls();
connection.start();
