// The viewer page: the stream of /view/{session}?token=<viewer token> with its current prompt and
// progress; no controls. Idle, it shows a neutral title card (?idle=black for black, ?title= for the text).

import { StreamConnection } from "./connection.js";
import { showConnection } from "./connection-badge.js";
import { $ } from "./dom.js";
import { DEFAULT_TITLE, showIdleCard } from "./idle-card.js";
import { ProgressView } from "./progress.js";
import { SessionModel } from "./session-model.js";
import { param, sessionFromPath } from "./urls.js";

const session = sessionFromPath();
const connection = new StreamConnection({
  video: $("#video"),
  session,
  token: param("token"),
  role: "viewer",
  codec: param("codec"),
});
const model = new SessionModel().follow(connection);

$("#session-id").textContent = session;
document.title = `LongLive RTC · watching ${session}`;
showConnection($("#connection"), connection);
showIdleCard($("#idle"), model, connection, { mode: param("idle", "title"), title: param("title", DEFAULT_TITLE) });
new ProgressView($("#progress"), model);

addEventListener("pagehide", () => connection.leave());
addEventListener("pageshow", (event) => event.persisted && connection.start());

window.longlive = { connection, model };
connection.start();
