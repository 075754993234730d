"""Fast decoder: a TAEHV-style tiny autoencoder decoder for Wan 2.1 latents (`taew2_1` weights).

A stack of 2D convolutions applied to every frame, where "memory blocks" also see the same block's input
of the previous frame (zeros at stream start) and two `TGrow` layers turn each frame into two (4x in time).
It decodes the diffusion latents directly (no de-normalisation) to RGB in [0, 1]. The first 3 output
frames of a stream are dropped so frame counts match the Wan VAE: latent 0 -> 1 frame, later latents -> 4.
Parameter names follow `taew2_1.pth` (`decoder.<index>....`); its encoder keys are skipped on load.
Architecture as publicly described in madebyollin/taehv; this is an independent implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_state_file, load_strict, split_known

ENCODER_PREFIXES = ("encoder.",)


@dataclass(frozen=True)
class TAEConfig:
    latent_channels: int = 16
    widths: tuple[int, int, int, int] = (256, 128, 64, 64)
    time_upscale: tuple[bool, bool, bool] = (False, True, True)

    @classmethod
    def taew2_1(cls) -> TAEConfig:
        return cls()

    @classmethod
    def tiny(cls) -> TAEConfig:
        return cls(widths=(8, 8, 4, 4))


@dataclass
class TAEStreamState:
    """Per-stream state: each memory block's last input frame, and how many leading frames remain to drop."""

    past: dict[nn.Module, torch.Tensor] = field(default_factory=dict)
    to_trim: int = 0


def conv3x3(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Residual conv block whose input is concatenated with the previous frame's input to this block."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Sequential(
            conv3x3(2 * c_in, c_out), nn.ReLU(), conv3x3(c_out, c_out), nn.ReLU(), conv3x3(c_out, c_out)
        )
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, past], dim=1)) + self.skip(x))


class TGrow(nn.Module):
    """1x1 conv to `stride` times the channels, read as `stride` consecutive frames."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return self.conv(x).reshape(nt * self.stride, c, h, w)


class TAEDecoder(nn.Module):
    """Latents [B, F, 16, h, w] -> RGB in [0, 1] [B, T, 3, 8h, 8w], streaming through a TAEStreamState."""

    def __init__(self, cfg: TAEConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TAEConfig.taew2_1()
        w = cfg.widths
        layers: list[nn.Module] = [Clamp(), conv3x3(cfg.latent_channels, w[0]), nn.ReLU()]
        for stage in range(3):
            c = w[stage]
            layers += [MemBlock(c, c), MemBlock(c, c), MemBlock(c, c), nn.Upsample(scale_factor=2)]
            layers += [TGrow(c, 2 if cfg.time_upscale[stage] else 1), conv3x3(c, w[stage + 1], bias=False)]
        layers += [nn.ReLU(), conv3x3(w[3], 3)]
        self.decoder = nn.Sequential(*layers)
        self.time_factor = 2 ** sum(cfg.time_upscale)

    def new_state(self) -> TAEStreamState:
        return TAEStreamState(to_trim=self.time_factor - 1)

    def forward(self, latents: torch.Tensor, state: TAEStreamState) -> torch.Tensor:
        b = latents.shape[0]
        x = latents.flatten(0, 1)  # frames of one sample are consecutive: [(B F), C, h, w]
        for layer in self.decoder:
            if isinstance(layer, MemBlock):
                frames = x.unflatten(0, (b, -1))
                past = state.past.get(layer)
                past = torch.zeros_like(frames[:, :1]) if past is None else past
                state.past[layer] = frames[:, -1:].clone()
                x = layer(x, torch.cat([past, frames[:, :-1]], dim=1).flatten(0, 1))
            else:
                x = layer(x)
        video = x.unflatten(0, (b, -1)).float().clamp_(0.0, 1.0)
        drop = min(state.to_trim, video.shape[1])
        state.to_trim -= drop
        return video[:, drop:]

    def fit_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept files whose TGrow convs emit more frames than configured: keep the last frames' channels."""
        state = dict(state)
        for i, layer in enumerate(self.decoder):
            key = f"decoder.{i}.conv.weight"
            if isinstance(layer, TGrow) and key in state:
                want = layer.conv.weight.shape[0]
                have = state[key].shape[0]
                if have > want and have % want == 0:
                    state[key] = state[key][-want:]
        return state


def load_tae(
    path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cfg: TAEConfig | None = None,
) -> TAEDecoder:
    """Build the TAE decoder and load `taew2_1.pth` / `.safetensors` strictly (encoder keys skipped)."""
    model = TAEDecoder(cfg)
    state, _encoder_keys = split_known(load_state_file(path), ENCODER_PREFIXES)
    load_strict(model, model.fit_checkpoint(state), f"TAE decoder {path}")
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
