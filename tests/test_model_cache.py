"""Streaming path (ring-buffer KV cache, in-place writes) vs an independent, cache-free reference.

The reference below re-implements the forward pass from the spec with plain float64 math: it keeps
every frame's keys/values in a dict, decides which frames are the sink and the window at frame level
(reference sections 3.4, 3.5, 5.3), gathers the attended keys explicitly, rotates them at the
positions the spec gives (absolute frame index; slot index in the "infinite" mode) and runs full
softmax attention. Nothing of the ring-buffer index arithmetic is shared with the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from longlive_rtc.model import CausalWanModel, WanConfig, tiny, tiny_small_window
from longlive_rtc.model.pipeline import StreamingPipeline
from longlive_rtc.model.random_init import randomize_

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SIGMAS = [float(torch.tensor(s, dtype=torch.float32)) for s in (1.0, 0.9375, 0.8333333, 0.625)]
TIMESTEPS = [float(torch.tensor(t, dtype=torch.float32)) for t in (1000.0, 937.5, 833.3333, 625.0)]


class CountingNoise:
    """Noise source whose k-th draw is a fixed function of k (shared by pipeline and reference)."""

    def __init__(self) -> None:
        self.calls = 0

    def reset(self, seeds, device) -> None:
        self.calls = 0

    def draw(self, shape, dtype) -> Tensor:
        g = torch.Generator().manual_seed(1000 + self.calls)
        self.calls += 1
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)

    block_noise = draw
    step_noise = draw


def random_model(cfg: WanConfig, dtype: torch.dtype, seed: int = 0) -> CausalWanModel:
    return randomize_(CausalWanModel(cfg).to(dtype), std=0.25, norm_std=0.3, seed=seed)


# --- the independent reference ------------------------------------------------------------------------


class Reference:
    def __init__(self, model: CausalWanModel) -> None:
        self.m = model
        cfg = self.cfg = model.config
        self.heads, self.d = cfg.num_heads, cfg.head_dim
        self.h, self.w = cfg.grid_size
        self.raw_kv: list[dict[int, tuple[Tensor, Tensor]]] = [{} for _ in range(cfg.num_layers)]
        self.sink: list[int] = []
        self.window: list[int] = []
        self.slot_rope = False
        self.attended: list[tuple[str, int, int, list[int], list[int]]] = []  # kind, start, n, attended, stored

    # layers, written from the spec
    def rot(self, x: Tensor, frame_pos: list[int]) -> Tensor:
        """Interleaved-pair RoPE of tokens `x [B, F*h*w, H, D]` at (frame_pos[f], row, col)."""
        c = self.d // 2
        tp, hp = c - 2 * (c // 3), c // 3

        def axis(pos: list[int], pairs: int) -> Tensor:  # [len(pos), pairs]: pos * 10000^(-2k / (2*pairs))
            k = torch.arange(pairs, dtype=torch.float64)
            return torch.tensor(pos, dtype=torch.float64)[:, None] * 10000.0 ** (-2.0 * k / (2 * pairs))

        nf = len(frame_pos)
        grid = torch.cat(
            [
                axis(frame_pos, tp)[:, None, None].expand(nf, self.h, self.w, tp),
                axis(list(range(self.h)), hp)[None, :, None].expand(nf, self.h, self.w, hp),
                axis(list(range(self.w)), hp)[None, None, :].expand(nf, self.h, self.w, hp),
            ],
            dim=-1,
        )
        ang = grid.reshape(1, -1, 1, c)
        a, b = x[..., 0::2].double(), x[..., 1::2].double()
        out = torch.stack([a * ang.cos() - b * ang.sin(), a * ang.sin() + b * ang.cos()], dim=-1)
        return out.flatten(-2).to(x.dtype)

    @staticmethod
    def rms(x: Tensor, w: Tensor, eps: float) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def split(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.d)

    @staticmethod
    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v).flatten(2)

    def forward(
        self, x: Tensor, t: float, ctx: Tensor, frames: list[int], store: list[int], kind: str = "denoise"
    ) -> Tensor:
        """Flow for latents `x [B, F, C, H, W]` of `frames`; keys/values of `store` are saved first."""
        m, cfg = self.m, self.cfg
        b, nf = x.shape[:2]
        fs, eps = self.h * self.w, cfg.eps
        tok = F.conv3d(x.transpose(1, 2), m.patch_embedding.weight, m.patch_embedding.bias, stride=cfg.patch_size)
        tok = tok.flatten(2).transpose(1, 2)
        half = cfg.freq_dim // 2
        k_ = torch.arange(half, dtype=torch.float64)
        arg = t * 10000.0 ** (-k_ / half)
        sin_emb = torch.cat([arg.cos(), arg.sin()]).to(x.dtype)
        e = m.time_embedding[2](F.silu(m.time_embedding[0](sin_emb)))  # [C], same for every frame
        e0 = m.time_projection[1](F.silu(e)).view(6, cfg.dim)
        text = m.text_embedding[2](F.gelu(m.text_embedding[0](ctx), approximate="tanh"))
        # positions: query frames and the attended keys
        attend = self.sink + self.window
        if self.slot_rope:
            q_pos = list(range(len(attend) - nf, len(attend)))
            key_pos = {f: i for i, f in enumerate(attend)}
        else:
            q_pos = frames
            key_pos = {f: f for f in attend}
        self.attended.append((kind, frames[0], nf, list(attend), list(store)))

        def frames_view(y: Tensor) -> Tensor:
            return y.view(b, nf, fs, -1)

        for layer, blk in enumerate(m.blocks):
            mod = blk.modulation[0] + e0  # [6, C]
            h = (frames_view(F.layer_norm(tok, (cfg.dim,), eps=eps)) * (1 + mod[1]) + mod[0]).flatten(1, 2)
            sa = blk.self_attn
            q = self.split(self.rms(sa.q(h), sa.norm_q.weight, eps))
            k = self.split(self.rms(sa.k(h), sa.norm_k.weight, eps))
            v = self.split(sa.v(h))
            for i, f in enumerate(frames):
                if f in store:
                    self.raw_kv[layer][f] = (k[:, i * fs : (i + 1) * fs], v[:, i * fs : (i + 1) * fs])
            keys = torch.cat([self.rot(self.raw_kv[layer][f][0], [key_pos[f]]) for f in attend], 1)
            vals = torch.cat([self.raw_kv[layer][f][1] for f in attend], 1)
            y = sa.o(self.attend(self.rot(q, q_pos), keys, vals))
            tok = tok + (frames_view(y) * mod[2]).flatten(1, 2)
            ca = blk.cross_attn
            xn = F.layer_norm(tok, (cfg.dim,), blk.norm3.weight, blk.norm3.bias, eps)
            cq = self.split(self.rms(ca.q(xn), ca.norm_q.weight, eps))
            ck = self.split(self.rms(ca.k(text), ca.norm_k.weight, eps))
            tok = tok + ca.o(self.attend(cq, ck, self.split(ca.v(text))))
            hn = (frames_view(F.layer_norm(tok, (cfg.dim,), eps=eps)) * (1 + mod[4]) + mod[3]).flatten(1, 2)
            y = blk.ffn[2](F.gelu(blk.ffn[0](hn), approximate="tanh"))
            tok = tok + (frames_view(y) * mod[5]).flatten(1, 2)
        hm = m.head.modulation[0] + e  # [2, C]
        out = m.head.head(frames_view(F.layer_norm(tok, (cfg.dim,), eps=eps)) * (1 + hm[1]) + hm[0])
        # unpatchify: [B, F, h, w, pt, ph, pw, c] -> [B, F, c, h*ph, w*pw]  (pt = 1)
        pt, ph, pw = cfg.patch_size
        out = out.view(b, nf, self.h, self.w, pt, ph, pw, cfg.out_dim)
        return out.permute(0, 1, 4, 7, 2, 5, 3, 6).reshape(b, nf * pt, cfg.out_dim, self.h * ph, self.w * pw)

    # cache membership, at frame level
    def admit(self, frames: list[int]) -> None:
        cap, sink = self.cfg.local_attn_size, self.cfg.sink_size
        for f in frames:
            if f in self.sink or f in self.window:
                continue
            if len(self.sink) < sink:
                self.sink.append(f)
            else:
                self.window.append(f)
                if len(self.window) > cap - sink:
                    old = self.window.pop(0)
                    for kv in self.raw_kv:
                        kv.pop(old)

    def recache(self, frames: list[int], x: Tensor, ctx: Tensor, keep_sink: bool) -> None:
        if not keep_sink:  # cache zeroed: the recached frames become sink + window
            self.sink, self.window = [], []
            for kv in self.raw_kv:
                kv.clear()
            self.admit(frames)
            store = frames
        elif frames[0] == 0:  # whole stream so far: every frame rewritten, sink included
            store = frames
        else:  # the sink keeps the first prompt's keys; the window frames are rewritten
            store = [f for f in frames if f in self.window]
        self.forward(x, 0.0, ctx, frames, store, kind="recache")


def run_reference(model, n_blocks, prompts, switches, rope_limit=None):
    """switches: {block: (prompt index, keep_sink)}; returns clean latents per block and the attended trace."""
    ref = Reference(model)
    noise = CountingNoise()
    cfg = model.config
    nfb = cfg.num_frame_per_block
    ctx, history, outputs = prompts[0], [], []
    for blk in range(n_blocks):
        s = blk * nfb
        frames = list(range(s, s + nfb))
        if blk in switches:
            p, keep = switches[blk]
            ctx = prompts[p]
            n = min(cfg.local_attn_size, s)
            if n:
                ref.recache(list(range(s - n, s)), torch.cat(history, 1)[:, -n:], ctx, keep)
            elif not keep:
                ref.sink, ref.window = [], []
        if rope_limit is not None and s + nfb > rope_limit:
            ref.slot_rope = True
        ref.admit(frames)
        shape = (prompts[0].shape[0], nfb, cfg.in_dim, cfg.latent_height, cfg.latent_width)
        x = noise.draw(shape, model.dtype)
        for i in range(4):
            flow = ref.forward(x, TIMESTEPS[i], ctx, frames, frames)
            x0 = x - SIGMAS[i] * flow
            if i < 3:
                x = (1 - SIGMAS[i + 1]) * x0 + SIGMAS[i + 1] * noise.draw(shape, model.dtype)
        ref.forward(x0, 0.0, ctx, frames, frames, kind="cache")
        history.append(x0)
        outputs.append(x0)
    return outputs, ref


def run_pipeline(model, n_blocks, prompts, switches, **kw):
    """Like `run_reference`; the deferred last cache pass is flushed. `pipe.kinds` lists each call's kind."""
    pipe = StreamingPipeline(model, noise=CountingNoise(), **kw)
    pipe.begin(0, prompts[0])
    pipe.cache.trace = []
    pipe.kinds = []
    step = pipe._step

    def labelled(kind, *args, **kwargs):
        pipe.kinds.append(kind)
        return step(kind, *args, **kwargs)

    pipe._step = labelled
    outputs = []
    for blk in range(n_blocks):
        if blk in switches:
            p, keep = switches[blk]
            pipe.switch_prompt(prompts[p], global_sink=keep)
        outputs.append(pipe.next_block())
    pipe.flush()
    return outputs, pipe


