"""GPU: is one batched DiT pass for two streams at the same step faster than the two streams interleaved?

Full-size LongLive with random bf16 weights, compiled as ``bench --compile on`` compiles it. Times steady
blocks (full KV window, DiT only: 4 denoising forwards + the deferred cache pass, no decode) of
(a) one pipeline with a batch of 2 and (b) two batch-1 pipelines, one block of each in turn. Medians of
CUDA-event block times over ``--blocks`` steady blocks (after the window fills), ``--runs`` times.

    PYTHONPATH=. python benchmarks/batch_vs_interleave.py [--compile on] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from longlive_rtc.generators.longlive import enable_compile, random_longlive
from longlive_rtc.timing import device_ms

FILL = 4  # blocks before the window is full (12 frames)


def block_ms(step) -> float:
    return device_ms(step, "cuda")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--compile", choices=["on", "off"], default="on")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    generator = random_longlive("cuda", "tae")
    if args.compile == "on":
        enable_compile(generator)
    emb = generator.encode_prompt("a red fox in the snow")
    batched, one, two = generator.pipeline.fork(), generator.pipeline.fork(), generator.pipeline.fork()
    rows = []
    for run in range(args.runs + 1):  # run 0 warms up (compiles the batch-2 shapes)
        batched.begin([2 * run, 2 * run + 1], torch.cat([emb, emb]))
        one.begin(2 * run, emb)
        two.begin(2 * run + 1, emb)
        for _ in range(FILL):
            batched.next_block()
            one.next_block()
            two.next_block()
        b_ms = [block_ms(batched.next_block) for _ in range(args.blocks)]
        i_ms = [block_ms(lambda: (one.next_block(), two.next_block())) for _ in range(args.blocks)]
        single_ms = [block_ms(one.next_block) for _ in range(args.blocks)]
        for pipe in (batched, one, two):
            pipe.end()
        if run:
            rows.append({
                "batched_pair_ms": statistics.median(b_ms),
                "interleaved_pair_ms": statistics.median(i_ms),
                "single_ms": statistics.median(single_ms),
            })  # fmt: skip
    result = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    result["batch_gain"] = 1 - result["batched_pair_ms"] / result["interleaved_pair_ms"]
    result["runs"] = rows
    result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result, indent=2))
    print(
        f"steady DiT block for two streams: batched {result['batched_pair_ms']:.1f} ms, interleaved "
        f"{result['interleaved_pair_ms']:.1f} ms (one stream alone {result['single_ms']:.1f} ms): "
        f"batching gains {100 * result['batch_gain']:.1f}%"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
