"""3D rotary position embedding of Wan: interleaved channel pairs, split temporal/height/width.

Each head's `d` channels form `d/2` complex numbers from adjacent pairs (2j real, 2j+1 imaginary).
The first `d/2 - 2*(d/2 // 3)` pairs rotate with the latent-frame position, the next `d/2 // 3`
with the token row, the last `d/2 // 3` with the token column (22/21/21 for d = 128). Angles are
`pos * theta^(-2i/n)` in float64, as `rope_params` of Wan, but computed on demand for any position,
so there is no 1024-frame table limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per axis (temporal, height, width); (22, 21, 21) for head_dim 128."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


def _inv_freq(pairs: int, theta: float) -> Tensor:
    """`1 / theta^(2i / (2*pairs))` for i < pairs, float64 (Wan `rope_params` with dim = 2*pairs)."""
    dim = 2 * pairs
    return 1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64).div(dim))


def _polar(positions: Tensor, inv_freq: Tensor) -> Tensor:
    angles = torch.outer(positions.to(torch.float64), inv_freq.to(positions.device))
    return torch.polar(torch.ones_like(angles), angles)


def _runs(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Split positions into maximal runs of consecutive integers `[a, b)`."""
    runs: list[tuple[int, int]] = []
    for p in positions:
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


class RotaryEmbedding:
    """Builds per-token complex rotations for a (frames, h, w) token grid; not an nn.Module (no state dict).

    Positions are built on the target device from integer ranges, so a call causes no host-device copy.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float64) -> None:
        self.split = rope_split(head_dim)
        self.theta = theta
        self.dtype = dtype  # float64 (official) or float32
        self._tables: dict[tuple[str, int, int], tuple[Tensor, Tensor, Tensor]] = {}

    def _table(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """Temporal inverse frequencies and the row/column rotations, cached per device and grid."""
        key = (str(device), h, w)
        if key not in self._tables:
            t, hp, wp = self.split
            inv_t = _inv_freq(t, self.theta).to(device)
            fh = _polar(torch.arange(h), _inv_freq(hp, self.theta)).to(device)
            fw = _polar(torch.arange(w), _inv_freq(wp, self.theta)).to(device)
            self._tables[key] = inv_t, fh, fw
        return self._tables[key]

    def freqs(self, frame_positions: Sequence[int], h: int, w: int, device: torch.device) -> Tensor:
        """Complex rotations `[F*h*w, 1, head_dim/2]` for tokens in (frame, row, column) order."""
        inv_t, fh, fw = self._table(h, w, device)
        pos = torch.cat([torch.arange(a, b, dtype=torch.float64, device=device) for a, b in _runs(frame_positions)])
        f = pos.numel()
        ft = _polar(pos, inv_t)
        grid = torch.cat(
            [
                ft.view(f, 1, 1, -1).expand(f, h, w, -1),
                fh.view(1, h, 1, -1).expand(f, h, w, -1),
                fw.view(1, 1, w, -1).expand(f, h, w, -1),
            ],
            dim=-1,
        ).reshape(f * h * w, 1, -1)
        return grid.to(torch.complex128 if self.dtype == torch.float64 else torch.complex64)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE on interleaved pairs of `x [B, L, heads, head_dim]` in the precision of `cos`/`sin` `[L, 1, D/2]`.

    The real form of the complex product `(a + ib)(cos + i sin)`; result in x's dtype.
    """
    pairs = x.to(cos.dtype).unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(3).to(x.dtype)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate `x [B, L, heads, head_dim]` by `freqs [L, 1, head_dim/2]` (complex); result in x's dtype."""
    return rotate(x, *rotation(freqs))


def rotation(freqs: Tensor) -> tuple[Tensor, Tensor]:
    """Complex rotations `[L, 1, D/2]` as their real `(cos, sin)` parts, for `rotate`."""
    parts = torch.view_as_real(freqs.resolve_conj())
    return parts[..., 0], parts[..., 1]