def expected_calls(ref_calls: list[tuple]) -> list[tuple[str, int, int, list[int]]]:
    """The reference's calls as the pipeline makes them (see the pipeline's docstring): a recache runs only
    on the frames whose keys it stores, and replaces the cache pass of a block whose keys it rewrites."""
    out = []
    for i, (kind, start, n, attended, stored) in enumerate(ref_calls):
        nxt = ref_calls[i + 1] if i + 1 < len(ref_calls) else None
        if kind == "cache" and nxt is not None and nxt[0] == "recache" and set(range(start, start + n)) <= set(nxt[4]):
            continue
        if kind == "recache":
            if not stored:
                continue
            assert stored == list(range(stored[0], start + n))  # a suffix of the recached frames
            start, n = stored[0], len(stored)
        out.append((kind, start, n, attended))
    return out


def pipeline_calls(pipe) -> list[tuple[str, int, int, list[int]]]:
    assert len(pipe.kinds) == len(pipe.cache.trace)
    return [(kind, *call) for kind, call in zip(pipe.kinds, pipe.cache.trace, strict=True)]


SCENARIOS = {
    # default window 12 / sink 3: early switch (recache from frame 0), keep-sink switch, reset switch
    "absolute": (tiny(), 22, {1: (2, True), 2: (1, True), 8: (2, True), 15: (1, False)}, None),
    # RoPE table of 30 frames: slot positions from frame 30 on, switches after that
    "slot-after-limit": (tiny().with_(rope_max_frames=30), 21, {7: (1, True), 12: (2, False), 17: (1, True)}, 30),
    # window 6 / sink 3: rolls from the third block
    "small-window": (tiny_small_window(), 14, {3: (1, True), 8: (2, False), 11: (0, True)}, None),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_streaming_matches_cache_free_reference(name: str, dtype: torch.dtype, tol: float) -> None:
    cfg, n_blocks, switches, rope_limit = SCENARIOS[name]
    model = random_model(cfg, dtype)
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randn(1, cfg.text_len, cfg.text_dim, generator=g, dtype=torch.float64).to(dtype) for _ in range(3)]
    got, pipe = run_pipeline(model, n_blocks, prompts, switches)
    with torch.no_grad():
        want, ref = run_reference(model, n_blocks, prompts, switches, rope_limit)
    assert len(got) == n_blocks >= 14
    for blk, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == (1, 3, cfg.in_dim, cfg.latent_height, cfg.latent_width)
        err = ((a - b).norm() / b.norm()).item()
        assert err < tol, f"block {blk}: relative error {err}"
    assert got[-1].abs().mean() > 0.1  # not a degenerate stream
    # the calls and the frames each attends to equal the reference's
    assert pipeline_calls(pipe) == expected_calls(ref.attended)
    if rope_limit is not None:
        assert pipe.cache.rope_mode == "slot"
    # the cache holds the reference's keys for the frames it attends to at the end
    cache = pipe.cache
    fs = cfg.frame_seq_len
    last_attended = ref.attended[-1][3]
    assert [cache.slot_frames[i] for i in range(len(last_attended))] == last_attended
    for layer in range(cfg.num_layers):
        for slot, f in enumerate(last_attended):
            k_ref, v_ref = ref.raw_kv[layer][f]
            if cache.rope_mode == "absolute":
                k_ref = ref.rot(k_ref, [f])
            k_got, v_got = (c[layer, :, slot * fs : (slot + 1) * fs] for c in (cache.k, cache.v))
            assert ((k_got - k_ref).norm() / k_ref.norm()).item() < tol
            assert ((v_got - v_ref).norm() / v_ref.norm()).item() < tol


