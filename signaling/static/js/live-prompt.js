// The director's live prompt box: Enter puts the text at the next *free* block start (one that no
// planned prompt holds or applies at, and that has not been generated yet), and the hint under the box
// says beforehand which frame that is and what follows it; once the prompt's first frame is on air, a
// notice says how long that took and how it switched in (the `on_air` event).

import { $ } from "./dom.js";
import { formatSeconds } from "./protocol.js";
import { describeTransition, TransitionPicker } from "./transition-picker.js";

export class LivePrompt {
  /**
   * @param {SessionModel} model
   * @param {(type: string, data?: object) => Promise<object|null>} send  a command; null when refused
   * @param {Notices} notices
   */
  constructor(model, send, notices) {
    this.model = model;
    this.send = send;
    this.notices = notices;
    this.form = $("#live-form");
    this.text = $("#live-prompt");
    this.hint = $("#live-hint");
    this.transition = new TransitionPicker($("#live-transition"));
    this.sent = new Map(); // timestamp -> when its live prompt was sent (performance.now()), until it airs
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.apply();
    });
    model.addEventListener("change", () => this.render());
    model.addEventListener("on_air", ({ detail }) => this.aired(detail));
    this.render();
  }

  /** A prompt went on air: say so when it is one this box sent. */
  aired({ timestamp, mode, skipped }) {
    const sentAt = this.sent.get(timestamp);
    if (sentAt === undefined) return;
    this.sent.delete(timestamp);
    const after = ((performance.now() - sentAt) / 1000).toFixed(1);
    const how = mode === "cut" ? "a hard cut" : mode === "blend" ? "a blend" : "a recache";
    const frames = skipped === 1 ? "1 frame" : `${skipped} frames`;
    const lost = skipped > 0 ? `; ${frames} of the prompt before it were skipped` : "";
    this.notices.info(`On air ${after} s after Enter, by ${how}${lost}.`);
  }

  /** The frame a live prompt goes to now: the first free block start not generated yet. */
  target() {
    return this.model.nextFreeBlockStart();
  }

  /** What pressing Enter would do, in words. */
  describe(frame = this.target()) {
    const { model } = this;
    const { timebase } = model;
    const at = `frame ${frame} (${formatSeconds(timebase.seconds(frame))})`;
    const next = model.scheduled.find((entry) => timebase.appliesAt(entry) > frame);
    const then = next ? `; the prompt planned at frame ${next.timestamp} follows it` : "";
    if (model.status === "idle") {
      return frame === 0
        ? "Enter puts it at frame 0: Start begins with it. Shift+Enter adds a line."
        : `Enter puts it at ${at}, the first free block start${then}. Shift+Enter adds a line.`;
    }
    return `Enter puts it on air at ${at}, the next free block start${then}. Shift+Enter adds a line.`;
  }

  render() {
    if (this.model.status === "idle") this.sent.clear(); // stopped: what was sent will not air
    this.hint.textContent = this.describe();
  }

  async apply() {
    const prompt = this.text.value.trim();
    if (!prompt) return;
    const frame = this.target();
    const data = { new_prompt: prompt, timestamp: frame };
    const transition = this.transition.value();
    if (transition) data.transition = transition;
    const sentAt = performance.now();
    if (await this.send("schedule_prompt", data)) {
      if (this.model.status !== "idle") this.sent.set(frame, sentAt);
      this.text.value = "";
      const how = transition ? `, ${describeTransition(transition)}` : "";
      this.notices.info(`Live prompt at frame ${frame} (${formatSeconds(this.model.timebase.seconds(frame))})${how}.`);
    }
  }
}
