"""Interpolation of prompt embeddings (tensors or arrays ``[..., D]``) for blend transitions.

``linear``: ``(1 - w) a + w b``. ``slerp``: per embedding vector (the last axis), the direction moves
along the great circle from ``a``'s to ``b``'s and the magnitude linearly,
``((1 - w)|a| + w|b|) (sin((1 - w)θ) â + sin(wθ) b̂) / sin θ``; vectors that are zero (padding) or
(anti)parallel fall back to linear. Computed in float32 (float64 stays float64), returned in ``a``'s dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .base import LINEAR, SLERP

_EPS = 1e-6
_MIN_SIN = 1e-4


def mix_embeddings(a: Any, b: Any, weight: float, curve: str = LINEAR) -> Any:
    """``a`` and ``b`` mixed at ``weight`` (0: ``a`` itself, 1: ``b`` itself) along ``curve``."""
    if curve not in (LINEAR, SLERP):
        raise ValueError(f"unknown blend curve {curve!r}")
    if weight <= 0.0:
        return a
    if weight >= 1.0:
        return b
    if isinstance(a, np.ndarray):
        return mix_embeddings(torch.from_numpy(a), torch.from_numpy(np.asarray(b)), weight, curve).numpy()
    if a.shape != b.shape:
        raise ValueError(f"cannot blend embeddings of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    work = torch.float64 if a.dtype == torch.float64 else torch.float32
    x, y = a.to(work), b.to(device=a.device, dtype=work)
    linear = (1.0 - weight) * x + weight * y
    if curve == LINEAR:
        return linear.to(a.dtype)
    nx, ny = x.norm(dim=-1, keepdim=True), y.norm(dim=-1, keepdim=True)
    ux, uy = x / nx.clamp_min(_EPS), y / ny.clamp_min(_EPS)
    theta = (ux * uy).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0).acos()
    sin = theta.sin()
    direction = (((1.0 - weight) * theta).sin() * ux + (weight * theta).sin() * uy) / sin.clamp_min(_MIN_SIN)
    spherical = ((1.0 - weight) * nx + weight * ny) * direction
    usable = (nx > _EPS) & (ny > _EPS) & (sin > _MIN_SIN)
    return torch.where(usable, spherical, linear).to(a.dtype)
