"""Benchmark of the IO parts with full-size random weights: streaming decode (Wan VAE, TAE) and prompt encode.

    python benchmarks/io_bench.py [--json out.json]      (CUDA, full size)
    python benchmarks/io_bench.py --smoke                (CPU, tiny shapes: checks the script only)

Times are medians after warm-up (CUDA events on the GPU): ms per 3-latent block (12 frames at 832x480,
uint8 conversion on the device included) and ms per prompt encode (umT5-XXL, bf16).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch

from longlive_rtc.model.compile import compile_vae
from longlive_rtc.model.decode import StreamingDecoder
from longlive_rtc.model.t5 import T5Config, UMT5Encoder
from longlive_rtc.model.tae import TAEConfig, TAEDecoder
from longlive_rtc.model.text_encoder import TextEncoder
from longlive_rtc.model.vae import VAEConfig, WanVAEDecoder
from longlive_rtc.timing import device_ms


def time_ms(fn: Callable[[], object], iters: int, device: torch.device) -> list[float]:
    """Milliseconds per call: CUDA events (synchronised after each call) or the host clock on CPU."""
    return [device_ms(fn, device) for _ in range(iters)]


def median_ms(fn: Callable[[], object], iters: int = 10, warmup: int = 1) -> float:
    """Median CUDA-event milliseconds of `fn` after `warmup` calls (cuDNN autotuning, compiles)."""
    device = torch.device("cuda")
    for _ in range(warmup):
        fn()
    return statistics.median(time_ms(fn, iters, device))


def summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "n": len(times)}


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_decoder(model: torch.nn.Module, latent: tuple[int, int, int], blocks: int, frame_chunk=None) -> dict:
    """Stream blocks of 3 random latents; the first (cold) block is timed apart from the steady ones."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(0)
    latents = [torch.randn(1, 3, *latent, device=device, generator=gen).bfloat16() for _ in range(4)]
    stream = StreamingDecoder(model, frame_chunk=frame_chunk)
    sync(device)
    t0 = time.perf_counter()
    first = stream.decode(latents[0])
    sync(device)
    cold_s = time.perf_counter() - t0
    warm = time_ms(lambda: stream.decode(latents[1]), 2, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    frames: list[int] = []
    times = time_ms(lambda: frames.append(stream.decode(latents[len(frames) % 4]).shape[1]), blocks, device)
    return {
        **summary(times),
        "cold_first_block_s": cold_s,
        "warmup_ms": warm,
        "frames_first_block": first.shape[1],
        "frames_per_block": sorted(set(frames)),
        "peak_gib": peak_gib(device),
    }


def agreement(vae: WanVAEDecoder, latent: tuple[int, int, int], other: WanVAEDecoder | None = None) -> dict:
    """bf16, in uint8 levels: one decoder pass per block vs one pass per latent (the official loop), or
    vs `other` decoding the same latents block by block."""
    device = next(vae.parameters()).device
    z = torch.randn(1, 6, *latent, device=device, generator=torch.Generator(device=device).manual_seed(1))
    z = z.bfloat16()
    a = StreamingDecoder(vae)
    b = StreamingDecoder(other) if other is not None else StreamingDecoder(vae, frame_chunk=1)
    fa = torch.cat([a.decode(z[:, :3]), a.decode(z[:, 3:])], 1).int()
    fb = torch.cat([b.decode(z[:, :3]), b.decode(z[:, 3:])], 1).int()
    diff = (fa - fb).abs()
    return {"max_levels": int(diff.max()), "mean_levels": round(float(diff.float().mean()), 4), "frames": fa.shape[1]}


class FixedTokens:
    """Stands in for the tokenizer: `length` random real tokens (EOS last), padded to `text_len`."""

    def __init__(self, length: int, vocab: int, text_len: int = 512):
        self.length, self.vocab, self.text_len = length, vocab, text_len

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(prompts)
        ids = torch.zeros(n, self.text_len, dtype=torch.long)
        ids[:, : self.length] = torch.randint(3, self.vocab, (n, self.length))
        ids[:, self.length - 1] = 1
        mask = (torch.arange(self.text_len) < self.length).long().expand(n, -1)
        return ids, mask


def random_t5(cfg: T5Config, device: torch.device) -> UMT5Encoder:
    """Full-size encoder straight on the device in bf16 (no fp32 copy): N(0, 0.02) weights, unit norms."""
    with torch.device("meta"):
        model = UMT5Encoder(cfg).to(torch.bfloat16)
    model = model.to_empty(device=device).eval().requires_grad_(False)
    for name, p in model.named_parameters():
        p.fill_(1.0) if "norm" in name else p.normal_(0.0, 0.02)
    return model


def bench_t5(cfg: T5Config, device: torch.device, iters: int, lengths: tuple[int, ...]) -> dict:
    model = random_t5(cfg, device)
    out: dict = {"params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3)}
    for length in lengths:
        for trim in (True, False) if length < 512 else (True,):
            enc = TextEncoder(model, FixedTokens(length, cfg.vocab_size), trim_padding=trim)  # type: ignore[arg-type]
            time_ms(lambda enc=enc: enc.encode(["x"]), 3, device)
            times = time_ms(lambda enc=enc: enc.encode(["x"]), iters, device)
            ctx = enc.encode(["x"])
            key = f"tokens_{length}" + ("" if trim else "_untrimmed")
            out[key] = {**summary(times), "finite": bool(ctx.isfinite().all()), "shape": list(ctx.shape)}
    out["peak_gib"] = peak_gib(device)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae-blocks", type=int, default=8)
    parser.add_argument("--tae-blocks", type=int, default=30)
    parser.add_argument("--t5-iters", type=int, default=10)
    parser.add_argument("--wan-only", action="store_true", help="only the Wan VAE (plain and optimised layouts)")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: check the script, not the speed")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.smoke:
        device, latent = torch.device("cpu"), (16, 4, 6)
        vae_cfg, tae_cfg, t5_cfg = VAEConfig.tiny(), TAEConfig.tiny(), T5Config.tiny()
    else:
        device, latent = torch.device("cuda"), (16, 60, 104)  # 832x480 pixels
        vae_cfg, tae_cfg, t5_cfg = VAEConfig.wan2_1(), TAEConfig.taew2_1(), T5Config.umt5_xxl()
        torch.backends.cudnn.benchmark = True
    result: dict = {"torch": torch.__version__, "device": str(device), "latent": latent}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name()

    vae = WanVAEDecoder(vae_cfg).to(device, torch.bfloat16).eval()  # default (Kaiming) init, unit norm gains
    result["wan_block_pass"] = bench_decoder(vae, latent, args.vae_blocks)
    result["wan_latent_pass"] = bench_decoder(vae, latent, max(3, args.vae_blocks // 2), frame_chunk=1)
    result["wan_agreement_bf16"] = agreement(vae, latent)
    plain = copy.deepcopy(vae)
    vae.optimize(channels_last=True)
    result["wan_channels_last"] = bench_decoder(vae, latent, args.vae_blocks)
    if device.type == "cuda":
        compile_vae(vae)
    result["wan_channels_last_compiled"] = bench_decoder(vae, latent, args.vae_blocks)
    result["wan_channels_last_compiled_latent_pass"] = bench_decoder(vae, latent, args.vae_blocks, frame_chunk=1)
    result["wan_optimised_vs_plain_bf16"] = agreement(vae, latent, plain)
    del vae, plain
    if not args.wan_only:
        tae = TAEDecoder(tae_cfg).to(device, torch.bfloat16).eval()
        result["tae"] = bench_decoder(tae, latent, args.tae_blocks)
        del tae
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result["t5"] = bench_t5(t5_cfg, device, args.t5_iters, (120, 512))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    print(f"\n== summary: {result.get('gpu', device)}, torch {torch.__version__}, bf16, median ms ==")
    for key, r in result.items():
        if not (isinstance(r, dict) and "median_ms" in r):  # the decoders only
            continue
        print(
            f"{key:16s} {r['median_ms']:8.1f} ms/block (min {r['min_ms']:.1f}, n={r['n']}) "
            f"frames {r['frames_first_block']} then {r['frames_per_block']}, cold first block "
            f"{r['cold_first_block_s']:.1f} s, peak {r['peak_gib']:.1f} GiB"
        )
    print(f"wan block-pass vs latent-pass (bf16, uint8 levels): {result['wan_agreement_bf16']}")
    print(f"wan optimised vs plain (bf16, uint8 levels): {result['wan_optimised_vs_plain_bf16']}")
    if "t5" not in result:
        return
    for key, r in result["t5"].items():
        if isinstance(r, dict):
            print(f"t5 {key:20s} {r['median_ms']:8.1f} ms/prompt (min {r['min_ms']:.1f}, n={r['n']})")
    print(f"t5 params {result['t5']['params_b']} B, peak {result['t5']['peak_gib']:.1f} GiB")


if __name__ == "__main__":
    main()
