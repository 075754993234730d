// The viewer page: the stream of /view/{session} with its current prompt and progress; no controls.

import { StreamConnection } from "./connection.js";
import { showConnection } from "./connection-badge.js";
import { $ } from "./dom.js";
import { ProgressView } from "./progress.js";
import { SessionModel } from "./session-model.js";
import { param, sessionFromPath } from "./urls.js";

const session = sessionFromPath();
const connection = new StreamConnection({ video: $("#video"), session, role: "viewer", codec: param("codec") });
const model = new SessionModel().follow(connection);

$("#session-id").textContent = session;
document.title = `LongLive RTC · watching ${session}`;
showConnection($("#connection"), connection);
new ProgressView($("#progress"), model);

window.longlive = { connection, model };
connection.start();
