"""The LongLive generator behind the streaming engine, on tiny random models (CPU), and full size on a GPU."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from longlive_rtc.generators.base import Generator
from longlive_rtc.generators.longlive import LongLiveGenerator, RandomPromptEncoder, warm_up
from longlive_rtc.model import CausalWanModel, StreamingDecoder, StreamingPipeline, tiny
from longlive_rtc.model.random_init import randomize_
from longlive_rtc.model.tae import TAEConfig, TAEDecoder
from longlive_rtc.model.vae import VAEConfig, WanVAEDecoder
from longlive_rtc.session import Role, Session

from .support import EventLog


def tiny_longlive(decoder: str = "wan") -> LongLiveGenerator:
    torch.manual_seed(0)
    config = tiny().with_(in_dim=16, out_dim=16, latent_height=4, latent_width=6)
    model = randomize_(CausalWanModel(config).float().eval(), std=0.2)  # every layer random: prompts matter
    frames = WanVAEDecoder(VAEConfig.tiny()) if decoder == "wan" else TAEDecoder(TAEConfig.tiny())
    encoder = RandomPromptEncoder(torch.device("cpu"), torch.float32, config.text_len, config.text_dim)
    return LongLiveGenerator(StreamingPipeline(model), encoder, StreamingDecoder(frames.float().eval()))


def four_blocks_with_a_switch(generator: LongLiveGenerator, frame_shape: tuple[int, int, int]) -> list[int]:
    """Stream 4 blocks (a prompt switch before the third); check each block's frames; return their counts."""
    generator.begin(1, generator.encode_prompt("a"))
    sizes = []
    for i in range(4):
        if i == 2:
            generator.switch_prompt(generator.encode_prompt("b"))
        block = generator.next_block()
        assert block.dtype == np.uint8 and block.shape[1:] == frame_shape
        sizes.append(len(block))
    return sizes


@pytest.mark.parametrize("decoder", ["wan", "tae"])
def test_blocks_have_the_stream_geometry(decoder: str) -> None:
    generator = tiny_longlive(decoder)
    assert isinstance(generator, Generator)
    assert (generator.geometry.width, generator.geometry.height) == (48, 32)
    assert four_blocks_with_a_switch(generator, (32, 48, 3)) == [9, 12, 12, 12]
    assert generator.pipeline.current_start_frame == 12
    generator.reset()
    assert generator.pipeline.cache is None


def test_same_seed_same_video_and_a_switch_changes_it() -> None:
    def run(switch: bool) -> np.ndarray:
        generator = tiny_longlive()
        generator.begin(7, generator.encode_prompt("a"))
        blocks = [generator.next_block()]
        if switch:
            generator.switch_prompt(generator.encode_prompt("something else"))
        blocks.append(generator.next_block())
        return np.concatenate(blocks)

    a, b, c = run(False), run(False), run(True)
    assert np.array_equal(a, b)
    assert np.array_equal(a[:9], c[:9]) and not np.array_equal(a[9:], c[9:])


async def test_streams_through_the_engine_with_scheduled_switches() -> None:
    session = Session("ll", tiny_longlive("tae"))
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    replies: list = []
    for t, prompt in [(0, "first"), (3, "second"), (7, "third")]:
        message = {"type": "schedule_prompt", "data": {"new_prompt": prompt, "timestamp": t}}
        session.handle(json.dumps(message), Role.CONTROLLER, replies.append)
    session.handle('{"type": "start"}', Role.CONTROLLER, replies.append)
    assert all(r.type == "ack" for r in replies)
    try:
        frames = 0
        for _ in range(2000):
            item = session.engine.next_frame()
            frames += item.image is not None and item.index is not None
            if frames >= 9 + 12 * 3:
                break
            await asyncio.sleep(0.005)
        applied = [(e.data["frame"], e.data["prompt"]) for e in log.of("prompt_applied")]
        assert applied[:3] == [(0, "first"), (3, "second"), (9, "third")]
        assert [e.data["video_frame"] for e in log.of("progress")][:3] == [9, 21, 33]
    finally:
        session.close()


@pytest.mark.gpu
def test_full_size_random_weights_stream_on_gpu() -> None:
    from longlive_rtc.generators.longlive import random_longlive

    generator = random_longlive("cuda", "tae")
    assert four_blocks_with_a_switch(generator, (480, 832, 3)) == [9, 12, 12, 12]


def test_warm_up_meets_every_recache_shape_and_slot_positions() -> None:
    """Warm-up must run every shape a live stream meets later (compiled code is shape-specialised)."""
    generator = tiny_longlive("tae")
    calls: list[tuple[str, int, bool]] = []
    step = generator.pipeline._step

    def record(kind, x, t, start, **kw):
        calls.append((kind, x.shape[1], generator.pipeline.cache.rope_mode == "slot"))
        return step(kind, x, t, start, **kw)

    generator.pipeline._step = record
    lines: list[str] = []
    assert warm_up(generator, report=lines.append) > 0
    recaches = {(n, slot) for kind, n, slot in calls if kind == "recache"}
    assert recaches == {(6, False), (12, False), (9, False), (9, True)}  # from the start, steady, slot RoPE
    assert {(kind, slot) for kind, _, slot in calls} >= {("denoise", True), ("cache", True), ("cache", False)}
    assert len(lines) == 9 and generator.pipeline.cache is None  # progress per block; state dropped after
