// Visible messages: errors from the server (`error` events, refused requests) and short confirmations.
// They sit over the video, never over a control: the newest first, at most MAX_SHOWN, and a message
// repeated while it is shown is counted (×2, ×3) instead of stacked.

import { h } from "./dom.js";

const LIFETIME_MS = { error: 12000, info: 4000 };
const MAX_SHOWN = 3;

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
    const same = [...this.container.children].find(
      (notice) => notice.dataset.kind === kind && notice.dataset.text === text,
    );
    if (same) {
      same.remove();
      same.count += 1;
      same.querySelector(".notice-count").textContent = `×${same.count}`;
      this._place(same, kind);
      return;
    }
    const close = h("button", { class: "notice-close", type: "button", "aria-label": "Dismiss" }, "×");
    const notice = h(
      "div",
      { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status", dataset: { kind, text } },
      h("span", { class: "notice-kind" }, kind === "error" ? "Error" : "OK"),
      h("span", { class: "notice-text" }, text),
      h("span", { class: "notice-count" }),
      close,
    );
    notice.count = 1;
    close.addEventListener("click", () => notice.remove());
    this._place(notice, kind);
  }

  _place(notice, kind) {
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => notice.remove(), LIFETIME_MS[kind]);
    this.container.prepend(notice);
    while (this.container.children.length > MAX_SHOWN) this.container.lastElementChild.remove();
  }
}
