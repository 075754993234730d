// The director's live prompt box: Enter puts the text at the next *free* block start (one that no
// planned prompt holds or applies at, and that has not been generated yet), and the hint under the box
// says beforehand which frame that is and what follows it.

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
    this.render();
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
    this.hint.textContent = this.describe();
  }

  async apply() {
    const prompt = this.text.value.trim();
    if (!prompt) return;
    const frame = this.target();
    const data = { new_prompt: prompt, timestamp: frame };
    const transition = this.transition.value();
    if (transition) data.transition = transition;
    if (await this.send("schedule_prompt", data)) {
      this.text.value = "";
      const how = transition ? `, ${describeTransition(transition)}` : "";
      this.notices.info(`Live prompt at frame ${frame} (${formatSeconds(this.model.timebase.seconds(frame))})${how}.`);
    }
  }
}
