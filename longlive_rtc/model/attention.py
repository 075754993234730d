"""Attention dispatch: FlashAttention 3/2 when installed and supported, else torch SDPA, math on CPU.

All functions take and return `[B, L, heads, head_dim]` tensors, no mask, softmax scale 1/sqrt(head_dim).
SDPA is called without forcing a backend: on an H100 it picks cuDNN, which is much faster than its
FLASH backend for these shapes.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

try:  # FlashAttention 3 (Hopper build)
    import flash_attn_interface as _fa3
except ImportError:  # pragma: no cover - depends on the machine
    _fa3 = None
try:  # FlashAttention 2
    import flash_attn as _fa2
except ImportError:  # pragma: no cover - depends on the machine
    _fa2 = None

_HALF = (torch.float16, torch.bfloat16)


@cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def backend_for(q: Tensor) -> str:
    """Name of the kernel `attention` uses for this query: 'fa3', 'fa2', 'sdpa' or 'math'."""
    if q.device.type == "cpu":
        return "math"
    if torch.compiler.is_compiling():  # inside a compiled region (cross-attention): Inductor lowers SDPA
        return "sdpa"
    if q.device.type == "cuda" and q.dtype in _HALF:
        major, _ = _capability(q.device.index or 0)
        if _fa3 is not None and major == 9:  # the FA3 build exists for Hopper only
            return "fa3"
        if _fa2 is not None and major >= 8:
            return "fa2"
    return "sdpa"


def math_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Reference attention, softmax in float32 (or the input precision if wider)."""
    acc = torch.promote_types(q.dtype, torch.float32)
    qh, kh, vh = (t.transpose(1, 2).to(acc) for t in (q, k, v))
    scores = (qh @ kh.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    out = scores.softmax(dim=-1) @ vh
    return out.transpose(1, 2).to(q.dtype)


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Full (unmasked) attention of `q [B, Lq, H, D]` over `k, v [B, Lk, H, D]`."""
    backend = backend_for(q)
    if backend == "fa3":
        out = _fa3.flash_attn_func(q, k, v)
        return out[0] if isinstance(out, tuple) else out
    if backend == "fa2":
        return _fa2.flash_attn_func(q, k, v)
    if backend == "math":
        return math_attention(q, k, v)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)
