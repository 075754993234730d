// The director's prompt timeline: the scheduled prompts with both units, the add/edit form,
// removal, and the schedule as a JSON file (export and import).
//
// The list is updated in place, one element per scheduled timestamp, so that focus, hover and clicks on
// its buttons survive the progress events that arrive every block.

import { $, h } from "./dom.js";
import { formatSeconds, parseSchedule, schedulePrompts, scheduleToJson, wholeFrame } from "./protocol.js";
import { describeTransition, TransitionPicker } from "./transition-picker.js";

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
    this.items = new Map(); // timestamp -> {li, parts, key}
    this.form = $("#schedule-form");
    this.prompt = $("#schedule-prompt");
    this.at = $("#schedule-at");
    this.unit = $("#schedule-unit");
    this.submit = $("#schedule-submit");
    this.cancel = $("#schedule-cancel");
    this.preview = $("#schedule-preview");
    this.list = $("#schedule-list");
    this.empty = $("#schedule-empty");
    this.transition = new TransitionPicker($("#schedule-transition"));

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

  /** The frame the form's "at" field means (fractions round up), or null when it is not a valid time. */
  targetFrame() {
    const value = Number.parseFloat(this.at.value);
    if (!Number.isFinite(value) || value < 0) return null;
    return this.unit.value === "seconds" ? this.model.timebase.frameAt(value) : wholeFrame(value);
  }

  renderPreview() {
    const frame = this.targetFrame();
    if (frame === null) {
      this.preview.textContent = "Enter a frame, or a time in seconds.";
      return;
    }
    const { timebase, currentFrame, status } = this.model;
    const typed = Number.parseFloat(this.at.value);
    const start = timebase.blockStart(frame);
    const parts = [`= frame ${frame} · ${formatSeconds(timebase.seconds(frame))}`];
    if (this.unit.value === "frame" && typed !== frame) parts.push(`(${typed} rounded up)`);
    let applies = start === frame ? "a block start" : `applies at block start ${start} (${formatSeconds(timebase.seconds(start))})`;
    if (status !== "idle" && start < currentFrame + timebase.framesPerBlock) {
      applies = "already generated: it applies at the next block start";
    }
    parts.push(`— ${applies}`);
    const existing = this.model.scheduled.find((entry) => entry.timestamp === frame);
    if (existing && this.editing !== frame) parts.push(`· replaces the prompt at frame ${frame}`);
    this.preview.textContent = parts.join(" ");
  }

  render() {
    const { model } = this;
    const current = model.currentFrame;
    const scheduled = model.scheduled;
    const seen = new Set();
    let previous = null;
    for (const entry of scheduled) {
      seen.add(entry.timestamp);
      let item = this.items.get(entry.timestamp);
      if (!item) {
        item = this.createItem(entry.timestamp);
        this.items.set(entry.timestamp, item);
      }
      this.updateItem(item, entry, current);
      const expected = previous ? previous.nextSibling : this.list.firstChild;
      if (item.li !== expected) this.list.insertBefore(item.li, expected);
      previous = item.li;
    }
    for (const [timestamp, item] of this.items) {
      if (!seen.has(timestamp)) {
        item.li.remove();
        this.items.delete(timestamp);
      }
    }
    this.empty.hidden = scheduled.length > 0;
    if (this.at.value === "" && this.editing === null) {
      this.at.placeholder = String(model.nextFreeBlockStart());
    }
    this.renderPreview();
  }

  /** The element of the entry at `timestamp`; its buttons look the entry up when clicked. */
  createItem(timestamp) {
    const parts = {
      frame: h("span", { class: "entry-frame" }, `frame ${timestamp}`),
      time: h("span", { class: "entry-time" }),
      prompt: h("p", { class: "entry-prompt" }),
      applies: h("span", {}),
      transition: h("span", { class: "entry-transition" }),
      tag: h("span", { class: "entry-tag", hidden: true }, "on air"),
    };
    const find = () => this.model.scheduled.find((entry) => entry.timestamp === timestamp);
    const li = h(
      "li",
      { class: "entry", dataset: { timestamp: String(timestamp) } },
      h("div", { class: "entry-when" }, parts.frame, parts.time),
      parts.prompt,
      h("p", { class: "entry-applies" }, parts.applies, parts.transition, parts.tag),
      h(
        "div",
        { class: "entry-actions" },
        h("button", { type: "button", class: "small ghost", "aria-label": `Edit the prompt at frame ${timestamp}`,
          onclick: () => { const entry = find(); if (entry) this.startEditing(entry); } }, "Edit"),
        h("button", { type: "button", class: "small ghost danger", "aria-label": `Remove the prompt at frame ${timestamp}`,
          onclick: () => this.remove(timestamp) }, "Remove"),
      ),
    );
    return { li, parts, key: "" };
  }

  /** Bring an entry's element up to date, touching the DOM only where something changed. */
  updateItem(item, entry, current) {
    const { timebase } = this.model;
    const start = timebase.appliesAt(entry);
    const onAir = this.model.isOnAir(entry);
    const state = onAir ? "active" : start < current ? "past" : "planned";
    const transition = describeTransition(entry.transition);
    const key = `${state}\u0000${start}\u0000${entry.prompt}\u0000${timebase.framesPerBlock}\u0000${transition}`;
    if (key === item.key) return;
    item.key = key;
    const { parts, li } = item;
    li.className = `entry ${state === "planned" ? "" : state}`.trim();
    parts.time.textContent = formatSeconds(timebase.seconds(entry.timestamp));
    parts.prompt.textContent = entry.prompt;
    parts.applies.textContent =
      start === entry.timestamp ? "block start" : `applies at block start ${start} · ${formatSeconds(timebase.seconds(start))}`;
    parts.transition.textContent = transition ? ` · ${transition}` : "";
    parts.tag.hidden = !onAir;
  }

  startEditing(entry) {
    this.editing = entry.timestamp;
    this.prompt.value = entry.prompt;
    this.at.value = String(entry.timestamp);
    this.unit.value = "frame";
    this.transition.set(entry.transition);
    this.submit.textContent = "Save";
    this.cancel.hidden = false;
    this.form.classList.add("editing");
    this.renderPreview();
    this.prompt.focus();
  }

  stopEditing() {
    this.editing = null;
    this.form.reset();
    this.transition.reset();
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
    const data = { new_prompt: prompt, timestamp: frame };
    const transition = this.transition.value();
    if (transition) data.transition = transition;
    if (!(await this.send("schedule_prompt", data))) return;
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

  /** Add a file's prompts one by one (paced by the server's command budget: see send). */
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
    const added = await schedulePrompts(this.send, entries);
    this.notices.info(`Imported ${added} of ${entries.length} prompts from ${file.name}.`);
  }
}
