// The viewer page: the stream of /view/{session}?token=<viewer token> with its current prompt and
// progress; no controls. Idle, it shows a neutral title card (?idle=black for black, ?title= for the text).

import { StreamConnection, startInPage } from "./connection.js";
import { showConnection } from "./connection-badge.js";
import { $ } from "./dom.js";
import { showIdleCard } from "./idle-card.js";
import { ProgressView } from "./progress.js";
import { SessionModel } from "./session-model.js";
import { audienceOptions } from "./urls.js";

const options = audienceOptions("title");
const connection = new StreamConnection({ video: $("#video"), ...options.connection });
const model = new SessionModel().follow(connection);
const session = connection.session;

$("#session-id").textContent = session;
document.title = `LongLive RTC · watching ${session}`;
showConnection($("#connection"), connection);
showIdleCard($("#idle"), model, connection, options.idle);
new ProgressView($("#progress"), model);

startInPage(connection, { model });
