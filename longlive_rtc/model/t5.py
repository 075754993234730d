"""umT5-XXL encoder, as used by Wan2.1 / LongLive for prompt embeddings.

Pre-norm transformer with T5's RMS norm (no mean subtraction, float32 statistics), unscaled attention with a
learned relative-position bias per layer (32 buckets, bidirectional, max distance 128) plus the padding
mask, and a gated-GELU (tanh) feed-forward; every Linear has no bias. Parameter names follow
`models_t5_umt5-xxl-enc-bf16.pth`: `token_embedding`, `blocks.{i}.{norm1,attn.{q,k,v,o},norm2,
ffn.{gate.0,fc1,fc2},pos_embedding.embedding}`, `norm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_state_file, load_strict


@dataclass(frozen=True)
class T5Config:
    vocab_size: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6

    @classmethod
    def umt5_xxl(cls) -> T5Config:
        return cls()

    @classmethod
    def tiny(cls, vocab_size: int = 512) -> T5Config:
        return cls(vocab_size=vocab_size, dim=32, dim_attn=32, dim_ffn=48, num_heads=4, num_layers=2)


class T5LayerNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x.type_as(self.weight)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device: torch.device) -> torch.Tensor:
    """Bidirectional T5 buckets of (key - query): half the buckets per sign, exact below 8, log-spaced to 128."""
    rel = torch.arange(length, device=device)[None, :] - torch.arange(length, device=device)[:, None]
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    rel = rel.abs()
    exact = half // 2
    log_scaled = (
        exact + (torch.log(rel.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (half - exact)).long()
    )
    log_scaled = log_scaled.clamp(max=half - 1)
    return bucket + torch.where(rel < exact, rel, log_scaled)


class RelativePositionBias(nn.Module):
    def __init__(self, num_buckets: int, num_heads: int):
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, buckets: torch.Tensor) -> torch.Tensor:
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)  # [1, heads, Lq, Lk]


class T5Attention(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(cfg.dim, cfg.dim_attn, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.dim_attn, bias=False)
        self.v = nn.Linear(cfg.dim, cfg.dim_attn, bias=False)
        self.o = nn.Linear(cfg.dim_attn, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (proj(x).view(b, n, self.num_heads, -1).transpose(1, 2) for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # T5: no 1/sqrt(d)
        return self.o(y.transpose(1, 2).reshape(b, n, -1))


class T5FeedForward(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(cfg.dim, cfg.dim_ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(cfg.dim, cfg.dim_ffn, bias=False)
        self.fc2 = nn.Linear(cfg.dim_ffn, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.norm1 = T5LayerNorm(cfg.dim, cfg.eps)
        self.attn = T5Attention(cfg)
        self.norm2 = T5LayerNorm(cfg.dim, cfg.eps)
        self.ffn = T5FeedForward(cfg)
        self.pos_embedding = RelativePositionBias(cfg.num_buckets, cfg.num_heads)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        bias = self.pos_embedding(buckets).to(x.dtype).masked_fill(pad, torch.finfo(x.dtype).min)
        x = x + self.attn(self.norm1(x), bias)
        return x + self.ffn(self.norm2(x))


class UMT5Encoder(nn.Module):
    """Token ids [B, L] and mask [B, L] (1 = real token) -> hidden states [B, L, dim]."""

    def __init__(self, cfg: T5Config | None = None):
        super().__init__()
        self.cfg = cfg = cfg or T5Config.umt5_xxl()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(T5Block(cfg) for _ in range(cfg.num_layers))
        self.norm = T5LayerNorm(cfg.dim, cfg.eps)

    @property
    def device(self) -> torch.device:
        """Where the encoder computes (the token table may live elsewhere, see `place`)."""
        return self.norm.weight.device

    def place(self, device: torch.device | str, embedding_device: torch.device | str | None = None) -> UMT5Encoder:
        """Move to `device`, the token table to `embedding_device` if given: at full size that table is
        2.1 GB of GPU memory saved for a look-up of at most 512 rows in host memory."""
        for name, child in self.named_children():
            child.to(embedding_device if name == "token_embedding" and embedding_device is not None else device)
        return self

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        device = self.device
        x = self.token_embedding(ids.to(self.token_embedding.weight.device)).to(device)
        buckets = relative_position_buckets(ids.shape[1], self.cfg.num_buckets, self.cfg.max_distance, device)
        pad = (mask.to(device) == 0)[:, None, None, :]  # [B, 1, 1, Lk]: padded keys are never attended
        for block in self.blocks:
            x = block(x, buckets, pad)
        return self.norm(x)


def load_umt5(
    path: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    cfg: T5Config | None = None,
    embedding_device: torch.device | str | None = "cpu",
) -> UMT5Encoder:
    """Load `models_t5_umt5-xxl-enc-bf16.pth` strictly without materialising random weights first.

    The token table stays on `embedding_device` (host memory by default; None: with the rest).
    """
    with torch.device("meta"):
        model = UMT5Encoder(cfg)
    load_strict(model, load_state_file(path), f"umT5 encoder {path}", assign=True)
    return model.to(dtype=dtype).place(device, embedding_device).eval().requires_grad_(False)
