// What the server has told us about the session: the latest state, progress and active prompt.
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

  apply(event) {
    const { type, data } = event;
    if (type === "state") {
      this.state = data;
      this.timebase = new Timebase(data.geometry);
      this._progress(data.current_start_frame, data.video_frame ?? 0);
      this.activePrompt = data.active_prompt;
    } else if (type === "progress") {
      this._progress(data.current_start_frame, data.video_frame, data.seconds);
    } else if (type === "prompt_applied") {
      this.activePrompt = data.prompt;
    } else {
      return;
    }
    this.dispatchEvent(new CustomEvent("change", { detail: event }));
  }

  _progress(frame, videoFrame, seconds = null) {
    this.currentFrame = frame;
    this.videoFrame = videoFrame;
    this.seconds = seconds ?? videoFrame / this.timebase.geometry.content_fps;
  }
}
