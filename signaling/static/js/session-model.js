// What the server has told us about the session: the latest state, progress and the prompt on air.
// Pages render from this model; it emits "change" after every event that altered it.

import { Timebase } from "./protocol.js";

export class SessionModel extends EventTarget {
  constructor() {
    super();
    this.state = null; // the latest `state` event's data
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
    connection.addEventListener("message", (event) => this.apply(event.detail));
    return this;
  }

  get status() {
    return this.state?.status ?? "idle";
  }

  /** Scheduled prompts sorted by frame: [{timestamp, prompt, frame}] (frame = block start it applies at). */
  get scheduled() {
    return [...(this.state?.scheduled ?? [])].sort((a, b) => a.timestamp - b.timestamp);
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
      this.state = data;
      this.timebase = new Timebase(data.geometry);
      this._progress(data.current_start_frame, data.video_frame ?? 0);
      this.activePrompt = data.active_prompt;
      if (data.status === "idle" || !data.active_prompt) this.onAir = null;
      else if (this.onAir?.prompt !== data.active_prompt) this.onAir = this._findOnAir(data);
    } else if (type === "progress") {
      this._progress(data.current_start_frame, data.video_frame, data.seconds);
    } else if (type === "prompt_applied") {
      this.activePrompt = data.prompt;
      this.onAir = { timestamp: data.timestamp, frame: data.frame, prompt: data.prompt };
    } else {
      return;
    }
    this.dispatchEvent(new CustomEvent("change", { detail: event }));
  }

  /** The entry a `state` says is on air (joining mid-stream): the latest one applied with its text. */
  _findOnAir(data) {
    const applied = (data.scheduled ?? [])
      .filter((entry) => entry.prompt === data.active_prompt && entry.frame < data.current_start_frame)
      .sort((a, b) => a.frame - b.frame || a.timestamp - b.timestamp);
    const entry = applied[applied.length - 1];
    return entry
      ? { timestamp: entry.timestamp, frame: entry.frame, prompt: entry.prompt }
      : { timestamp: null, frame: null, prompt: data.active_prompt };
  }

  _progress(frame, videoFrame, seconds = null) {
    this.currentFrame = frame;
    this.videoFrame = videoFrame;
    this.seconds = seconds ?? videoFrame / this.timebase.geometry.content_fps;
  }
}
