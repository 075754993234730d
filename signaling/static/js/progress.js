// The progress display: status, current frame, video time, active prompt, and a bar with the
// scheduled prompts as markers. Used by the director and the viewer.

import { h } from "./dom.js";
import { formatClock, formatSeconds } from "./protocol.js";

export class ProgressView {
  /** Build the display inside `container` and keep it in step with `model` (a SessionModel). */
  constructor(container, model) {
    this.model = model;
    this.status = h("span", { class: "status-pill", dataset: { status: "idle" } }, "idle");
    this.frame = h("strong", { class: "readout-frame" }, "frame 0");
    this.clock = h("span", { class: "readout-clock" }, "0:00.0");
    this.videoFrame = h("span", { class: "readout-muted" }, "video frame 0");
    this.fill = h("div", { class: "bar-fill" });
    this.markers = h("div", { class: "bar-markers" });
    this.bar = h(
      "div",
      { class: "bar", role: "progressbar", "aria-label": "Generation progress", "aria-valuemin": "0" },
      this.fill,
      this.markers,
    );
    this.end = h("span", {}, "");
    this.prompt = h("span", { class: "active-prompt-text" }, "—");
    container.classList.add("progress");
    container.replaceChildren(
      h("div", { class: "progress-head" }, this.status, h("span", { class: "readout" }, this.frame, " · ", this.clock,
        " ", h("span", { class: "readout-muted" }, "video"), " · ", this.videoFrame)),
      this.bar,
      h("div", { class: "bar-scale" }, h("span", {}, "frame 0"), this.end),
      h("p", { class: "active-prompt" }, h("span", { class: "label" }, "Now"), this.prompt),
    );
    model.addEventListener("change", () => this.render());
    this.render();
  }

  render() {
    const { model } = this;
    const { currentFrame, timebase } = model;
    const status = model.status;
    this.status.textContent = status;
    this.status.dataset.status = status;
    this.frame.textContent = `frame ${currentFrame}`;
    this.clock.textContent = formatClock(model.seconds);
    this.videoFrame.textContent = `video frame ${model.videoFrame}`;
    this.prompt.textContent = model.activePrompt ?? "— (nothing generated yet)";

    const scheduled = model.scheduled;
    const last = scheduled.length ? scheduled[scheduled.length - 1].timestamp : 0;
    const span = spanFor(Math.max(currentFrame, last), timebase.framesPerBlock);
    const percent = (frame) => `${Math.min(100, (100 * frame) / span).toFixed(2)}%`;
    this.fill.style.width = percent(currentFrame);
    this.bar.setAttribute("aria-valuemax", String(span));
    this.bar.setAttribute("aria-valuenow", String(currentFrame));
    this.bar.setAttribute("aria-valuetext", `frame ${currentFrame}, ${formatSeconds(model.seconds)}`);
    this.end.textContent = `frame ${span} · ${formatSeconds(timebase.seconds(span))}`;
    this.markers.replaceChildren(
      ...scheduled.map((entry) =>
        h("span", {
          class: entry.timestamp < currentFrame ? "marker past" : "marker",
          style: `left: ${percent(timebase.appliesAt(entry))}`,
          title: `frame ${entry.timestamp}: ${entry.prompt}`,
        }),
      ),
    );
  }
}

/** A bar length (frames) with room ahead of `frame`, in whole multiples of 16 blocks (at least one). */
function spanFor(frame, framesPerBlock) {
  const step = 16 * framesPerBlock;
  return Math.ceil((frame * 1.2 + framesPerBlock) / step) * step;
}
