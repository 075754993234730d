"""What ``--precision fp8`` costs in picture: decoded frames of an FP8 stream against the exact bf16 one.

Full-size LongLive with random bf16 weights (no files needed), one seed and two prompts, a prompt switch at
``--switch-at``. Three streams of ``--blocks`` blocks each: the plain bf16 pipeline (eager, exact), the
compiled bf16 one (``--compile on``: the error the speed path already accepts) and the compiled FP8 one.
Prints, over all blocks (and per block in ``--json``), the PSNR (dB) and the largest and mean absolute error
(uint8 levels) of compiled bf16 and FP8 against the plain stream's frames, of FP8 against compiled bf16 (its
own cost), and the relative error of the latents. Random weights: the frames
are not pictures, so this bounds the numerical drift, not the perceived quality of trained weights.

    PYTHONPATH=. python benchmarks/precision_quality.py [--decoder wan] [--blocks 20] [--json out.json]
    PYTHONPATH=. python benchmarks/precision_quality.py --tiny   # CPU check of the script itself
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from longlive_rtc.generators.longlive import enable_compile, random_longlive, use_precision, warm_up


def stream(generator, blocks: int, switch_at: int) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Frames and latents of `blocks` blocks from seed 7, the second prompt from block `switch_at` on."""
    prompts = [generator.encode_prompt("a red kite over the sea"), generator.encode_prompt("a city at night")]
    generator.begin(7, prompts[0])
    frames, latents = [], []
    for i in range(blocks):
        if i == switch_at:
            generator.switch_prompt(prompts[1])
        block = generator.pipeline.next_block()
        latents.append(block.float().cpu())
        frames.append(generator.decoder.decode(block)[0].cpu().numpy())
    generator.reset()
    return frames, latents


def compare(want: np.ndarray, got: np.ndarray) -> dict:
    """PSNR in dB (inf when equal), largest and mean absolute difference in uint8 levels."""
    diff = want.astype(np.int16) - got.astype(np.int16)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
        "max_abs": int(np.abs(diff).max()),
        "mean_abs": float(np.abs(diff).mean()),
    }


def against(reference: tuple, other: tuple) -> dict:
    (want_frames, want_latents), (frames, latents) = reference, other
    blocks = [compare(a, b) for a, b in zip(want_frames, frames, strict=True)]
    relative = [float((a - b).norm() / a.norm()) for a, b in zip(want_latents, latents, strict=True)]
    overall = compare(np.concatenate(want_frames), np.concatenate(frames))
    return overall | {"latent_relative_max": max(relative), "per_block": blocks, "latent_relative": relative}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", choices=["wan", "tae"], default="wan")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--switch-at", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="tiny random configs on the CPU: checks the script")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device, dtype = ("cpu", torch.float32) if args.tiny else ("cuda", torch.bfloat16)
    torch.backends.cudnn.benchmark = True
    plain, compiled, fp8 = (random_longlive(device, args.decoder, dtype, tiny_model=args.tiny) for _ in range(3))
    use_precision(fp8, "fp8")  # the same random weights in each (seeded), here quantized
    for generator in (compiled, fp8) if device == "cuda" else ():
        enable_compile(generator)
        warm_up(generator, report=lambda line: None)
    print(f"{args.blocks} blocks, {args.decoder} decoder, switch at block {args.switch_at}", flush=True)
    mode = "compiled" if device == "cuda" else "eager"  # the CPU check compiles nothing
    streams = {name: stream(g, args.blocks, args.switch_at) for name, g in
               (("bf16 plain", plain), (f"bf16 {mode}", compiled), (f"fp8 {mode}", fp8))}  # fmt: skip
    results = {}
    for name, base in ((f"bf16 {mode}", "bf16 plain"), (f"fp8 {mode}", "bf16 plain"), (f"fp8 {mode}", f"bf16 {mode}")):
        r = results[f"{name} vs {base}"] = against(streams[base], streams[name])
        worst = min(b["psnr_db"] for b in r["per_block"])
        print(f"{name} vs {base}: PSNR {r['psnr_db']:.2f} dB (worst block {worst:.2f}), max |error| "
              f"{r['max_abs']} levels, mean {r['mean_abs']:.3f}, latents {r['latent_relative_max']:.2e} relative "
              f"at most", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
