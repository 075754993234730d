"""Causal Wan2.1 DiT of LongLive v1.0 with the official module and parameter names.

`CausalWanModel.forward` runs one streaming call: the latent frames of one block (or a recache
window) against the KV cache, writing their keys/values in place. Everything follows the official
inference path (reference section 2.2): float64 cos|sin time embedding, per-frame modulation in the
activation dtype, q/k RMSNorm over the full width in float32, interleaved 3D RoPE, unmasked attention
over sink + window, cross-attention K/V computed once per prompt, flow (velocity) output.
Plain eager torch; `compile.compile_dit` compiles the block's pure halves from outside, per instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
from torch import Tensor

from .attention import attention
from .config import WanConfig
from .kv_cache import CachePlan, KVCache
from .rope import RotaryEmbedding, rotate, rotation


def sinusoidal_embedding(dim: int, t: Tensor) -> Tensor:
    """Timestep embedding `[N, dim]` in float64: `[cos | sin](t * 10000^(-k/half))`, cos first."""
    half = dim // 2
    pos = t.to(torch.float64)
    angles = torch.outer(pos, torch.pow(10000, -torch.arange(half, dtype=torch.float64, device=t.device).div(half)))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """`x * (1 + scale) + shift` on tokens `x [B, F*S, C]` with per-frame `shift, scale [B, F, 1, C]`."""
    return (x.unflatten(1, (shift.shape[1], -1)) * (1 + scale) + shift).flatten(1, 2)


def gated(x: Tensor, gate: Tensor) -> Tensor:
    """`x * gate` on tokens `x [B, F*S, C]` with a per-frame `gate [B, F, 1, C]`."""
    return (x.unflatten(1, (gate.shape[1], -1)) * gate).flatten(1, 2)


class RMSNorm(nn.Module):
    """`x * rsqrt(mean(x^2) + eps)` computed in float32 (float64 stays float64), cast back, times a weight."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class Projections(nn.Module):
    """The q/k/v/o projections and q/k RMSNorms that Wan's self- and cross-attention share."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def heads(self, x: Tensor) -> Tensor:
        """`[B, L, C]` -> `[B, L, heads, head_dim]`."""
        return x.unflatten(-1, (self.num_heads, -1))


class SelfAttention(Projections):
    """Causal self-attention against the KV cache (`CausalWanSelfAttention`). Its inputs (`qkv`) and output
    projection (`o`) run in `CausalWanAttentionBlock`, around the cache write and the attention kernel."""

    def qkv(
        self, h: Tensor, rotation: tuple[Tensor, Tensor], rotate_keys: bool, need_q: bool
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """`q`, `k`, `v` `[B, L, heads, head_dim]` of `h`: q/k RMSNorm over the full width, then RoPE.

        `k` is rotated only with `rotate_keys` (absolute mode: keys are stored rotated); `q` is None
        unless `need_q` (a cache-only pass).
        """
        k = self.heads(self.norm_k(self.k(h)))
        if rotate_keys:
            k = rotate(k, *rotation)
        v = self.heads(self.v(h))
        if not need_q:
            return None, k, v
        return rotate(self.heads(self.norm_q(self.q(h))), *rotation), k, v


class CrossAttention(Projections):
    """Text cross-attention (`WanT2VCrossAttention`); K/V come precomputed per prompt."""

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """K/V `[B, text_len, H, D]` of the embedded text context."""
        b = context.shape[0]
        k = self.norm_k(self.k(context)).view(b, -1, self.num_heads, self.head_dim)
        v = self.v(context).view(b, -1, self.num_heads, self.head_dim)
        return k, v

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor]) -> Tensor:
        b = x.shape[0]
        q = self.norm_q(self.q(x)).view(b, -1, self.num_heads, self.head_dim)
        return self.o(attention(q, *kv).flatten(2))


class CausalWanAttentionBlock(nn.Module):
    """Transformer block: modulated self-attention, cross-attention, modulated FFN.

    `forward` splits the block around the KV-cache write and the attention kernel: `attention_inputs`
    before, `rotate_keys` (slot mode) and `attention_output` after. Those three are pure tensor code,
    what `compile.compile_dit` compiles.
    """

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        #: Set by `compile.compile_dit`: on CUDA, the FFN's GELU runs in its first GEMM's epilogue.
        self.gelu_in_gemm = False

    def forward(self, x: Tensor, e0: Tensor, step: StepContext, layer: int, kv_only: bool = False) -> Tensor | None:
        """`x [B, F*S, C]`, `e0 [B, F, 6, C]`. With `kv_only`, only write this layer's cache."""
        slot_mode = step.key_rotation is not None
        q, k, v = self.attention_inputs(x, e0, step.query_rotation, not slot_mode, not kv_only)
        keys, values = step.cache.update(layer, step.plan, k, v)  # absolute mode: keys stored rotated
        if kv_only:
            return None
        if slot_mode:
            keys = self.rotate_keys(keys, step.key_rotation)
        return self.attention_output(x, e0, attention(q, keys, values), step.context[layer])

    def modulations(self, e0: Tensor) -> tuple[Tensor, ...]:
        """Per-frame shift_sa, scale_sa, gate_sa, shift_ffn, scale_ffn, gate_ffn `[B, F, 1, C]`."""
        return (self.modulation.unsqueeze(1) + e0).chunk(6, dim=2)

    def attention_inputs(
        self, x: Tensor, e0: Tensor, rotation: tuple[Tensor, Tensor], rotate_keys: bool, need_q: bool
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """Self-attention inputs: modulated LayerNorm of `x`, then q/k/v (see `SelfAttention.qkv`)."""
        shift_sa, scale_sa = self.modulations(e0)[:2]
        h = modulate(self.norm1(x), shift_sa, scale_sa)
        return self.self_attn.qkv(h, rotation, rotate_keys, need_q)

    def rotate_keys(self, keys: Tensor, rotation: tuple[Tensor, Tensor]) -> Tensor:
        """Slot mode: RoPE of the gathered (stored un-rotated) keys by their slot positions."""
        return rotate(keys, *rotation)

    def attention_output(self, x: Tensor, e0: Tensor, attended: Tensor, context_kv: tuple[Tensor, Tensor]) -> Tensor:
        """The rest of the block: gated self-attention residual, cross-attention, gated modulated FFN."""
        _, _, gate_sa, shift_ffn, scale_ffn, gate_ffn = self.modulations(e0)
        x = x + gated(self.self_attn.o(attended.flatten(2)), gate_sa)
        x = x + self.cross_attn(self.norm3(x), context_kv)
        return x + gated(self.feed_forward(modulate(self.norm2(x), shift_ffn, scale_ffn)), gate_ffn)

    def feed_forward(self, h: Tensor) -> Tensor:
        """`self.ffn(h)`; with `gelu_in_gemm` on CUDA, the GELU(tanh) is the first GEMM's cuBLASLt epilogue,
        applied to the fp32 accumulator before the one rounding to bf16 (within bf16 rounding of the plain
        path, and one memory-bound pass less)."""
        up, _, down = self.ffn
        if not (self.gelu_in_gemm and h.is_cuda and type(up) is nn.Linear):
            return self.ffn(h)
        hidden = torch._addmm_activation(up.bias, h.flatten(0, -2), up.weight.t(), use_gelu=True)
        return down(hidden.unflatten(0, h.shape[:-1]))


class CausalHead(nn.Module):
    """Output head modulated by the (unprojected) time embedding."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        out = cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2] * cfg.out_dim
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, out)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """`x [B, F*S, C]`, `e [B, F, 1, C]` -> `[B, F, S, prod(patch)*out_dim]`."""
        shift, scale = (self.modulation.unsqueeze(1) + e).chunk(2, dim=2)
        return self.head(self.norm(x).unflatten(1, (e.shape[1], -1)) * (1 + scale) + shift)


@dataclass
class CrossAttnCache:
    """Per-layer cross-attention K/V of one prompt (computed once, reused by every call)."""

    kv: list[tuple[Tensor, Tensor]]

    def __getitem__(self, layer: int) -> tuple[Tensor, Tensor]:
        return self.kv[layer]


class RopeFreqs(NamedTuple):
    """A call's complex RoPE rotations `[L, 1, head_dim/2]`: of its queries (and, in absolute mode, its new
    keys), and in slot mode of the gathered keys (None in absolute mode: stored keys are rotated already)."""

    query: Tensor
    keys: Tensor | None


@dataclass
class StepContext:
    """What every block needs for one forward call."""

    cache: KVCache
    plan: CachePlan
    context: CrossAttnCache
    query_rotation: tuple[Tensor, Tensor]  # RoPE (cos, sin) of the queries and, in absolute mode, new keys
    key_rotation: tuple[Tensor, Tensor] | None  # slot mode: RoPE of the gathered keys


class CausalWanModel(nn.Module):
    """LongLive causal Wan DiT. State-dict keys equal the official `CausalWanModel` ones."""

    def __init__(self, config: WanConfig) -> None:
        super().__init__()
        cfg = self.config = config
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([CausalWanAttentionBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = CausalHead(cfg)
        rope_dtype = torch.float64 if cfg.rope_dtype == "float64" else torch.float32
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_theta, rope_dtype)  # not in the state dict
        self.init_weights()

    def init_weights(self) -> None:
        """Wan's initialisation (Xavier linears, zero biases, N(0, 0.02) embeddings, zero head)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for m in self.text_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for m in self.time_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def new_kv_cache(self, batch_size: int, dtype: torch.dtype | None = None, device=None) -> KVCache:
        """An empty self-attention cache sized for this model's window, sink and geometry."""
        cfg = self.config
        return KVCache(
            cfg.num_layers,
            batch_size,
            cfg.num_heads,
            cfg.head_dim,
            cfg.frame_seq_len,
            window=cfg.local_attn_size,
            sink=cfg.sink_size,
            dtype=dtype or self.dtype,
            device=device or self.device,
        )

    @torch.no_grad()
    def encode_context(self, prompt_embeds: Tensor) -> CrossAttnCache:
        """Text embedding + per-layer cross-attention K/V of `prompt_embeds [B, <=text_len, text_dim]`.

        Shorter contexts are zero-padded to `text_len`; no mask is applied (as in Wan).
        """
        ctx = prompt_embeds.to(device=self.device, dtype=self.dtype)
        pad = self.config.text_len - ctx.shape[1]
        if pad < 0:
            raise ValueError(f"context longer than text_len={self.config.text_len}")
        if pad:
            ctx = torch.cat([ctx, ctx.new_zeros(ctx.shape[0], pad, ctx.shape[2])], dim=1)
        ctx = self.text_embedding(ctx)
        return CrossAttnCache([blk.cross_attn.context_kv(ctx) for blk in self.blocks])

    def time_embed(self, t: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Per-frame `e [B, F, C]` (time_embedding) and `e0 [B, F, 6, C]` (time_projection) for `t [B, F]`."""
        e = self.time_embedding(sinusoidal_embedding(self.config.freq_dim, t.flatten()).to(dtype))
        e0 = self.time_projection(e).unflatten(1, (6, self.config.dim))
        return e.unflatten(0, t.shape), e0.unflatten(0, t.shape)

    def patchify(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """`[B, C, F, H, W]` latents -> tokens `[B, F*h*w, dim]` in (f, h, w) order and the grid (F, h, w)."""
        x = self.patch_embedding(x)
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # type: ignore[return-value]

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """Head output `[B, F, h*w, pt*ph*pw*C]` -> `[B, C, F*pt, h*ph, w*pw]`."""
        f, h, w = grid
        pt, ph, pw = self.config.patch_size
        c = self.config.out_dim
        x = x.reshape(x.shape[0], f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(x.shape[0], c, f * pt, h * ph, w * pw)

    def rope_for(self, cache: KVCache, plan: CachePlan, h: int, w: int) -> RopeFreqs:
        """Complex rotations for the call's queries/new keys and, in slot mode, for the gathered keys."""
        q = self.rope.freqs(cache.query_positions(plan), h, w, self.device)
        key_pos = cache.key_positions(plan)
        k = None if key_pos is None else self.rope.freqs(key_pos, h, w, self.device)
        return RopeFreqs(q, k)

    def grid_of(self, x: Tensor) -> tuple[int, int, int]:
        """Token grid (frames, h, w) of latents `x [B, C, F, H, W]`."""
        pt, ph, pw = self.config.patch_size
        return x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw

    def plan_call(
        self, x: Tensor, cache: KVCache, start_frame: int, sink_recache: bool = False
    ) -> tuple[CachePlan, RopeFreqs]:
        """The host half of a call (see `forward`): its cache plan and its RoPE rotations."""
        frames, h, w = self.grid_of(x)
        plan = cache.plan(start_frame, frames, sink_recache=sink_recache)
        return plan, self.rope_for(cache, plan, h, w)

    @torch.no_grad()
    def forward(
        self,
        x: Tensor,
        t: Tensor,
        context: CrossAttnCache,
        cache: KVCache,
        start_frame: int,
        *,
        sink_recache: bool = False,
        compute_output: bool = True,
    ) -> Tensor | None:
        """One streaming call.

        Args:
            x: latents `[B, C, F, H, W]` of frames `[start_frame, start_frame + F)`.
            t: timesteps `[B, F]` (float; per frame).
            context: cross-attention K/V from `encode_context`.
            cache: the self-attention KV cache, updated in place.
            start_frame: absolute latent frame index of `x`'s first frame.
            sink_recache: recache with `global_sink=False` (write into the sink slots too).
            compute_output: False for cache-only passes (t=0 refresh, recache): the last block only
                writes its K/V and no output is computed.

        Returns:
            The flow (velocity) prediction `[B, C, F, H, W]`, or None without `compute_output`.
        """
        plan, freqs = self.plan_call(x, cache, start_frame, sink_recache)
        flow = self.run_planned(x, t, context, cache, plan, freqs, compute_output)
        cache.commit(plan)
        return flow

    @torch.no_grad()
    def run_planned(
        self,
        x: Tensor,
        t: Tensor,
        context: CrossAttnCache,
        cache: KVCache,
        plan: CachePlan,
        freqs: RopeFreqs,
        compute_output: bool = True,
    ) -> Tensor | None:
        """The device half of a call (`forward` less the plan, the RoPE rotations and the commit): tensor work only,
        on fixed shapes for a given plan, reading the host only for the plan's integers (what
        `graphs.ForwardGraphs` captures)."""
        tokens, grid = self.patchify(x.to(self.dtype))
        e, e0 = self.time_embed(t, tokens.dtype)
        keys = None if freqs.keys is None else rotation(freqs.keys)
        step = StepContext(cache, plan, context, rotation(freqs.query), keys)  # (cos, sin): views, no kernels
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            kv_only = not compute_output and i == last
            out = block(tokens, e0, step, i, kv_only=kv_only)
            if out is not None:
                tokens = out
        if not compute_output:
            return None
        return self.unpatchify(self.head(tokens, e.unsqueeze(2)), grid)
