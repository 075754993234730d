"""Single operations of a LongLive block against the alternatives one could swap in (GPU, bf16, full size).

    python benchmarks/op_alternatives.py

Median ms of CUDA events (after warm-up) for: one DiT layer's FFN with GELU as its own kernel or as the
cuBLASLt epilogue of the first GEMM; the self-attention of a steady block through each SDPA backend; the
Wan VAE's head conv (96 -> 3 channels at 480x832) with its output channels padded or not; its nearest 2x
upsampling against a plain copy of the same bytes; a DiT block's compiled attention inputs with RoPE in
float64 or float32; a 1536 x 1536 projection through cuBLAS, as a third of one q/k/v GEMM, and max-autotuned.
To decide which rewrite could pay before writing it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the sibling benchmarks

from benchmarks import io_bench  # noqa: E402

DEVICE, DTYPE = torch.device("cuda"), torch.bfloat16


def median_ms(fn: Callable[[], object]) -> float:
    return io_bench.median_ms(fn, iters=20, warmup=3)


def randn(*shape: int, scale: float = 1.0, memory_format=torch.contiguous_format) -> torch.Tensor:
    return (torch.randn(shape, device=DEVICE, dtype=DTYPE) * scale).contiguous(memory_format=memory_format)


def ffn() -> None:
    """A DiT layer's FFN over a steady block's 4680 tokens: 1536 -> 8960 (GELU, tanh) -> 1536."""
    x, w1, b1 = randn(4680, 1536), randn(8960, 1536, scale=0.02), randn(8960, scale=0.02)
    w2, b2 = randn(1536, 8960, scale=0.02), randn(1536, scale=0.02)
    plain = lambda: F.linear(F.gelu(F.linear(x, w1, b1), approximate="tanh"), w2, b2)  # noqa: E731
    epilogue = lambda: F.linear(torch._addmm_activation(b1, x, w1.t(), use_gelu=True), w2, b2)  # noqa: E731
    hidden = F.linear(x, w1, b1)
    gelu = median_ms(lambda: F.gelu(hidden, approximate="tanh"))
    diff = (plain() - epilogue()).float().abs()
    print(f"FFN: GELU as its own kernel {median_ms(plain):.3f} ms (GELU alone {gelu:.3f}), as the GEMM's epilogue "
          f"{median_ms(epilogue):.3f} ms; difference max {diff.max():.3g}, mean {diff.mean():.3g}")  # fmt: skip


def self_attention() -> None:
    """A steady block's self-attention in one layer: 4680 queries over 18720 keys, 12 heads of 128."""
    q, k, v = randn(1, 4680, 12, 128), randn(1, 18720, 12, 128), randn(1, 18720, 12, 128)
    call = lambda: F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # noqa: E731
    flops = 4 * 4680 * 18720 * 128 * 12
    backends = {"default": None, "cuDNN": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}  # fmt: skip
    for name, backend in backends.items():
        try:
            if backend is None:
                ms = median_ms(call)
            else:
                with sdpa_kernel(backend):
                    ms = median_ms(call)
            print(f"self-attention, {name}: {ms:.3f} ms ({flops / ms / 1e9:.0f} TFLOP/s)")
        except RuntimeError as exc:
            print(f"self-attention, {name}: not available ({str(exc).splitlines()[0][:80]})")
    qh, kh, vh = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    ms = median_ms(lambda: F.scaled_dot_product_attention(qh, kh, vh))
    print(f"self-attention, default, inputs contiguous as [B, H, L, D]: {ms:.3f} ms")


def vae_head_and_upsample() -> None:
    """The Wan VAE's head conv over 14 channels-last frames of 480x832, and its last nearest upsampling."""
    x = randn(1, 96, 14, 480, 832, memory_format=torch.channels_last_3d)
    for c_out in (3, 8, 16, 32):
        w = randn(c_out, 96, 3, 3, 3, scale=0.02, memory_format=torch.channels_last_3d)
        ms = median_ms(lambda x=x, w=w: F.conv3d(x, w, padding=(0, 1, 1)))
        print(f"VAE head conv 96 -> {c_out}: {ms:.3f} ms")
    del x
    frames = randn(12, 192, 240, 416, memory_format=torch.channels_last)
    up = lambda: F.interpolate(frames, scale_factor=2.0, mode="nearest")  # noqa: E731
    out = up()
    copy = torch.empty_like(out)
    gb = out.numel() * out.element_size() / 1e9
    print(f"VAE nearest 2x, 12 x 192 x 240x416 channels-last -> {gb:.2f} GB: {median_ms(up):.3f} ms; "
          f"a copy of those bytes {median_ms(lambda: copy.copy_(out)):.3f} ms")  # fmt: skip


