"""Streaming latent -> pixel decoding, block by block, with either decoder (`wan` or `tae`).

Both decoders keep their causal state in a per-stream object, so decoding a stream one 3-latent block at a
time gives the same frames as decoding it whole: block 0 -> 9 frames, every later block -> 12.
"""

from __future__ import annotations

from typing import Literal

import torch

from .tae import TAEDecoder
from .vae import WanVAEDecoder

DecoderKind = Literal["wan", "tae"]
DECODER_KINDS: tuple[DecoderKind, ...] = ("wan", "tae")


def frames_for_latents(num_latents: int, stream_start: bool) -> int:
    """Video frames produced by `num_latents` latents: the stream's first latent gives 1, every other 4."""
    if num_latents <= 0:
        return 0
    return 4 * num_latents - 3 if stream_start else 4 * num_latents


def to_uint8_frames(video: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1], [B, T, 3, H, W] -> uint8 [B, T, H, W, 3] (x255, truncated, as the official writer)."""
    return (video.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous()


class StreamingDecoder:
    """Decodes each latent block as it arrives, keeping the decoder's causal cache between calls.

    `decode(latents [B, F, 16, h, w])` returns uint8 RGB frames [B, T, 8h, 8w, 3] on the decoder's device
    (convert before the host copy: a quarter of the bytes of float32). Call `reset()` for a new stream.
    """

    def __init__(self, model: WanVAEDecoder | TAEDecoder, frame_chunk: int | None = None):
        self.model = model
        self.frame_chunk = frame_chunk  # Wan VAE only: latents per decoder pass (None = the whole block)
        self.reset()

    @property
    def kind(self) -> DecoderKind:
        return "tae" if isinstance(self.model, TAEDecoder) else "wan"

    def reset(self) -> None:
        self.state = self.model.new_state()
        self.frames_emitted = 0

    @torch.no_grad()
    def decode_float(self, latents: torch.Tensor) -> torch.Tensor:
        """Like `decode`, but RGB in [0, 1] as float32 [B, T, 3, H, W]."""
        param = next(self.model.parameters())
        latents = latents.to(device=param.device, dtype=param.dtype)
        if isinstance(self.model, WanVAEDecoder):
            video = self.model(latents, self.state, frame_chunk=self.frame_chunk)
        else:
            video = self.model(latents, self.state)
        self.frames_emitted += video.shape[1]
        return video

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return to_uint8_frames(self.decode_float(latents))
