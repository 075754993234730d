// Visible messages: errors from the server (`error` events, refused requests) and short confirmations.

import { h } from "./dom.js";

const LIFETIME_MS = { error: 12000, info: 4000 };
const MAX_SHOWN = 4;

export class Notices {
  constructor(container) {
    this.container = container;
  }

  error(text) {
    this.show(text, "error");
  }

  info(text) {
    this.show(text, "info");
  }

  show(text, kind) {
    const close = h("button", { class: "notice-close", type: "button", "aria-label": "Dismiss" }, "×");
    const notice = h(
      "div",
      { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
      h("span", { class: "notice-kind" }, kind === "error" ? "Error" : "OK"),
      h("span", { class: "notice-text" }, text),
      close,
    );
    const remove = () => notice.remove();
    close.addEventListener("click", remove);
    setTimeout(remove, LIFETIME_MS[kind]);
    this.container.append(notice);
    while (this.container.children.length > MAX_SHOWN) this.container.firstElementChild.remove();
  }
}