def attention_inputs() -> None:
    """One full-size DiT block's compiled `attention_inputs` (modulated LayerNorm, q/k/v, q/k RMSNorm, RoPE)
    over a steady block's 4680 tokens, with RoPE in float64 (the official precision) or float32."""
    from longlive_rtc.model.compile import compile_methods
    from longlive_rtc.model.config import WanConfig
    from longlive_rtc.model.dit import CausalWanAttentionBlock
    from longlive_rtc.model.rope import RotaryEmbedding, rotation

    cfg = WanConfig()
    torch.manual_seed(0)
    block = compile_methods(CausalWanAttentionBlock(cfg).to(DEVICE, DTYPE), ("attention_inputs",))
    for linear in (block.self_attn.q, block.self_attn.k, block.self_attn.v):
        torch.nn.init.normal_(linear.weight, std=0.02)
    x, e0 = randn(1, 4680, cfg.dim), randn(1, 3, 6, cfg.dim, scale=0.1)
    h, w = cfg.latent_height // cfg.patch_size[1], cfg.latent_width // cfg.patch_size[2]
    timings, outputs = [], []
    for dtype in (torch.float64, torch.float32):
        turn = rotation(RotaryEmbedding(cfg.head_dim, cfg.rope_theta, dtype).freqs(range(9, 12), h, w, DEVICE))
        call = lambda r=turn: block.attention_inputs(x, e0, r, True, True)  # noqa: E731
        outputs.append(torch.cat([t.float().flatten() for t in call()]))
        timings.append(f"RoPE in {str(dtype).removeprefix('torch.')} {median_ms(call):.3f} ms")
    diff = (outputs[1] - outputs[0]).abs()
    print(f"DiT attention inputs, compiled: {', '.join(timings)} (difference max {diff.max():.3g}, "
          f"mean {diff.mean():.3g})")  # fmt: skip


def projections() -> None:
    """A 1536 x 1536 projection over a steady block's 4680 tokens (seven per layer: self-attention q, k, v, o,
    cross-attention q, o): cuBLAS, q/k/v as one 4608-wide GEMM, and Inductor's max-autotune (its Triton tiles
    against cuBLAS). 4680 rows in 192-row tiles by 1536 columns in 144-column ones are 275 tiles: 2.1 waves
    on 132 SMs, so the last of three runs near empty."""
    x = randn(4680, 1536)
    weight, bias = randn(1536, 1536, scale=0.02), randn(1536, scale=0.02)
    stacked, stacked_bias = randn(4608, 1536, scale=0.02), randn(4608, scale=0.02)
    tuned = torch.compile(F.linear, dynamic=False, mode="max-autotune-no-cudagraphs")
    flops = 2 * 4680 * 1536 * 1536
    timings = {
        "cuBLAS": median_ms(lambda: F.linear(x, weight, bias)),
        "one third of a 4608-wide GEMM": median_ms(lambda: F.linear(x, stacked, stacked_bias)) / 3,
        "max-autotune": median_ms(lambda: tuned(x, weight, bias)),
    }
    diff = (tuned(x, weight, bias) - F.linear(x, weight, bias)).float().abs().max()
    print("projection 4680 x 1536 -> 1536: " + ", ".join(f"{name} {ms:.4f} ms ({flops / ms / 1e9:.0f} TFLOP/s)"
          for name, ms in timings.items()) + f" (max-autotune's max difference {diff:.3g})")  # fmt: skip


def main() -> None:
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    print(f"== {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, median ms ==")
    ffn()
    self_attention()
    vae_head_and_upsample()
    attention_inputs()
    projections()


if __name__ == "__main__":
    main()
