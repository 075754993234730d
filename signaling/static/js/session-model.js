// What the server has told us about the session: the latest state, the schedule, progress and the prompt
// on air. Pages render from this model; it emits "change" after every event that altered it, and "on_air"
// (the event's data) when a prompt's first frame went on air.
// The schedule comes whole in the `state` that greets the page (and answers `get_state`) and then as
// `schedule_changed` deltas, kept by the gap rule of docs/protocol.md (a missed version asks `get_state`).

import { State } from "./connection.js";
import { Timebase } from "./protocol.js";

const MAX_HELD = 1000; // deltas kept while a get_state is under way; past this they are dropped and asked again

export class SessionModel extends EventTarget {
  constructor() {
    super();
    this.state = null; // the latest `state` event's fields, but its `scheduled` (see `entries`)
    this.entries = new Map(); // the schedule held: timestamp -> {timestamp, prompt, frame, transition?}
    this.scheduleVersion = null; // its version (null: take the next snapshot whole)
    this._held = null; // `schedule_changed` events kept while a gap waits for the answer to get_state
    this._asking = false;
    this._ask = () => Promise.reject(new Error("not following a connection"));
    this.timebase = new Timebase();
    this.currentFrame = 0; // next generation frame (current_start_frame)
    this.videoFrame = 0;
    this.seconds = 0;
    this.activePrompt = null;
    // the scheduled entry on air, {timestamp, frame, prompt}: set by `prompt_applied`, which the server
    // sends as the block that switches goes into playback (timestamp null when only the text is known)
    this.onAir = null;
  }

  /** Feed every server event of `connection` into the model. */
  follow(connection) {
    this._ask = () => connection.requestPaced("get_state");
    connection.addEventListener("message", (event) => this.apply(event.detail));
    connection.addEventListener("state", ({ detail }) => {
      if (detail.state !== State.CONNECTED) this._forget(); // the next connection is greeted with a snapshot
    });
    return this;
  }

  get status() {
    return this.state?.status ?? "idle";
  }

  /** Scheduled prompts sorted by frame: [{timestamp, prompt, frame}] (frame = block start it applies at). */
  get scheduled() {
    return [...this.entries.values()].sort((a, b) => a.timestamp - b.timestamp);
  }

  /**
   * The first free block start not generated yet (see Timebase.freeBlockStart): while running or paused,
   * the block at the current frame may already be under way, so the search starts one block later.
   */
  nextFreeBlockStart() {
    const from = this.status === "idle" ? 0 : this.currentFrame + this.timebase.framesPerBlock;
    return this.timebase.freeBlockStart(this.scheduled, from);
  }

  /** True when `entry` (of `scheduled`) is the prompt on air. */
  isOnAir(entry) {
    const on = this.onAir;
    if (!on || this.status === "idle" || on.timestamp === null) return false;
    return entry.timestamp === on.timestamp && entry.prompt === on.prompt && (entry.frame ?? on.frame) === on.frame;
  }

  apply(event) {
    const { type, data } = event;
    if (type === "state") {
      const { scheduled, ...fields } = data;
      this.state = scheduled ? fields : { ...this.state, ...fields };
      this.timebase = new Timebase(data.geometry);
      if (scheduled) this._snapshot(scheduled, data.schedule_version ?? 0);
      else if (this._behind(data.schedule_version)) this._gap();
      this._progress(data.current_start_frame, data.video_frame ?? 0);
      this.activePrompt = data.active_prompt;
      if (data.status === "idle" || !data.active_prompt) this.onAir = null;
      else if (this.onAir?.prompt !== data.active_prompt) this.onAir = this._findOnAir(data);
    } else if (type === "schedule_changed") {
      if (!this._changed(data)) return;
    } else if (type === "progress") {
      this._progress(data.current_start_frame, data.video_frame, data.seconds);
    } else if (type === "prompt_applied") {
      this.activePrompt = data.prompt;
      this.onAir = { timestamp: data.timestamp, frame: data.frame, prompt: data.prompt };
    } else if (type === "on_air") {
      this.dispatchEvent(new CustomEvent("on_air", { detail: data })); // nothing held changes
      return;
    } else {
      return;
    }
    this.dispatchEvent(new CustomEvent("change", { detail: event }));
  }

  /** The entry a `state` says is on air (joining mid-stream): the latest one applied with its text. */
  _findOnAir(data) {
    const applied = this.scheduled
      .filter((entry) => entry.prompt === data.active_prompt && entry.frame < data.current_start_frame)
      .sort((a, b) => a.frame - b.frame || a.timestamp - b.timestamp);
    const entry = applied[applied.length - 1];
    return entry
      ? { timestamp: entry.timestamp, frame: entry.frame, prompt: entry.prompt }
      : { timestamp: null, frame: null, prompt: data.active_prompt };
  }

  /** Take a snapshot's schedule, unless it is older than the one held (it waited while deltas went out). */
  _snapshot(scheduled, version) {
    const late = this.scheduleVersion !== null && this._held === null && version < this.scheduleVersion;
    if (late) return;
    this.entries = new Map(scheduled.map((entry) => [entry.timestamp, { ...entry }]));
    this.scheduleVersion = version;
    const held = this._held ?? [];
    this._held = null;
    for (const delta of held) this._changed(delta);
  }

  /** Apply one `schedule_changed` if it is the next version; false when nothing changed. */
  _changed(data) {
    if (this.scheduleVersion === null) return false; // before the greeting: the snapshot will hold it
    if (this._held !== null) {
      this._held.push(data);
      if (this._held.length > MAX_HELD) this._held = [];
      if (!this._asking) this._gap();
      return false;
    }
    if (data.version <= this.scheduleVersion) return false; // already in what we hold
    if (data.version > this.scheduleVersion + 1) {
      this._held = [data];
      this._gap();
      return false;
    }
    for (const change of data.changes) this._applyChange(change);
    this.scheduleVersion = data.version;
    return true;
  }

  _applyChange(change) {
    const { op, ...entry } = change;
    if (op === "put") this.entries.set(entry.timestamp, entry);
    else if (op === "remove") this.entries.delete(entry.timestamp);
    else if (op === "clear") this.entries.clear();
    else if (op === "rewind") {
      for (const [timestamp, held] of this.entries) {
        this.entries.set(timestamp, { ...held, frame: this.timebase.blockStart(timestamp) });
      }
    }
  }

  /** A state without the schedule says changes were sent that we did not apply. */
  _behind(version) {
    return this.scheduleVersion !== null && this._held === null && (version ?? 0) > this.scheduleVersion;
  }

  /** Changes were missed: keep the ones that come and ask for the whole state (its answer applies them). */
  _gap() {
    this._held ??= [];
    if (this._asking) return;
    this._asking = true;
    this._ask()
      .catch(() => {}) // offline or refused: the next delta asks again, a reconnection greets us anew
      .finally(() => {
        this._asking = false;
      });
  }

  _forget() {
    this.scheduleVersion = null;
    this._held = null;
  }

  _progress(frame, videoFrame, seconds = null) {
    this.currentFrame = frame;
    this.videoFrame = videoFrame;
    this.seconds = seconds ?? videoFrame / this.timebase.geometry.content_fps;
  }
}
