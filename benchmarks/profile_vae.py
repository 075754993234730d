"""Where a steady Wan VAE block spends its GPU time: per decoder layer, then the top CUDA kernels.

    python benchmarks/profile_vae.py [--plain] [--rows 30]     (CUDA, full size, bf16, 832x480)
    python benchmarks/profile_vae.py --smoke                   (CPU, tiny shapes: checks the script only)

The decoder as the LongLive generator runs it (channels-last, norm + SiLU + causal padding compiled; `--plain`:
neither), default init, blocks of 3 random latents. After 3 warm-up blocks it reports the median ms per
block, each top-level layer's share (the time from the end of the layer before it to its own end, so
the head's norm counts with the head), and a torch.profiler table of one block.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the sibling benchmarks

from benchmarks.io_bench import sync  # noqa: E402
from longlive_rtc.model.compile import compile_vae  # noqa: E402
from longlive_rtc.model.decode import StreamingDecoder  # noqa: E402
from longlive_rtc.model.vae import VAEConfig, WanVAEDecoder  # noqa: E402
from longlive_rtc.timing import Span, device_ms  # noqa: E402


def top_layers(vae: WanVAEDecoder) -> list[tuple[str, nn.Module]]:
    """The decoder's layers in the order a block runs them (the head, last, timed by the decoder's end)."""
    dec = vae.decoder
    layers: list[tuple[str, nn.Module]] = [("conv2", vae.conv2), ("decoder.conv1", dec.conv1)]
    layers += [(f"middle.{i} {type(m).__name__}", m) for i, m in enumerate(dec.middle)]
    layers += [(f"upsamples.{i} {type(m).__name__}", m) for i, m in enumerate(dec.upsamples)]
    return [*layers, ("head (norm, SiLU, conv)", dec)]


def layer_ms(stream: StreamingDecoder, latents: torch.Tensor, blocks: int, device: torch.device) -> dict[str, float]:
    """Median ms per layer over `blocks` steady blocks, each span from the previous layer's end to its own."""
    layers = top_layers(stream.model)
    times: dict[str, list[float]] = {name: [] for name, _ in layers}
    spans: list[Span] = []

    def ended(index: int) -> None:
        spans[index].stop()
        if index + 1 < len(layers):
            spans[index + 1].start()

    hooks = [m.register_forward_hook(lambda *_, i=i: ended(i)) for i, (_, m) in enumerate(layers)]
    try:
        for _ in range(blocks):
            spans[:] = [Span(device) for _ in layers]
            spans[0].start()
            stream.decode(latents)
            for (name, _), span in zip(layers, spans, strict=True):
                times[name].append(span.ms)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", action="store_true", help="the plain decoder: contiguous layout, eager")
    parser.add_argument("--blocks", type=int, default=8, help="steady blocks timed")
    parser.add_argument("--rows", type=int, default=30, help="kernels in the profiler table")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: check the script, not the speed")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.smoke:
        device, cfg, latent = torch.device("cpu"), VAEConfig.tiny(), (16, 4, 6)
    else:
        device, cfg, latent = torch.device("cuda"), VAEConfig.wan2_1(), (16, 60, 104)
        torch.backends.cudnn.benchmark = True
    vae = WanVAEDecoder(cfg).to(device, torch.bfloat16).eval()
    if not args.plain:
        vae.optimize(channels_last=True)
        if device.type == "cuda":
            compile_vae(vae)
    latents = torch.randn(1, 3, *latent, device=device, generator=torch.Generator(device).manual_seed(0))
    latents = latents.bfloat16()
    stream = StreamingDecoder(vae)
    for _ in range(4):  # the stream's first block, then steady ones (compiles and cuDNN autotuning)
        stream.decode(latents)
    sync(device)
    block = statistics.median(device_ms(lambda: stream.decode(latents), device) for _ in range(args.blocks))
    per_layer = layer_ms(stream, latents, args.blocks, device)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"== Wan VAE, {'plain' if args.plain else 'optimised'}, {gpu}, torch {torch.__version__}, bf16 ==")
    print(f"steady block (3 latents -> 12 frames at {8 * latent[2]}x{8 * latent[1]}): {block:.2f} ms (median)")
    for name, ms in per_layer.items():
        print(f"  {name:34s} {ms:7.2f} ms")
    print(f"  {'(layers in all)':34s} {sum(per_layer.values()):7.2f} ms; the rest is the output's conversion")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        stream.decode(latents)
        sync(device)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows, max_name_column_width=70))


if __name__ == "__main__":
    main()
