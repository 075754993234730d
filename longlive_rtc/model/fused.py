"""The elementwise chains of a DiT block as pure functions, optionally compiled into fused kernels.

Eager, each chain is a handful of memory-bound kernels (dtype casts, norms, RoPE, modulation, gates)
plus Python dispatch for each of them; in a steady block that costs about as much as all the matmuls.
``enable()`` swaps in ``torch.compile``d versions with fixed shapes of the two halves of a block (the
same math; Inductor keeps intermediates in fp32 registers, so results move within bf16 rounding).
Callers look the functions up here at call time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


def attention_inputs(
    block: nn.Module, x: Tensor, e0: Tensor, rotation: tuple[Tensor, Tensor], rotate_keys: bool, need_q: bool
) -> tuple[Tensor | None, Tensor, Tensor]:
    """A block's self-attention inputs: modulated LayerNorm, q/k/v projections, q/k RMSNorm and RoPE.

    Returns `q` (None unless `need_q`), `k` (rotated when `rotate_keys`) and `v`, `[B, L, heads, head_dim]`.
    """
    frames = e0.shape[1]
    shift, scale = (block.modulation.unsqueeze(1) + e0).chunk(6, dim=2)[:2]
    h = norm_modulate(x, shift, scale, frames, block.norm1.eps)
    attn = block.self_attn
    k = rms_norm(attn.k(h), attn.norm_k.weight, attn.norm_k.eps).unflatten(-1, (attn.num_heads, -1))
    if rotate_keys:
        k = rotate(k, *rotation)
    v = attn.v(h).unflatten(-1, (attn.num_heads, -1))
    if not need_q:
        return None, k, v
    q = rms_norm(attn.q(h), attn.norm_q.weight, attn.norm_q.eps).unflatten(-1, (attn.num_heads, -1))
    return rotate(q, *rotation), k, v


def block_output(
    block: nn.Module, x: Tensor, e0: Tensor, attended: Tensor, context_kv: tuple[Tensor, Tensor]
) -> Tensor:
    """The rest of a block after self-attention: output projection and gate, cross-attention, modulated FFN."""
    frames = e0.shape[1]
    _, _, gate_sa, shift_ffn, scale_ffn, gate_ffn = (block.modulation.unsqueeze(1) + e0).chunk(6, dim=2)
    x = gated_residual(x, block.self_attn.o(attended.flatten(2)), gate_sa, frames)
    x = x + block.cross_attn(block.norm3(x), context_kv)
    y = block.ffn(norm_modulate(x, shift_ffn, scale_ffn, frames, block.norm2.eps))
    return gated_residual(x, y, gate_ffn, frames)


#: What `enable()` compiles: the two halves of a block around the cache write and self-attention (which
#: stay eager: the cache is indexed by Python ints, and SDPA picks cuDNN there), and RoPE of gathered keys.
COMPILED = ("attention_inputs", "block_output", "rotate")
_EAGER = {name: globals()[name] for name in COMPILED}


#: Compiled variants per function and device: query lengths 3/6/9/12 frames x cache-only or not x RoPE mode
#: (Dynamo's guards include the device, so ``serve --devices`` compiles every variant once per GPU).
RECOMPILE_LIMIT = 64


def enable(compiled: bool = True) -> None:
    """Use compiled (fused, fixed-shape) versions of the functions in :data:`COMPILED`, or eager ones again."""
    import torch._dynamo.config as dynamo_config

    limit = RECOMPILE_LIMIT * max(1, torch.cuda.device_count() if torch.cuda.is_available() else 1)
    for name in ("recompile_limit", "cache_size_limit"):  # one is an alias of the other in newer torch
        if getattr(dynamo_config, name, limit) < limit:
            setattr(dynamo_config, name, limit)
    for name, fn in _EAGER.items():
        globals()[name] = torch.compile(fn, dynamic=False) if compiled else fn
