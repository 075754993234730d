"""Timesteps, sigmas, sampler updates, time embedding and RoPE against the reference numbers."""

from __future__ import annotations

import math

import torch

from longlive_rtc.model.dit import sinusoidal_embedding
from longlive_rtc.model.rope import RotaryEmbedding, apply_rope, rope_split
from longlive_rtc.model.sampler import DenoisingSampler, FlowMatchSchedule

F32 = torch.float32


def test_schedule_tables() -> None:
    sch = FlowMatchSchedule(shift=5.0)
    assert sch.sigmas.dtype == F32 and sch.sigmas.shape == (1000,)
    assert sch.sigmas[0] == 1.0 and sch.timesteps[0] == 1000.0
    # last entry: unshifted sigma 0.001 -> 5*0.001/1.004
    assert math.isclose(float(sch.sigmas[-1]), 0.005 / 1.004, rel_tol=1e-5)


def test_warped_timesteps_and_sigmas_equal_reference() -> None:
    s = DenoisingSampler()
    want_t = torch.tensor([1000.0, 937.5, 833.3333, 625.0], dtype=F32)
    assert s.timesteps.dtype == F32
    assert torch.equal(s.timesteps, want_t)
    want_sigma = torch.tensor([1.0, 0.9375, 0.8333333, 0.625], dtype=F32).tolist()
    assert s.sigmas == want_sigma
    assert s.num_steps == 4
    # t=0 (the cache pass) looks up the last table entry
    assert s.schedule.index(0.0) == 999


def test_to_x0_is_float64_then_cast() -> None:
    s = DenoisingSampler()
    g = torch.Generator().manual_seed(1)
    flow = torch.randn(2, 3, 4, 5, generator=g).to(torch.bfloat16)
    xt = torch.randn(2, 3, 4, 5, generator=g).to(torch.bfloat16)
    for step, sigma in enumerate([1.0, 0.9375, 0.8333333, 0.625]):
        sigma64 = torch.tensor(sigma, dtype=F32).double()
        want = (xt.double() - sigma64 * flow.double()).to(torch.bfloat16)
        assert torch.equal(s.to_x0(flow, xt, step), want)


def test_renoise_in_float32_like_official_add_noise() -> None:
    s = DenoisingSampler()
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(6, 4, 5, 7, generator=g).to(torch.bfloat16)
    eps = torch.randn(6, 4, 5, 7, generator=g).to(torch.bfloat16)
    for step in (1, 2, 3):
        sigma = torch.full((6, 1, 1, 1), s.sigmas[step], dtype=F32)  # official: float32 [N,1,1,1] table value
        want = ((1 - sigma) * x0 + sigma * eps).type_as(eps)
        got = s.renoise(x0, eps, step)
        assert got.dtype == torch.bfloat16
        assert torch.equal(got, want)
    # float64 inputs stay float64
    x64, e64 = x0.double(), eps.double()
    sigma = torch.tensor(s.sigmas[2], dtype=F32)
    assert torch.equal(s.renoise(x64, e64, 2), (1 - sigma) * x64 + sigma * e64)


def test_sinusoidal_embedding_cos_first_float64() -> None:
    t = torch.tensor([0.0, 625.0, 1000.0])
    emb = sinusoidal_embedding(8, t)
    assert emb.dtype == torch.float64 and emb.shape == (3, 8)
    freqs = [10000 ** (-k / 4) for k in range(4)]
    for i, tv in enumerate(t.tolist()):
        want = [math.cos(tv * f) for f in freqs] + [math.sin(tv * f) for f in freqs]
        assert torch.allclose(emb[i], torch.tensor(want, dtype=torch.float64), atol=1e-12)


def test_rope_split_and_interleaved_rotation() -> None:
    assert rope_split(128) == (22, 21, 21)
    head_dim, h, w = 16, 2, 3
    tp, hp, wp = rope_split(head_dim)
    rope = RotaryEmbedding(head_dim)
    positions = [5, 1030]  # beyond the 1024-entry official table: computed on demand
    freqs = rope.freqs(positions, h, w, torch.device("cpu"))
    assert freqs.shape == (len(positions) * h * w, 1, head_dim // 2)
    x = torch.randn(1, len(positions) * h * w, 2, head_dim, dtype=torch.float64)
    got = apply_rope(x, freqs)
    # explicit: pair j = channels (2j, 2j+1); angle pos * 10000^(-2i/(2*pairs)) for its axis
    want = torch.empty_like(x)
    token = 0
    for f in positions:
        for r in range(h):
            for c in range(w):
                for j in range(head_dim // 2):
                    if j < tp:
                        ang = f * 10000 ** (-2 * j / (2 * tp))
                    elif j < tp + hp:
                        ang = r * 10000 ** (-2 * (j - tp) / (2 * hp))
                    else:
                        ang = c * 10000 ** (-2 * (j - tp - hp) / (2 * wp))
                    a, b = x[0, token, :, 2 * j], x[0, token, :, 2 * j + 1]
                    want[0, token, :, 2 * j] = a * math.cos(ang) - b * math.sin(ang)
                    want[0, token, :, 2 * j + 1] = a * math.sin(ang) + b * math.cos(ang)
                token += 1
    assert torch.allclose(got, want, atol=1e-9)
    # rotations are unitary and invertible by the conjugate
    assert torch.allclose(apply_rope(got, freqs.conj()), x, atol=1e-12)
