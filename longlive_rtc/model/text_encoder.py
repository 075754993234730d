"""Prompt -> context embeddings [1, 512, 4096] for the DiT.

The umT5 encoder may run on the GPU or, for small GPUs, on the CPU with the result moved to the generator's
device (`output_device`). Padded positions of the output are zeroed, as in the official wrapper. Because the
padding keys are masked, real tokens do not depend on the padding, so the encoder only runs on the longest
real length of the batch (`trim_padding`; same result up to float rounding, several times cheaper for
typical prompts); the output is zero-filled back to 512 positions. Nothing is cached here: a session's
engine keeps each scheduled prompt's embedding (``stream.PromptCache``), the one cache of encoded prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .t5 import T5Config, UMT5Encoder, load_umt5
from .tokenizer import TEXT_LEN, PromptTokenizer


class TextEncoder:
    """Encodes prompts: `__call__(prompt)` one, `encode(prompts)` a batch."""

    def __init__(
        self,
        encoder: UMT5Encoder,
        tokenizer: PromptTokenizer,
        *,
        output_device: torch.device | str | None = None,
        output_dtype: torch.dtype | None = None,
        trim_padding: bool = True,
    ):
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.device = encoder.device
        self.output_device = torch.device(output_device) if output_device is not None else self.device
        self.output_dtype = output_dtype
        self.trim_padding = trim_padding

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """[B, text_len, dim] on `output_device`; rows past each prompt's tokens are exactly zero."""
        ids, mask = self.tokenizer(prompts)
        length = int(mask.sum(dim=1).max()) if self.trim_padding else ids.shape[1]
        hidden = self.encoder(ids[:, :length].to(self.device), mask[:, :length].to(self.device))
        hidden = hidden * mask[:, :length, None].to(self.device, hidden.dtype)
        context = hidden.new_zeros(len(prompts), ids.shape[1], hidden.shape[2])
        context[:, :length] = hidden
        return context.to(self.output_device, self.output_dtype or context.dtype)

    def __call__(self, prompt: str) -> torch.Tensor:
        """[1, text_len, dim] for one prompt."""
        return self.encode([prompt])


def load_text_encoder(
    t5_path: str | Path,
    tokenizer_dir: str | Path,
    *,
    device: torch.device | str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    output_device: torch.device | str | None = None,
    cfg: T5Config | None = None,
    text_len: int = TEXT_LEN,
) -> TextEncoder:
    """umT5 weights + tokenizer -> TextEncoder. `device="cpu"` keeps the 11 GB encoder off the GPU."""
    encoder = load_umt5(t5_path, device=device, dtype=dtype, cfg=cfg)
    tokenizer = PromptTokenizer.from_dir(tokenizer_dir, text_len)
    return TextEncoder(encoder, tokenizer, output_device=output_device, output_dtype=dtype)