def test_default_trace_matches_reference_table() -> None:
    """Section 3.4: block c attends to sink 0-2 plus frames max(3, 3c-6) .. 3c+2."""
    cfg = tiny(num_layers=1)
    model = random_model(cfg, torch.float64)
    prompts = [torch.randn(1, cfg.text_len, cfg.text_dim, dtype=torch.float64)]
    _, pipe = run_pipeline(model, 20, prompts, {})
    trace = pipe.cache.trace
    assert len(trace) == 20 * 5
    for c in range(20):
        want = [0, 1, 2] + list(range(max(3, 3 * c - 6), 3 * c + 3)) if c else [0, 1, 2]
        for step in range(5):  # 4 denoising calls + the t=0 cache call see the same frames
            assert trace[5 * c + step] == (3 * c, 3, want)
    assert (pipe.cache.global_end, pipe.cache.local_end) == (60, 12)


def test_recache_trace_at_switch() -> None:
    """Section 5.3 example scaled: switch at s=42 recaches frames 30-41; global sink keeps frames 0-2.

    The recache replaces block 13's deferred cache pass; with the sink kept, frames 30-32 (whose keys
    would land in the sink) are not run at all."""
    cfg = tiny(num_layers=1)
    model = random_model(cfg, torch.float64)
    prompts = [torch.randn(1, cfg.text_len, cfg.text_dim, dtype=torch.float64) for _ in range(2)]
    for keep, want_recache, want_after in [
        (True, (33, 9, [0, 1, 2, *range(33, 42)]), [0, 1, 2, *range(36, 45)]),
        (False, (30, 12, list(range(30, 42))), [30, 31, 32, *range(36, 45)]),
    ]:
        _, pipe = run_pipeline(model, 15, prompts, {14: (1, keep)})
        assert pipe.kinds[14 * 5 - 2 : 14 * 5 + 1] == ["denoise", "recache", "denoise"]
        assert pipe.cache.trace[14 * 5 - 1] == want_recache
        assert pipe.cache.trace[14 * 5] == (42, 3, want_after)
        assert (pipe.cache.global_end, pipe.cache.local_end) == (45, 12)


def test_cache_written_in_place() -> None:
    cfg = tiny(num_layers=1)
    model = random_model(cfg, torch.float64)
    pipe = StreamingPipeline(model)
    pipe.begin(3, torch.randn(1, cfg.text_len, cfg.text_dim, dtype=torch.float64))
    ptrs = (pipe.cache.k.data_ptr(), pipe.cache.v.data_ptr())
    for _ in range(6):
        pipe.next_block()
    pipe.switch_prompt(torch.randn(1, cfg.text_len, cfg.text_dim, dtype=torch.float64), global_sink=False)
    pipe.next_block()
    assert (pipe.cache.k.data_ptr(), pipe.cache.v.data_ptr()) == ptrs
    pipe.begin(4, torch.randn(1, cfg.text_len, cfg.text_dim, dtype=torch.float64))  # same batch: reused
    assert (pipe.cache.k.data_ptr(), pipe.cache.v.data_ptr()) == ptrs
    assert pipe.cache.global_end == 0 and not pipe.cache.k.any()
