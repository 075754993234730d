"""Speed of the synthetic generator: video frames per second on one CPU core at 832x480.

Run:  taskset -c 0 python benchmarks/synthetic_generator.py [--blocks 200] [--repeats 5]
A prompt switch (cross-fade block) every 10 blocks, as in a busy live session. Prints the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from longlive_rtc.generators import SyntheticGenerator


def one_run(blocks: int) -> float:
    generator = SyntheticGenerator()
    generator.begin(0, generator.encode_prompt("a red fox running through a snowy forest"))
    frames, started = 0, time.perf_counter()
    for i in range(blocks):
        if i and i % 10 == 0:
            generator.switch_prompt(generator.encode_prompt(f"scene {i}: blue ocean waves at dusk"))
        frames += len(generator.next_block())
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    one_run(5)  # warm-up
    rates = [one_run(args.blocks) for _ in range(args.repeats)]
    print(json.dumps({"video_frames_per_s_median": round(statistics.median(rates), 1),
                      "runs": [round(r, 1) for r in rates], "width": 832, "height": 480}))  # fmt: skip


if __name__ == "__main__":
    main()
