"""GPU smoke run of the LongLive model core: full-size 1.3B DiT with random bf16 weights at 832x480.

Runs a warm-up stream, then a 10-block stream with two prompt switches (global sink kept at block 5,
dropped at block 8), timing every DiT forward and every block with CUDA events, checks that a
steady-state block makes no host synchronisation, and times a few blocks with float32 RoPE.
Decoding is not included (DiT only). Prints a compact summary; `--out DIR` also writes JSON.

    PYTHONPATH=. python benchmarks/model_gpu_smoke.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch

from longlive_rtc.model import CausalWanModel, StreamingPipeline, WanConfig, backend_for, longlive_1_3b, tiny
from longlive_rtc.model.random_init import randomize_
from longlive_rtc.timing import Span, StageTimer


def random_model(device: torch.device, cfg: WanConfig, seed: int = 0) -> CausalWanModel:
    """The module tree on `device`, random weights (N(0, 0.02); norm weights 1), bf16."""
    with torch.device("meta"):
        model = CausalWanModel(cfg)
    return randomize_(model.to_empty(device=device), std=0.02, seed=seed).to(torch.bfloat16).eval()


def times(timer: StageTimer, kind: str, blocks: range) -> list[float]:
    """Milliseconds of the forwards of ``kind`` made while the blocks in ``blocks`` ran (tagged by block)."""
    return timer.ms(kind, lambda block: block in blocks)


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 2) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tiny", action="store_true", help="tiny config (to check the script itself; CPU if no GPU)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() or not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cudnn.benchmark = False

    t0 = time.perf_counter()
    model = random_model(device, tiny() if args.tiny else longlive_1_3b())
    cfg = model.config
    prompts = [torch.randn(1, cfg.text_len, cfg.text_dim, device=device, dtype=torch.bfloat16) for _ in range(3)]
    pipe = StreamingPipeline(model)
    build_s = time.perf_counter() - t0

    # warm-up: every key-window shape (3, 6, 9, 12 frames) and a recache
    pipe.begin(123, prompts[0])
    for i in range(6):
        if i == 5:
            pipe.switch_prompt(prompts[1])
        pipe.next_block()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    timer = StageTimer(device).attach(pipe)
    block_spans, switch_spans = [], []
    switches = {5: (prompts[1], True), 8: (prompts[2], False)}
    pipe.begin(0, prompts[0])
    checksum = []
    for blk in range(args.blocks):
        timer.tag = blk
        if blk in switches:
            span = Span(device).start()
            pipe.switch_prompt(switches[blk][0], global_sink=switches[blk][1])
            switch_spans.append((blk, span.stop()))
        span = Span(device).start()
        x0 = pipe.next_block()
        block_spans.append(span.stop())
        checksum.append(x0.float().abs().mean())
    block_ms = [span.ms for span in block_spans]
    peak_gb = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    finite = all(bool(torch.isfinite(c)) for c in checksum)

    # host-sync check on one steady-state block
    timer.tag = -2
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.next_block()
    if cuda:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]

    # float32 RoPE (nearly identical numerics, fewer bytes): 3 steady blocks
    model.rope.dtype = torch.float32
    spans = []
    for _ in range(4):
        span = Span(device).start()
        pipe.next_block()
        spans.append(span.stop())
    rope32_block = [span.ms for span in spans[1:]]

    steady = range(4, args.blocks)
    kv_gb = (pipe.cache.k.numel() + pipe.cache.v.numel()) * 2 / 2**30
    summary = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "attention": backend_for(torch.empty(1, device=device, dtype=torch.bfloat16)),
        "params_B": round(sum(p.numel() for p in model.parameters()) / 1e9, 4),
        "build_s": round(build_s, 1),
        "kv_cache_GiB": round(kv_gb, 2),
        "peak_mem_GiB": round(peak_gb, 2),
        "forward_ms": {
            "denoise_steady_window12": med(times(timer, "denoise", steady)),
            "cache_pass_steady": med(times(timer, "cache", steady)),
            "denoise_block0_window3": med(times(timer, "denoise", range(0, 1))),
            "recache": [round(x, 2) for x in times(timer, "recache", range(args.blocks))],
        },
        "block_ms": {
            "steady_median": med([block_ms[i] for i in steady]),
            "per_block": [round(x, 1) for x in block_ms],
            "switch_prompt": [(blk, round(span.ms, 1)) for blk, span in switch_spans],
            "steady_median_rope_float32": med(rope32_block),
        },
        "dit_fps_12_frames_per_block": round(12000 / statistics.median([block_ms[i] for i in steady]), 1),
        "host_syncs_in_steady_block": syncs,
        "outputs_finite": finite,
        "frames_generated": pipe.current_start_frame,
    }
    for key, value in summary.items():
        print(f"{key}: {json.dumps(value)}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "model_gpu_smoke.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
