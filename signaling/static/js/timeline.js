// The director's prompt timeline: the scheduled prompts with both units, the add/edit form,
// removal, and the schedule as a JSON file (export and import).

import { $, h } from "./dom.js";
import { formatSeconds, parseSchedule, scheduleToJson } from "./protocol.js";

export class TimelineEditor {
  /**
   * @param {SessionModel} model
   * @param {(type: string, data?: object) => Promise<object|null>} send  a command; null when refused
   * @param {Notices} notices
   */
  constructor(model, send, notices) {
    this.model = model;
    this.send = send;
    this.notices = notices;
    this.editing = null; // timestamp of the entry being edited
    this.form = $("#schedule-form");
    this.prompt = $("#schedule-prompt");
    this.at = $("#schedule-at");
    this.unit = $("#schedule-unit");
    this.submit = $("#schedule-submit");
    this.cancel = $("#schedule-cancel");
    this.preview = $("#schedule-preview");
    this.list = $("#schedule-list");
    this.empty = $("#schedule-empty");

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) this.form.requestSubmit();
    });
    this.at.addEventListener("input", () => this.renderPreview());
    this.unit.addEventListener("change", () => this.renderPreview());
    this.cancel.addEventListener("click", () => this.stopEditing());
    $("#export-schedule").addEventListener("click", () => this.exportFile());
    $("#import-schedule").addEventListener("change", (event) => this.importFile(event.target));
    model.addEventListener("change", () => this.render());
    this.render();
  }

  /** The frame the form's "at" field means, or null when it is not a valid time. */
  targetFrame() {
    const value = Number.parseFloat(this.at.value);
    if (!Number.isFinite(value) || value < 0) return null;
    return this.unit.value === "seconds" ? this.model.timebase.frameAt(value) : Math.round(value);
  }

  renderPreview() {
    const frame = this.targetFrame();
    if (frame === null) {
      this.preview.textContent = "Enter a frame, or a time in seconds.";
      return;
    }
    const timebase = this.model.timebase;
    const start = timebase.blockStart(frame);
    const where = `frame ${frame} · ${formatSeconds(timebase.seconds(frame))}`;
    const applies =
      start === frame ? "a block start" : `applies at block start ${start} (${formatSeconds(timebase.seconds(start))})`;
    this.preview.textContent = `= ${where} — ${applies}`;
  }

  render() {
    const { model } = this;
    const timebase = model.timebase;
    const current = model.currentFrame;
    const scheduled = model.scheduled;
    const activeEntry = [...scheduled].reverse().find((entry) => (entry.frame ?? entry.timestamp) < current);
    this.list.replaceChildren(
      ...scheduled.map((entry) => {
        const start = entry.frame ?? timebase.blockStart(entry.timestamp);
        const state = entry === activeEntry && model.status !== "idle" ? "active" : start < current ? "past" : "";
        return h(
          "li",
          { class: `entry ${state}`.trim(), dataset: { timestamp: String(entry.timestamp) } },
          h(
            "div",
            { class: "entry-when" },
            h("span", { class: "entry-frame" }, `frame ${entry.timestamp}`),
            h("span", { class: "entry-time" }, formatSeconds(timebase.seconds(entry.timestamp))),
          ),
          h("p", { class: "entry-prompt" }, entry.prompt),
          h(
            "p",
            { class: "entry-applies" },
            start === entry.timestamp
              ? "block start"
              : `applies at block start ${start} · ${formatSeconds(timebase.seconds(start))}`,
            state === "active" ? h("span", { class: "entry-tag" }, "on air") : null,
          ),
          h(
            "div",
            { class: "entry-actions" },
            h("button", { type: "button", class: "small ghost", "aria-label": `Edit the prompt at frame ${entry.timestamp}`,
              onclick: () => this.startEditing(entry) }, "Edit"),
            h("button", { type: "button", class: "small ghost danger", "aria-label": `Remove the prompt at frame ${entry.timestamp}`,
              onclick: () => this.remove(entry.timestamp) }, "Remove"),
          ),
        );
      }),
    );
    this.empty.hidden = scheduled.length > 0;
    if (this.at.value === "" && this.editing === null) {
      this.at.placeholder = String(scheduled.length ? timebase.blockStart(current + timebase.framesPerBlock) : 0);
    }
    this.renderPreview();
  }

  startEditing(entry) {
    this.editing = entry.timestamp;
    this.prompt.value = entry.prompt;
    this.at.value = String(entry.timestamp);
    this.unit.value = "frame";
    this.submit.textContent = "Save";
    this.cancel.hidden = false;
    this.form.classList.add("editing");
    this.renderPreview();
    this.prompt.focus();
  }

  stopEditing() {
    this.editing = null;
    this.form.reset();
    this.submit.textContent = "Add";
    this.cancel.hidden = true;
    this.form.classList.remove("editing");
    this.render();
  }

  async save() {
    const frame = this.targetFrame();
    const prompt = this.prompt.value.trim();
    if (frame === null || !prompt) {
      this.notices.error("A prompt needs text and a frame or time.");
      return;
    }
    const moved = this.editing !== null && this.editing !== frame ? this.editing : null;
    if (!(await this.send("schedule_prompt", { new_prompt: prompt, timestamp: frame }))) return;
    if (moved !== null) await this.send("remove_prompt", { timestamp: moved });
    this.stopEditing();
  }

  async remove(timestamp) {
    if (this.editing === timestamp) this.stopEditing();
    await this.send("remove_prompt", { timestamp });
  }

  exportFile() {
    const blob = new Blob([scheduleToJson(this.model.scheduled)], { type: "application/json" });
    const link = h("a", { href: URL.createObjectURL(blob), download: `longlive-schedule-${this.model.state?.session ?? "new"}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  async importFile(input) {
    const file = input.files?.[0];
    input.value = "";
    if (!file) return;
    let entries;
    try {
      entries = parseSchedule(await file.text());
    } catch (error) {
      this.notices.error(`Cannot import ${file.name}: ${error.message}`);
      return;
    }
    let added = 0;
    for (const { timestamp, prompt } of entries) {
      if (await this.send("schedule_prompt", { new_prompt: prompt, timestamp })) added += 1;
    }
    this.notices.info(`Imported ${added} of ${entries.length} prompts from ${file.name}.`);
  }
}
