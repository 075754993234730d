// The audience's picture while nothing is on air: the viewer and OBS pages cover the server's idle card
// (which speaks to the director) with a neutral one, a title or plain black (`?idle=title|black`,
// `?title=` sets the text). While the server refuses the page (full, wrong token), the title card says so.

import { REFUSED, State } from "./connection.js";
import { h } from "./dom.js";

const DEFAULT_TITLE = "LongLive RTC";

/**
 * Keep `element` (an overlay over the video) showing while the session is idle or not yet known.
 * @param {HTMLElement} element
 * @param {SessionModel} model
 * @param {StreamConnection} connection
 * @param {{mode: "title"|"black", title: string|null}} options  title: null for the default
 */
export function showIdleCard(element, model, connection, { mode = "title", title = null } = {}) {
  const heading = h("p", { class: "idle-title" }, title ?? DEFAULT_TITLE);
  const line = h("p", { class: "idle-line" });
  element.classList.add("idle-card", `idle-${mode === "black" ? "black" : "title"}`);
  if (mode !== "black") element.replaceChildren(heading, line);
  let problem = "";

  const render = () => {
    const connected = connection.state === State.CONNECTED;
    element.hidden = connected && model.state !== null && model.status !== "idle";
    line.textContent = problem || (connected && model.state ? "The stream starts soon." : "");
    element.dataset.status = connected && model.state ? model.status : connection.state;
  };
  connection.addEventListener("state", ({ detail }) => {
    if (detail.state === State.CONNECTING) return; // keep what the last attempt said until this one ends
    problem = REFUSED.includes(detail.state) ? detail.reason : "";
    render();
  });
  model.addEventListener("change", render);
  render();
}
