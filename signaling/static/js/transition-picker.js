// The transition control of a prompt form: how the prompt switches in (recache, hard cut, or a blend over
// k blocks, linear or slerp), as the `transition` of `schedule_prompt` (docs/protocol.md, Transitions).

import { DEFAULT_GEOMETRY, LIMITS } from "./protocol.js";

export class TransitionPicker {
  /** @param {HTMLElement} root  holds [data-part=mode|blocks|curve] */
  constructor(root) {
    this.mode = root.querySelector("[data-part=mode]");
    this.blocks = root.querySelector("[data-part=blocks]");
    this.curve = root.querySelector("[data-part=curve]");
    this.blocks.max = String(LIMITS.blendBlocks);
    this.blocks.title = `Blend length in blocks (${DEFAULT_GEOMETRY.frames_per_block} frames each)`;
    this.mode.addEventListener("change", () => this.sync());
    this.sync();
  }

  sync() {
    const blend = this.mode.value === "blend";
    this.blocks.hidden = this.curve.hidden = !blend;
  }

  /** The `transition` to send: undefined for the default recache. */
  value() {
    const mode = this.mode.value;
    if (mode === "recache") return undefined;
    if (mode !== "blend") return { mode };
    const blocks = Math.min(Math.max(Number.parseInt(this.blocks.value, 10) || 1, 1), LIMITS.blendBlocks);
    return { mode, blocks, curve: this.curve.value };
  }

  /** Show `transition` (an entry's, or undefined). */
  set(transition) {
    this.mode.value = transition?.mode ?? "recache";
    if (transition?.mode === "blend") {
      this.blocks.value = String(transition.blocks);
      this.curve.value = transition.curve ?? "linear";
    }
    this.sync();
  }

  reset() {
    this.set(undefined);
  }
}

/** A transition in words, for the timeline ("" for the default recache). */
export function describeTransition(transition) {
  if (!transition || transition.mode === "recache") return "";
  if (transition.mode === "cut") return "hard cut";
  const blocks = transition.blocks === 1 ? "1 block" : `${transition.blocks} blocks`;
  return `blend over ${blocks} (${transition.curve ?? "linear"})`;
}
