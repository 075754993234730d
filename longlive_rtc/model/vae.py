"""Wan2.1 VAE decoder (causal 3D convolutions) with a streaming feature cache.

Latents [B, F, 16, h, w] (LongLive layout, normalised) -> RGB in [0, 1] [B, T, 3, 8h, 8w], T = 1 + 4 (F - 1)
over a whole stream. Every temporal convolution is causal: it sees its own input frames plus the last two
frames it saw before (zeros at the start of a stream). The two temporal upsamplers double every frame except
the very first of the stream, which is why latent 0 gives 1 frame and every later latent 4. Because all
state lives in a `VAEStreamCache`, decoding a stream block by block gives the same pixels as decoding it in
one call. Parameter names follow `Wan2.1_VAE.pth`; that file's encoder keys are skipped on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_state_file, load_strict, split_known

CACHE_FRAMES = 2  # frames of history kept per temporal convolution (kernel 3)
CHANNELS_LAST = torch.channels_last_3d
LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
               0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)  # fmt: skip
LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)  # fmt: skip
ENCODER_PREFIXES = ("encoder.", "conv1.")  # in Wan2.1_VAE.pth, not needed to decode


@dataclass(frozen=True)
class VAEConfig:
    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_upsample: tuple[bool, ...] = (True, True, False)

    @classmethod
    def wan2_1(cls) -> VAEConfig:
        return cls()

    @classmethod
    def tiny(cls) -> VAEConfig:
        """Same topology (4x time, 8x space), narrow channels: for CPU tests."""
        return cls(dim=4, num_res_blocks=1)


class VAEStreamCache:
    """Per-stream decoder state: the last input frames of each temporal conv, and which upsamplers started."""

    def __init__(self) -> None:
        self.tails: dict[nn.Module, torch.Tensor] = {}
        self.started: set[nn.Module] = set()


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """Channels-last (NDHWC) if `x` is laid out that way, else contiguous."""
    if x.dim() == 5 and x.is_contiguous(memory_format=CHANNELS_LAST) and not x.is_contiguous():
        return CHANNELS_LAST
    return torch.contiguous_format


class CausalConv3d(nn.Conv3d):
    """Conv3d, causal in time: prepends the previous 2p frames (zeros at stream start), pads space as usual."""

    def __init__(self, c_in: int, c_out: int, kernel: int | tuple[int, int, int], padding: int | tuple = 0):
        kernel = (kernel,) * 3 if isinstance(kernel, int) else kernel
        padding = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(c_in, c_out, kernel, padding=(0, padding[1], padding[2]))
        self.time_pad = 2 * padding[0]

    def forward(self, x: torch.Tensor, cache: VAEStreamCache | None = None) -> torch.Tensor:
        layout = memory_format_of(x)
        if self.time_pad:
            x = torch.cat([self.past(x, cache), x], dim=2).contiguous(memory_format=layout)
        return self.convolve(x, cache)

    def past(self, x: torch.Tensor, cache: VAEStreamCache | None) -> torch.Tensor:
        """The `time_pad` input frames this conv saw before `x`: zeros at the start of a stream."""
        past = cache.tails.get(self) if cache is not None else None
        if past is None:
            shape = (*x.shape[:2], self.time_pad, *x.shape[3:])
            past = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x)).zero_()
        return past

    def convolve(
        self, padded: torch.Tensor, cache: VAEStreamCache | None = None, add_bias: bool = True
    ) -> torch.Tensor:
        """Convolve input frames already preceded by `past(...)`, and remember their tail for the next call.

        With `add_bias=False` the caller adds `self.bias` in a kernel it runs anyway (cuDNN adds a bias in a
        pass of its own over the output: the same values, one more read and write of the whole tensor).
        """
        if self.time_pad and cache is not None:
            cache.tails[self] = padded[:, :, -self.time_pad :].clone()
        y = self._conv_forward(padded, self.weight, self.bias if add_bias else None)
        # keep the input's layout (cuDNN does; some CPU kernels return contiguous outputs)
        return y.contiguous(memory_format=memory_format_of(padded))


class RMSNorm(nn.Module):
    """L2-normalise over channels, times sqrt(C) and a learned per-channel gain (`gamma`)."""

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma

    def padded_norm_silu(self, past: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """`cat([past, SiLU(self(x + bias))], time)` in `x`'s layout, the input of a causal conv; `bias` is the
        per-channel bias of the conv that made `x`, if it left it out. One kernel once `compile.compile_vae`
        compiled this (no separate passes for the bias or the concatenation)."""
        if bias is not None:
            x = x + bias.view(-1, 1, 1, 1)
        return torch.cat([past, F.silu(self(x))], dim=2).contiguous(memory_format=memory_format_of(x))


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(c_in), nn.SiLU(), CausalConv3d(c_in, c_out, 3, padding=1),
            RMSNorm(c_out), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(c_out, c_out, 3, padding=1),
        )  # fmt: skip
        self.shortcut = CausalConv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cache: VAEStreamCache) -> torch.Tensor:
        norm1, _, conv1, norm2, _, _, conv2 = self.residual  # (SiLU and Dropout(0) are folded in)
        h = self.shortcut(x)
        # each conv's bias is added by the kernel that reads its output next (norm2's, the residual sum)
        y = conv1.convolve(norm1.padded_norm_silu(conv1.past(x, cache), x), cache, add_bias=False)
        y = conv2.convolve(norm2.padded_norm_silu(conv2.past(y, cache), y, conv1.bias), cache, add_bias=False)
        return self.residual_sum(y, conv2.bias, h)

    def residual_sum(self, y: torch.Tensor, bias: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """`(y + bias) + h`: one kernel once `compile.compile_vae` compiled it."""
        return (y + bias.view(-1, 1, 1, 1)) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        qkv = self.to_qkv(self.norm(frames)).reshape(b * t, 3 * c, h * w).transpose(1, 2)
        q, k, v = qkv.unsqueeze(1).chunk(3, dim=-1)  # [bt, 1, hw, c] each
        y = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2).reshape(b * t, c, h, w)
        y = self.proj(y).reshape(b, t, c, h, w).transpose(1, 2)
        return x + y


class Resample(nn.Module):
    """Decoder upsampler: 2x space (channels halved) and, for `upsample3d`, 2x time."""

    def __init__(self, dim: int, temporal: bool):
        super().__init__()
        self.resample = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(dim, dim // 2, 3, padding=1)
        )
        self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0)) if temporal else None

    def forward(self, x: torch.Tensor, cache: VAEStreamCache) -> torch.Tensor:
        if self.time_conv is not None:
            x = self._double_frames(x, cache)
        b, c, t, h, w = x.shape
        frames = self.resample[1](self.upsample(x.transpose(1, 2).reshape(b * t, c, h, w)))  # then a 3x3 conv
        return frames.reshape(b, t, -1, 2 * h, 2 * w).transpose(1, 2).contiguous(memory_format=memory_format_of(x))

    def upsample(self, frames: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour 2x of `frames [N, C, h, w]`: one gather kernel once `compile.compile_vae` compiled
        it (torch's channels-last kernel for it runs at a fraction of the memory bandwidth)."""
        return self.resample[0](frames)

    def _double_frames(self, x: torch.Tensor, cache: VAEStreamCache) -> torch.Tensor:
        """Every frame becomes two (the time conv's channel halves), except the stream's first frame."""
        head = None
        if self not in cache.started:
            cache.started.add(self)
            head, x = x[:, :, :1], x[:, :, 1:]
        if not x.shape[2]:  # only the stream's first frame (no empty concatenation: it loses the layout)
            return head
        y = self.time_conv(x, cache)
        b, c2, t, h, w = y.shape
        # channel half i of frame j becomes frame 2j + i: one copy, in the input's memory layout
        x = torch.empty((b, c2 // 2, 2 * t, h, w), dtype=y.dtype, device=y.device, memory_format=memory_format_of(y))
        x.view(b, c2 // 2, t, 2, h, w).copy_(y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5))
        return x if head is None else torch.cat([head, x], dim=2)


class Decoder3d(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(
            ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]), ResidualBlock(dims[0], dims[0])
        )
        upsamples: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            c_in = c_in // 2 if i > 0 else c_in  # the previous upsampler halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                upsamples.append(ResidualBlock(c_in, c_out))
                c_in = c_out
            if i < len(cfg.dim_mult) - 1:
                upsamples.append(Resample(c_out, temporal=cfg.temporal_upsample[i]))
        self.upsamples = nn.Sequential(*upsamples)
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: VAEStreamCache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for layer in (*self.middle, *self.upsamples):
            x = layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)
        norm, _, conv = self.head
        return conv.convolve(norm.padded_norm_silu(conv.past(x, cache), x), cache)


class WanVAEDecoder(nn.Module):
    """The decoding half of the Wan2.1 VAE, with latent de-normalisation; stateful through a VAEStreamCache."""

    def __init__(self, cfg: VAEConfig | None = None):
        super().__init__()
        self.cfg = cfg or VAEConfig.wan2_1()
        self.conv2 = CausalConv3d(self.cfg.z_dim, self.cfg.z_dim, 1)
        self.decoder = Decoder3d(self.cfg)
        self.channels_last = False
        self.register_buffer("latent_mean", torch.tensor(LATENT_MEAN[: self.cfg.z_dim]), persistent=False)
        self.register_buffer("latent_std", torch.tensor(LATENT_STD[: self.cfg.z_dim]), persistent=False)

    def new_state(self) -> VAEStreamCache:
        return VAEStreamCache()

    @torch.no_grad()
    def optimize(self, channels_last: bool = True) -> WanVAEDecoder:
        """Channels-last (NDHWC) activations and convolution weights, which cuDNN runs faster, with the same
        results (`compile.compile_vae` compiles the elementwise work between the convolutions)."""
        self.channels_last = channels_last
        for module in self.modules():
            if isinstance(module, nn.Conv3d | nn.Conv2d):
                fmt = CHANNELS_LAST if isinstance(module, nn.Conv3d) else torch.channels_last
                module.weight.data = module.weight.data.contiguous(
                    memory_format=fmt if channels_last else torch.contiguous_format
                )
        return self

    def forward(self, latents: torch.Tensor, state: VAEStreamCache, frame_chunk: int | None = None) -> torch.Tensor:
        """Decode the next latents of a stream: [B, F, z, h, w] -> RGB in [0, 1], [B, T, 3, 8h, 8w].

        `frame_chunk` feeds the decoder that many latents per pass (the official code uses 1); the result
        does not depend on it, only speed and peak memory do.
        """
        z = latents.transpose(1, 2)  # [B, z, F, h, w]
        shape = (1, -1, 1, 1, 1)
        inv_std = 1.0 / self.latent_std.to(z.dtype)
        z = z / inv_std.view(shape) + self.latent_mean.to(z.dtype).view(shape)
        x = self.conv2(z)
        if self.channels_last:
            x = x.contiguous(memory_format=CHANNELS_LAST)
        step = frame_chunk or x.shape[2]
        out = [self.decoder(x[:, :, i : i + step], state) for i in range(0, x.shape[2], step)]
        video = torch.cat(out, dim=2).float().clamp_(-1.0, 1.0)
        return (video.transpose(1, 2) * 0.5 + 0.5).clamp_(0.0, 1.0)


def load_wan_vae(
    path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    cfg: VAEConfig | None = None,
) -> WanVAEDecoder:
    """Build the decoder and load `Wan2.1_VAE.pth` strictly (its encoder keys are recognised and skipped)."""
    state, _encoder_keys = split_known(load_state_file(path), ENCODER_PREFIXES)
    model = load_strict(WanVAEDecoder(cfg), state, f"Wan VAE {path}")
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
