// The chromeless player for OBS Browser Source: only the video, black around it, no gesture needed,
// reconnecting forever. Address: /obs/{session}?token=<viewer token>. Flags: ?stamp=0 crops the stamp
// band of the synthetic generator, ?prompt=1 captions the active prompt, ?status=1 shows the connection
// state while not connected, ?fit=cover fills the window (cropping) instead of fitting the whole
// picture, ?codec=h264 asks for H.264, ?idle=title shows a title card (?title=) instead of black while
// nothing is on air.

import { StreamConnection, startInPage } from "./connection.js";
import { showConnection } from "./connection-badge.js";
import { $ } from "./dom.js";
import { showIdleCard } from "./idle-card.js";
import { DEFAULT_GEOMETRY } from "./protocol.js";
import { SessionModel } from "./session-model.js";
import { audienceOptions, flag, param } from "./urls.js";

const STAMP_BAND_ROWS = 32; // height of the machine-readable stamp band (longlive_rtc/generators/stamp.py)
const TRANSITION_BAND_MIN_HEIGHT = 160; // frames this tall carry a second band, of transitions, above it

const video = $("#video");
const frame = $("#frame");
const options = audienceOptions("black");
const connection = new StreamConnection({ video, ...options.connection, backoff: { initial: 1000, max: 10000 } });

const hideStamp = !flag("stamp", true);
document.body.classList.toggle("cover", param("fit") === "cover");

/** Size the frame to the picture, less the stamp bands when they are hidden. */
function fitFrame() {
  const width = video.videoWidth || DEFAULT_GEOMETRY.width;
  const height = video.videoHeight || DEFAULT_GEOMETRY.height;
  const bands = height >= TRANSITION_BAND_MIN_HEIGHT ? 2 : 1;
  const shown = hideStamp ? height - bands * STAMP_BAND_ROWS : height;
  frame.style.setProperty("--ratio", String(width / shown));
  frame.style.setProperty("--overscan", String(height / shown));
}
video.addEventListener("resize", fitFrame);
fitFrame();

const model = new SessionModel().follow(connection);
showIdleCard($("#idle"), model, connection, options.idle);

if (flag("prompt", false)) {
  const caption = $("#caption");
  model.addEventListener("change", () => {
    caption.textContent = model.activePrompt ?? "";
    caption.hidden = !model.activePrompt;
  });
}

showConnection(flag("status", false) ? $("#status") : null, connection);

startInPage(connection, { model });
