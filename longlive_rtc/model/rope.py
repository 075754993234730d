"""3D rotary position embedding of Wan: interleaved channel pairs, split temporal/height/width.

Each head's `d` channels form `d/2` complex numbers from adjacent pairs (2j real, 2j+1 imaginary).
The first `d/2 - 2*(d/2 // 3)` pairs rotate with the latent-frame position, the next `d/2 // 3`
with the token row, the last `d/2 // 3` with the token column (22/21/21 for d = 128). Angles are
`pos * theta^(-2i/n)` in float64, as `rope_params` of Wan, but computed on demand for any position,
so there is no 1024-frame table limit.
"""

from __future__ import annotations

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
    angles = torch.outer(positions.to(torch.float64), inv_freq)
    return torch.polar(torch.ones_like(angles), angles)


class RotaryEmbedding:
    """Builds per-token complex rotations for a (frames, h, w) token grid; not an nn.Module (no state dict)."""

    def __init__(self, head_dim: int, theta: float = 10000.0, dtype: torch.dtype = torch.float64) -> None:
        t, h, w = rope_split(head_dim)
        self.inv_t = _inv_freq(t, theta)
        self.inv_h = _inv_freq(h, theta)
        self.inv_w = _inv_freq(w, theta)
        self.dtype = dtype  # float64 (official) or float32
        self._spatial: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}

    def _spatial_freqs(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (h, w, str(device))
        if key not in self._spatial:
            fh = _polar(torch.arange(h), self.inv_h).to(device)
            fw = _polar(torch.arange(w), self.inv_w).to(device)
            self._spatial[key] = fh, fw
        return self._spatial[key]

    def freqs(self, frame_positions: Tensor | list[int], h: int, w: int, device: torch.device) -> Tensor:
        """Complex rotations `[F*h*w, 1, head_dim/2]` for tokens in (frame, row, column) order."""
        pos = torch.as_tensor(frame_positions, dtype=torch.float64)
        f = pos.numel()
        ft = _polar(pos, self.inv_t).to(device)
        fh, fw = self._spatial_freqs(h, w, device)
        grid = torch.cat(
            [
                ft.view(f, 1, 1, -1).expand(f, h, w, -1),
                fh.view(1, h, 1, -1).expand(f, h, w, -1),
                fw.view(1, 1, w, -1).expand(f, h, w, -1),
            ],
            dim=-1,
        ).reshape(f * h * w, 1, -1)
        return grid.to(torch.complex128 if self.dtype == torch.float64 else torch.complex64)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate `x [B, L, heads, head_dim]` by `freqs [L, 1, head_dim/2]` (complex); result in x's dtype."""
    real = torch.float64 if freqs.dtype == torch.complex128 else torch.float32
    b, seq, n, d = x.shape
    xc = torch.view_as_complex(x.to(real).reshape(b, seq, n, d // 2, 2))
    return torch.view_as_real(xc * freqs).flatten(3).to(x.dtype)
