"""The elementwise chains of a DiT block as pure functions, optionally compiled into fused kernels.

Eager, each chain is a handful of memory-bound kernels (dtype casts, norms, RoPE, modulation, gates);
in a steady block they cost about as much as all the matmuls together. ``enable()`` swaps in
``torch.compile``d versions with fixed shapes (the same math; Inductor keeps intermediates in fp32
registers, so results move within bf16 rounding). Callers look the functions up here at call time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """`x * rsqrt(mean(x^2) + eps)` in at least float32, cast back, times `weight`."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)).type_as(x) * weight


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE on interleaved pairs of `x [B, L, heads, head_dim]` in the precision of `cos`/`sin` `[L, 1, D/2]`.

    The real form of the complex product `(a + ib)(cos + i sin)`.
    """
    pairs = x.to(cos.dtype).unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(3).to(x.dtype)


def norm_modulate(x: Tensor, shift: Tensor, scale: Tensor, frames: int, eps: float) -> Tensor:
    """LayerNorm (no affine) then `* (1 + scale) + shift`, with per-frame `shift, scale [B, F, 1, C]`."""
    h = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return (h.unflatten(1, (frames, -1)) * (1 + scale) + shift).flatten(1, 2)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor, frames: int) -> Tensor:
    """`x + y * gate` with a per-frame `gate [B, F, 1, C]`."""
    return x + (y.unflatten(1, (frames, -1)) * gate).flatten(1, 2)


_EAGER = {"rms_norm": rms_norm, "rotate": rotate, "norm_modulate": norm_modulate, "gated_residual": gated_residual}


def enable(compiled: bool = True) -> None:
    """Use compiled (fused) versions of the functions above, or the eager ones again."""
    for name, fn in _EAGER.items():
        globals()[name] = torch.compile(fn, dynamic=False) if compiled else fn


def enabled() -> bool:
    return globals()["rms_norm"] is not _EAGER["rms_norm"]
