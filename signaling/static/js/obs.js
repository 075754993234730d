// The chromeless player for OBS Browser Source: only the video, black around it, no gesture needed,
// reconnecting forever. Address: /obs/{session}?token=<viewer token>. Flags: ?stamp=0 crops the stamp
// band of the synthetic generator, ?prompt=1 captions the active prompt, ?status=1 shows the connection
// state while not connected, ?fit=cover fills the window (cropping) instead of fitting the whole
// picture, ?codec=h264 asks for H.264, ?idle=title shows a title card (?title=) instead of black while
// nothing is on air.

import { StreamConnection } from "./connection.js";
import { showConnection } from "./connection-badge.js";
import { $ } from "./dom.js";
import { DEFAULT_TITLE, showIdleCard } from "./idle-card.js";
import { SessionModel } from "./session-model.js";
import { flag, param, sessionFromPath } from "./urls.js";

const STAMP_BAND_ROWS = 32; // height of the machine-readable stamp band (longlive_rtc/generators/stamp.py)

const video = $("#video");
const frame = $("#frame");
const connection = new StreamConnection({
  video,
  session: sessionFromPath(),
  token: param("token"),
  role: "viewer",
  codec: param("codec"),
  backoff: { initial: 1000, max: 10000 },
});

const hideStamp = !flag("stamp", true);
document.body.classList.toggle("cover", param("fit") === "cover");

/** Size the frame to the picture, less the stamp band when it is hidden. */
function fitFrame() {
  const width = video.videoWidth || 832;
  const height = video.videoHeight || 480;
  const shown = hideStamp ? height - STAMP_BAND_ROWS : height;
  frame.style.setProperty("--ratio", String(width / shown));
  frame.style.setProperty("--overscan", String(height / shown));
}
video.addEventListener("resize", fitFrame);
fitFrame();

const model = new SessionModel().follow(connection);
showIdleCard($("#idle"), model, connection, { mode: param("idle", "black"), title: param("title", DEFAULT_TITLE) });

if (flag("prompt", false)) {
  const caption = $("#caption");
  model.addEventListener("change", () => {
    caption.textContent = model.activePrompt ?? "";
    caption.hidden = !model.activePrompt;
  });
}

showConnection(flag("status", false) ? $("#status") : null, connection);

addEventListener("pagehide", () => connection.leave());
addEventListener("pageshow", (event) => event.persisted && connection.start());

window.longlive = { connection, model };
connection.start();
