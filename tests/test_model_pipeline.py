"""Streaming pipeline behaviour: determinism, batching, noise sources, RoPE range handling, errors."""

from __future__ import annotations

import pytest
import torch

from longlive_rtc.model import CausalWanModel, tiny
from longlive_rtc.model.noise import OfficialNoise, SeededNoise
from longlive_rtc.model.pipeline import StreamingPipeline
from longlive_rtc.model.random_init import randomize_

CFG = tiny()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> CausalWanModel:
    return randomize_(CausalWanModel(CFG).double(), std=0.25, norm_std=0.25)


def prompt(seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, CFG.text_len, CFG.text_dim, generator=g, dtype=torch.float64)


def stream(pipe: StreamingPipeline, seed, prompts: list[torch.Tensor], n_blocks: int = 8) -> torch.Tensor:
    """Blocks with switches at blocks 3 (global sink) and 6 (no global sink); returns [B, frames, ...]."""
    pipe.begin(seed, prompts[0])
    out = []
    for blk in range(n_blocks):
        if blk == 3:
            pipe.switch_prompt(prompts[1])
        if blk == 6:
            pipe.switch_prompt(prompts[2], global_sink=False)
        out.append(pipe.next_block())
    return torch.cat(out, dim=1)


def test_same_seed_same_stream_and_different_seed_differs(model) -> None:
    pipe = StreamingPipeline(model)
    prompts = [prompt(i) for i in range(3)]
    a = stream(pipe, 11, prompts)
    b = stream(pipe, 11, prompts)
    c = stream(pipe, 12, prompts)
    assert a.shape == (1, 24, CFG.in_dim, CFG.latent_height, CFG.latent_width)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_batch_of_two_equals_two_single_runs(model) -> None:
    pipe = StreamingPipeline(model)
    p0 = [prompt(i) for i in range(3)]
    p1 = [prompt(10 + i) for i in range(3)]
    single0 = stream(pipe, 5, p0)
    single1 = stream(pipe, 9, p1)
    batched = stream(pipe, [5, 9], [torch.cat([a, b]) for a, b in zip(p0, p1, strict=True)])
    assert batched.shape[0] == 2
    assert torch.allclose(batched[0:1], single0, rtol=0, atol=1e-12)
    assert torch.allclose(batched[1:2], single1, rtol=0, atol=1e-12)
    # int seed for a batch means seed + i per sample
    batched_int = stream(pipe, 5, [torch.cat([a, a]) for a in p0], n_blocks=2)
    assert torch.allclose(batched_int[0:1], single0[:, :6], atol=1e-12)
    assert not torch.allclose(batched_int[1:2], single0[:, :6])


def test_official_noise_draw_order() -> None:
    src = OfficialNoise(num_output_frames=6)
    src.reset([3], torch.device("cpu"))
    shape = (1, 3, 4, 2, 2)
    blocks = [src.block_noise(shape, torch.float32)]
    steps = [src.step_noise(shape, torch.float32) for _ in range(3)]
    blocks.append(src.block_noise(shape, torch.float32))
    g = torch.Generator().manual_seed(3)
    full = torch.randn(1, 6, 4, 2, 2, generator=g)
    assert torch.equal(torch.cat(blocks, 1), full)
    for s in steps:
        assert torch.equal(s, torch.randn(3, 4, 2, 2, generator=g).unsqueeze(0))
    with pytest.raises(RuntimeError):
        src.block_noise(shape, torch.float32)


def test_seeded_noise_is_per_sample() -> None:
    src = SeededNoise()
    src.reset([1, 2], torch.device("cpu"))
    both = src.block_noise((2, 3, 4), torch.float32)
    src.reset([2], torch.device("cpu"))
    assert torch.equal(src.block_noise((1, 3, 4), torch.float32), both[1:])


def test_replaced_noise_source_is_used(model) -> None:
    class Zeros:
        def reset(self, seeds, device):
            self.n = 0

        def block_noise(self, shape, dtype):
            self.n += 1
            return torch.zeros(shape, dtype=dtype)

        step_noise = block_noise

    src = Zeros()
    pipe = StreamingPipeline(model, noise=src)
    pipe.begin(0, prompt(0))
    pipe.next_block()
    pipe.next_block()
    assert src.n == 8  # 1 initial + 3 re-noising draws per block


def test_rope_limit_switches_to_slot_mode_or_stays_absolute(model) -> None:
    short = CausalWanModel(CFG.with_(rope_max_frames=9)).double()
    short.load_state_dict(model.state_dict())
    slot = StreamingPipeline(short)
    absolute = StreamingPipeline(short, beyond_rope_limit="absolute")
    for pipe in (slot, absolute):
        pipe.begin(1, prompt(0))
        for _ in range(5):
            pipe.next_block()
    assert slot.cache.rope_mode == "slot" and absolute.cache.rope_mode == "absolute"
    assert slot.current_start_frame == absolute.current_start_frame == 15


def test_switch_before_first_block_and_errors(model) -> None:
    pipe = StreamingPipeline(model)
    with pytest.raises(RuntimeError):
        pipe.next_block()
    pipe.begin(0, prompt(0))
    pipe.switch_prompt(prompt(1))  # at frame 0: only the prompt changes
    assert pipe.cache.global_end == 0
    first = pipe.next_block()
    pipe.begin(0, prompt(1))
    assert torch.equal(pipe.next_block(), first)
    with pytest.raises(ValueError):
        pipe.switch_prompt(prompt(1, batch=2))
    with pytest.raises(ValueError):
        pipe.begin([1, 2], prompt(0))
    pipe.end()
    with pytest.raises(RuntimeError):
        pipe.next_block()
