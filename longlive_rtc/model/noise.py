"""Noise sources for the streaming pipeline.

A source is asked, for every block in order, once for the block's initial noise and then once per
re-noising step (3 times with 4 denoising steps). Replace it to feed any fixed sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor


class NoiseSource(Protocol):
    def reset(self, seeds: Sequence[int], device: torch.device) -> None:
        """Start a stream for `len(seeds)` samples on `device`."""

    def block_noise(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """Initial noise `[B, F, C, H, W]` of the next block."""

    def step_noise(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """Fresh noise `[B, F, C, H, W]` for the next re-noising step."""


class SeededNoise:
    """Default: one seeded `torch.Generator` per sample, drawing block by block.

    Each sample's values depend only on its own seed, so a batch equals separate runs.
    """

    def __init__(self) -> None:
        self._generators: list[torch.Generator] = []
        self._device = torch.device("cpu")

    def reset(self, seeds: Sequence[int], device: torch.device) -> None:
        self._device = torch.device(device)
        self._generators = [torch.Generator(device=self._device).manual_seed(int(s)) for s in seeds]

    def _draw(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        if len(self._generators) != shape[0]:
            raise RuntimeError("noise source not reset for this batch size")
        return torch.stack(
            [torch.randn(shape[1:], generator=g, dtype=dtype, device=self._device) for g in self._generators]
        )

    block_noise = _draw
    step_noise = _draw


class OfficialNoise:
    """The draw order of the official v1.0 scripts, for parity runs.

    One generator seeded with the first seed; the whole noise tensor `[B, num_frames, C, H, W]` is
    drawn first, then each re-noising draws `randn_like` of `[B*F, C, H, W]`. Seeded the same way
    (e.g. `set_seed(seed)` there, the same device and dtype here) it yields the same values.
    """

    def __init__(self, num_output_frames: int) -> None:
        self.num_output_frames = num_output_frames
        self._generator: torch.Generator | None = None
        self._device = torch.device("cpu")
        self._full: Tensor | None = None
        self._next_frame = 0

    def reset(self, seeds: Sequence[int], device: torch.device) -> None:
        self._device = torch.device(device)
        self._generator = torch.Generator(device=self._device).manual_seed(int(seeds[0]))
        self._full, self._next_frame = None, 0

    def block_noise(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        b, f, *rest = shape
        if self._full is None:
            full = (b, self.num_output_frames, *rest)
            self._full = torch.randn(full, generator=self._generator, dtype=dtype, device=self._device)
        if self._next_frame + f > self.num_output_frames:
            raise RuntimeError("OfficialNoise exhausted: num_output_frames reached")
        out = self._full[:, self._next_frame : self._next_frame + f]
        self._next_frame += f
        return out

    def step_noise(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        b, f, *rest = shape
        flat = torch.randn((b * f, *rest), generator=self._generator, dtype=dtype, device=self._device)
        return flat.unflatten(0, (b, f))
