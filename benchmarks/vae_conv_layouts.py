"""The Wan VAE decoder's dominant causal 3x3x3 convolutions in three formulations (GPU, bf16).

    python benchmarks/vae_conv_layouts.py

For each shape of a steady 3-latent block (12 frames at 832x480 at the end): conv3d on NCDHW (the plain
layout), conv3d on NDHWC (channels-last, what `WanVAEDecoder.optimize` uses), and three conv2d calls on
NHWC frames summed over the temporal taps (a rewrite that would fold time into the batch). Median ms of
CUDA events and TFLOP/s, to decide whether a rewrite would pay.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the sibling benchmarks

from benchmarks.io_bench import median_ms  # noqa: E402

# (channels in, channels out, frames incl. the 2 causal ones, height, width): the decoder's stages
SHAPES = [(384, 384, 5, 60, 104), (384, 384, 8, 120, 208), (192, 192, 14, 240, 416), (96, 96, 14, 480, 832)]


def formulations(c_in: int, c_out: int, t: int, h: int, w: int) -> dict:
    """The three ways to compute one causal conv over `t` input frames (2 of them causal history)."""
    dev, dt = "cuda", torch.bfloat16
    x = torch.randn(1, c_in, t, h, w, device=dev, dtype=dt)
    weight = torch.randn(c_out, c_in, 3, 3, 3, device=dev, dtype=dt) * 0.02
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    w_cl = weight.contiguous(memory_format=torch.channels_last_3d)
    frames = x[0].transpose(0, 1).contiguous(memory_format=torch.channels_last)  # [T, C, H, W] NHWC
    taps = [weight[:, :, k].contiguous(memory_format=torch.channels_last) for k in range(3)]
    out_t = t - 2

    def conv2d_sum() -> torch.Tensor:
        y = F.conv2d(frames[0:out_t], taps[0], padding=1)
        y += F.conv2d(frames[1 : out_t + 1], taps[1], padding=1)
        y += F.conv2d(frames[2 : out_t + 2], taps[2], padding=1)
        return y

    return {
        "conv3d NCDHW": lambda: F.conv3d(x, weight, padding=(0, 1, 1)),
        "conv3d NDHWC": lambda: F.conv3d(x_cl, w_cl, padding=(0, 1, 1)),
        "3x conv2d NHWC": conv2d_sum,
    }


def main() -> None:
    torch.backends.cudnn.benchmark = True
    for c_in, c_out, t, h, w in SHAPES:
        tflop = 2 * c_in * c_out * 27 * (t - 2) * h * w / 1e12
        row = [f"{c_in}->{c_out} x{t - 2} @ {h}x{w} ({tflop:.2f} TFLOP):"]
        for name, fn in formulations(c_in, c_out, t, h, w).items():
            ms = median_ms(fn)
            row.append(f"{name} {ms:6.2f} ms ({tflop / ms * 1e3:4.0f} TFLOP/s)")
        print(" | ".join(row), flush=True)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
