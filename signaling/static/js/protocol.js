// The data-channel protocol seen from the browser: limits, time units and the schedule file format.
// Frames are generation (latent) frames; prompts apply at block starts (see docs/protocol.md).

export const LIMITS = Object.freeze({
  promptChars: 2000,
  timestamp: 10_000_000,
  seed: 4_294_967_295,
  blendBlocks: 64,
});

/** LongLive's geometry; every generator uses it, and `state` events carry it. */
export const DEFAULT_GEOMETRY = Object.freeze({
  width: 832,
  height: 480,
  frames_per_block: 3,
  content_fps: 16,
  temporal_stride: 4,
});

/** Unit conversions for one stream geometry. */
export class Timebase {
  constructor(geometry = DEFAULT_GEOMETRY) {
    this.geometry = { ...DEFAULT_GEOMETRY, ...geometry };
  }

  get framesPerBlock() {
    return this.geometry.frames_per_block;
  }

  /** The block start where a prompt scheduled at `frame` takes effect (the first block start >= frame). */
  blockStart(frame) {
    return Math.ceil(frame / this.framesPerBlock) * this.framesPerBlock;
  }

  /** The block start where a scheduled `entry` applies: the server's `frame`, else from its timestamp. */
  appliesAt(entry) {
    return entry.frame ?? this.blockStart(entry.timestamp);
  }

  /** Video frame where generation frame `frame` starts: 0 for frame 0, then 1 + stride * (frame - 1). */
  videoFrame(frame) {
    return frame <= 0 ? 0 : 1 + this.geometry.temporal_stride * (frame - 1);
  }

  /** Video time in seconds (content rate) where generation frame `frame` starts. */
  seconds(frame) {
    return this.videoFrame(frame) / this.geometry.content_fps;
  }

  /** The first generation frame that starts at or after `seconds` of video (never one before it). */
  frameAt(seconds) {
    const video = seconds * this.geometry.content_fps;
    if (video <= 1e-9) return 0;
    return Math.max(1, Math.ceil((video - 1) / this.geometry.temporal_stride - 1e-9) + 1);
  }

  /**
   * The first block start at or after `frame` where no prompt is scheduled or applies: a prompt put
   * there replaces nothing and is not outranked by a planned one.
   */
  freeBlockStart(scheduled, frame) {
    const taken = new Set();
    for (const entry of scheduled) {
      taken.add(entry.timestamp);
      taken.add(this.appliesAt(entry));
    }
    let start = this.blockStart(frame);
    while (taken.has(start)) start += this.framesPerBlock;
    return start;
  }
}

/** A whole frame for a typed frame number: fractions round up (a frame is never moved into the past). */
export function wholeFrame(value) {
  return Math.ceil(value - 1e-9);
}

/** `m:ss.s` for a number of seconds. */
export function formatClock(seconds) {
  const total = Math.max(0, seconds);
  const minutes = Math.floor(total / 60);
  const rest = (total - minutes * 60).toFixed(1).padStart(4, "0");
  return `${minutes}:${rest}`;
}

/** `2.06 s` style, for labels that show both units. */
export function formatSeconds(seconds) {
  return `${seconds.toFixed(2)} s`;
}

/** A schedule as the JSON file the director exports: `[{timestamp, prompt}]` sorted by frame. */
export function scheduleToJson(scheduled) {
  const entries = scheduled
    .map(({ timestamp, prompt, transition }) => (transition ? { timestamp, prompt, transition } : { timestamp, prompt }))
    .sort((a, b) => a.timestamp - b.timestamp);
  return JSON.stringify(entries, null, 2) + "\n";
}

/** The keys a schedule file's entry may have (`frame`, as `state` lists it, is ignored). */
const ENTRY_KEYS = Object.freeze(["timestamp", "prompt", "new_prompt", "frame", "transition"]);

/**
 * Parse a schedule file: an array of `{timestamp, prompt, transition?}` (`new_prompt` is accepted for `prompt`),
 * or an object with such an array under `schedule` (a recording's JSON) or `scheduled` (a saved `state`).
 * Throws an Error naming the first bad entry. `longlive-rtc generate` reads the same files
 * (longlive_rtc/schedule_file.py; tests/test_schedule_files.py runs both on the same documents).
 */
export function parseSchedule(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`not valid JSON: ${error.message}`);
  }
  const list = Array.isArray(data) ? data : (data?.schedule ?? data?.scheduled);
  if (!Array.isArray(list)) {
    throw new Error('expected a JSON array of {timestamp, prompt}, or an object with one under "schedule"/"scheduled"');
  }
  return list.map((entry, index) => {
    const keys = entry !== null && typeof entry === "object" ? Object.keys(entry) : [];
    const unknown = keys.find((key) => !ENTRY_KEYS.includes(key));
    if (unknown !== undefined) {
      throw new Error(`entry ${index + 1}: unknown key '${unknown}'; expected {timestamp, prompt, transition?}`);
    }
    const prompt = entry?.prompt ?? entry?.new_prompt;
    const timestamp = entry?.timestamp;
    if (!Number.isInteger(timestamp) || timestamp < 0 || timestamp > LIMITS.timestamp) {
      throw new Error(`entry ${index + 1}: 'timestamp' must be an integer frame 0..${LIMITS.timestamp}`);
    }
    if (typeof prompt !== "string" || !prompt.trim() || prompt.length > LIMITS.promptChars) {
      throw new Error(`entry ${index + 1}: 'prompt' must be text of 1..${LIMITS.promptChars} characters`);
    }
    const transition = entry.transition ?? undefined; // null is the default, as absent
    if (transition !== undefined && (typeof transition !== "object" || Array.isArray(transition))) {
      throw new Error(`entry ${index + 1}: 'transition' must be an object with a 'mode'`);
    }
    // its mode and blend are checked by the server, as every schedule_prompt's
    return transition === undefined ? { timestamp, prompt } : { timestamp, prompt, transition };
  });
}

/**
 * Schedule `entries` ({timestamp, prompt, transition?}) one by one with `send` (a command; null when refused), so that
 * the server's command budget paces them; resolves to how many were accepted.
 */
export async function schedulePrompts(send, entries) {
  let added = 0;
  for (const { timestamp, prompt, transition } of entries) {
    const data = transition ? { new_prompt: prompt, timestamp, transition } : { new_prompt: prompt, timestamp };
    if (await send("schedule_prompt", data)) added += 1;
  }
  return added;
}

/** The readable line for an `error` event: its message, with the stable code. */
export function describeError(data) {
  const command = data.command ? ` (${data.command})` : "";
  return `${data.message}${command} [${data.code}]`;
}
