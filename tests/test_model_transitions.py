"""Transitions on the LongLive model (tiny random configs, CPU): a cut is a fresh start at its frame, a blend
conditions each block on the documented mix of text embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from longlive_rtc.generators.blend import mix_embeddings
from longlive_rtc.model import CausalWanModel, tiny
from longlive_rtc.model.noise import SeededNoise
from longlive_rtc.model.pipeline import StreamingPipeline
from longlive_rtc.model.random_init import randomize_
from longlive_rtc.schedule import PromptSchedule, Transition
from longlive_rtc.stream import BlockStream

from .test_longlive_generator import tiny_longlive

CFG = tiny()
DRAWS_PER_BLOCK = 4  # the block's noise and 3 re-noisings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> CausalWanModel:
    return randomize_(CausalWanModel(CFG).double(), std=0.25, norm_std=0.25)


def prompt(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, CFG.text_len, CFG.text_dim, generator=g, dtype=torch.float64)


class Recorded(SeededNoise):
    """Seeded noise that keeps every draw, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.draws: list[torch.Tensor] = []

    def _draw(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        x = super()._draw(shape, dtype)
        self.draws.append(x)
        return x

    block_noise = _draw
    step_noise = _draw


class Replayed:
    """Given draws, served in order (whatever the seed)."""

    def __init__(self, draws: list[torch.Tensor]) -> None:
        self.draws = list(draws)

    def reset(self, seeds: Sequence[int], device: torch.device) -> None:
        pass

    def _next(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        x = self.draws.pop(0)
        assert x.shape == shape and x.dtype == dtype
        return x

    block_noise = _next
    step_noise = _next


CUT_BLOCK = 5  # the cut comes before this block (frame 15): the window (12 frames) is full and rolling
SWITCH_AFTER_CUT = 2  # a recache 2 blocks after the cut: it may only re-run the 6 frames since the cut
BLOCKS_AFTER_CUT = 7


def after_cut(pipe: StreamingPipeline) -> torch.Tensor:
    """The blocks from the cut on, with the recache after it; the cache trace is recorded."""
    pipe.cache.trace = []  # type: ignore[union-attr]
    out = []
    for i in range(BLOCKS_AFTER_CUT):
        if i == SWITCH_AFTER_CUT:
            pipe.switch_prompt(prompt(2))
        out.append(pipe.next_block())
    return torch.cat(out, dim=1)


def test_a_cut_equals_a_fresh_start_at_its_frame(model) -> None:
    """Fresh start at frame s := ``begin(seed, prompt, start_frame=s)``: an empty cache whose first block is
    written at absolute RoPE positions s, s+1, s+2 and becomes the sink, later recaches limited to frames >= s,
    fed the same noise the cut stream draws from then on (a cut keeps the run's noise stream)."""
    noise = Recorded()
    cut = StreamingPipeline(model, noise=noise)
    cut.begin(4, prompt(0))
    before = [cut.next_block() for _ in range(CUT_BLOCK)]
    s = cut.current_start_frame
    assert s == 15 and cut.cache.local_end == 12  # type: ignore[union-attr]
    cut.cut(prompt(1))
    assert cut.current_start_frame == s, "the frame counter goes on"
    cut_latents = after_cut(cut)
    tail = noise.draws[CUT_BLOCK * DRAWS_PER_BLOCK :]

    fresh = StreamingPipeline(model, noise=Replayed(tail))
    fresh.begin(4, prompt(1), start_frame=s)
    fresh_latents = after_cut(fresh)
    assert torch.equal(cut_latents, fresh_latents)
    assert cut.cache.trace == fresh.cache.trace  # type: ignore[union-attr]
    first, *_ = cut.cache.trace  # type: ignore[union-attr]
    assert first[:2] == (15, 3) and first[2] == [15, 16, 17], "the first block after the cut sees only itself"
    recache = next(t for t in cut.cache.trace if t[1] > 3)  # type: ignore[union-attr]
    assert recache[0] == s and recache[1] == 6, "the recache re-runs only the frames since the cut"

    # absolute RoPE only sees position differences: the same take begun at frame 0 matches to rounding
    zero = StreamingPipeline(model, noise=Replayed(tail))
    zero.begin(4, prompt(1))
    torch.testing.assert_close(after_cut(zero), cut_latents, rtol=0, atol=1e-9)

    # and the cut did change the stream: without it, the same noise gives other frames
    plain = StreamingPipeline(model, noise=Replayed(noise.draws))
    plain.begin(4, prompt(0))
    kept = [plain.next_block() for _ in range(CUT_BLOCK)]
    assert all(torch.equal(a, b) for a, b in zip(before, kept, strict=True))
    plain.switch_prompt(prompt(1))
    assert not torch.allclose(after_cut(plain), cut_latents)


def test_a_blend_conditions_each_block_on_the_documented_mix(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = tiny_longlive()
    pipe = generator.pipeline
    seen: list[tuple[int, torch.Tensor]] = []  # (frame of the next block, prompt embeds) per encode_context
    encode = pipe.model.encode_context

    def spy(embeds: torch.Tensor):
        seen.append((pipe.current_start_frame, embeds))
        return encode(embeds)

    monkeypatch.setattr(pipe.model, "encode_context", spy)
    recaches = []
    switch = pipe.switch_prompt
    monkeypatch.setattr(pipe, "switch_prompt", lambda e, **kw: (recaches.append(e), switch(e, **kw))[1])

    schedule = PromptSchedule()
    schedule.put(0, "a")
    schedule.put(6, "b", Transition("blend", 3, "linear"))  # blocks 6, 9 (12 is taken over by c)
    schedule.put(12, "c", Transition("blend", 2, "slerp"))  # from the mix in effect at 12: 2/3 of the way to b
    stream = BlockStream(generator, schedule)
    stream.begin(1)
    weights = [stream.step().blend_weight for _ in range(7)]
    assert weights == [None, None, 1 / 3, 2 / 3, 1 / 2, 1.0, None]
    a, b, c = (generator.encode_prompt(p) for p in "abc")
    ab2 = (1 - 2 / 3) * a + (2 / 3) * b
    expected = {
        0: a,
        6: (1 - 1 / 3) * a + (1 / 3) * b,
        9: ab2,
        12: reference_slerp(ab2, c, 0.5),
        15: c,
    }
    assert [frame for frame, _ in seen] == list(expected), "conditioning changes only on the blend's blocks"
    for (frame, embeds), want in zip(seen, expected.values(), strict=True):
        torch.testing.assert_close(embeds, want, rtol=0, atol=1e-6, msg=f"block {frame}")
    assert torch.equal(seen[1][1], expected[6]) and torch.equal(seen[-1][1], c)  # exact: (1 - w) a + w b, then c
    assert recaches == [], "a blend recaches nothing"


def reference_slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Per token vector: direction along the great circle, magnitude linear (docs/protocol.md, Transitions)."""
    out = torch.empty_like(a)
    for index in np.ndindex(*a.shape[:-1]):
        x, y = a[index].double(), b[index].double()
        nx, ny = x.norm(), y.norm()
        theta = torch.arccos(torch.clamp(torch.dot(x / nx, y / ny), -1, 1))
        direction = (torch.sin((1 - w) * theta) * x / nx + torch.sin(w * theta) * y / ny) / torch.sin(theta)
        out[index] = ((1 - w) * nx + w * ny) * direction
    return out


def test_mix_embeddings_ends_and_degenerate_vectors() -> None:
    a, b = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    for curve in ("linear", "slerp"):
        assert mix_embeddings(a, b, 0.0, curve) is a and mix_embeddings(a, b, 1.0, curve) is b
    zero = torch.zeros_like(a)
    torch.testing.assert_close(mix_embeddings(zero, b, 0.25, "slerp"), 0.25 * b)  # padding: linear
    torch.testing.assert_close(mix_embeddings(a, 3 * a, 0.5, "slerp"), 2 * a)  # parallel: linear
    half = mix_embeddings(a.double(), b.double(), 0.5, "slerp")
    torch.testing.assert_close(half, reference_slerp(a.double(), b.double(), 0.5))
    with pytest.raises(ValueError):
        mix_embeddings(a, b, 0.5, "cubic")
