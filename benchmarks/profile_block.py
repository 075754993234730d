"""Where a steady LongLive block spends its GPU time: top CUDA kernels of one block (random weights).

Run on the GPU:  python benchmarks/profile_block.py [--decoder tae] [--compile] [--cuda-graphs]

It also prints the median wall time of 5 steady blocks (unprofiled): against the table's "Self CUDA time
total", the time the GPU waited for Python to launch kernels, which CUDA graphs (``--cuda-graphs``) remove.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from longlive_rtc.generators.longlive import enable_compile, enable_cuda_graphs, random_longlive, warm_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", default="tae", choices=["wan", "tae"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay the DiT's calls as CUDA graphs")
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True  # as `serve` and `bench` run the Wan VAE's convolutions
    generator = random_longlive("cuda", args.decoder)
    if args.compile:
        enable_compile(generator)
    if args.cuda_graphs:
        enable_cuda_graphs(generator)
    warm_up(generator, report=lambda line: None)
    generator.begin(0, generator.encode_prompt("profile"))
    for _ in range(5):
        generator.next_block()
    wall = []
    for _ in range(5):  # steady blocks, each from an idle GPU to its frames out (DiT, then decode)
        torch.cuda.synchronize()
        began = time.perf_counter()
        generator.next_block()
        torch.cuda.synchronize()
        wall.append(time.perf_counter() - began)
    print(f"steady block, wall time: {1e3 * statistics.median(wall):.1f} ms (median of 5)")
    graphs = generator.pipeline.graphs
    if graphs is not None:
        print(f"CUDA graphs {'on' if graphs.enabled else 'OFF'}: {graphs.captures} captured, {graphs.replays} replayed")
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        generator.next_block()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=70)
    print(table)  # its last line, "Self CUDA time total", is the block's GPU time


if __name__ == "__main__":
    main()
