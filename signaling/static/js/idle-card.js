// The audience's picture while nothing is on air: the viewer and OBS pages cover the server's idle card
// (which speaks to the director) with a neutral one, a title or plain black (`?idle=title|black`,
// `?title=` sets the text). While the server refuses the page (full, wrong token), the title card says so.

import { h } from "./dom.js";

export const DEFAULT_TITLE = "LongLive RTC";

/**
 * Keep `element` (an overlay over the video) showing while the session is idle or not yet known.
 * @param {HTMLElement} element
 * @param {SessionModel} model
 * @param {StreamConnection} connection
 * @param {{mode: "title"|"black", title: string}} options
 */
export function showIdleCard(element, model, connection, { mode = "title", title = DEFAULT_TITLE } = {}) {
  const heading = h("p", { class: "idle-title" }, title);
  const line = h("p", { class: "idle-line" });
  element.classList.add("idle-card", `idle-${mode === "black" ? "black" : "title"}`);
  if (mode !== "black") element.replaceChildren(heading, line);
  let problem = "";

  const render = () => {
    const connected = connection.state === "connected";
    element.hidden = connected && model.state !== null && model.status !== "idle";
    line.textContent = problem || (connected && model.state ? "The stream starts soon." : "");
    element.dataset.status = connected && model.state ? model.status : connection.state;
  };
  connection.addEventListener("state", ({ detail }) => {
    if (detail.state === "connecting") return; // keep what the last attempt said until this one ends
    problem = ["busy", "denied"].includes(detail.state) ? detail.reason : "";
    render();
  });
  model.addEventListener("change", render);
  render();
}
