"""CUDA graphs of the DiT's calls (model/graphs.py), their bookkeeping checked on the CPU.

CUDA graphs do not run on a CPU. Here a "capture" records nothing and its replay runs the call again on the
graph's *static* inputs (what a CUDA graph's replay does): so a stream replayed this way equals the eager one
only if every input that changes between calls of a shape (latents, timesteps, rotations, the prompt's K/V)
reaches the static inputs before each replay. ``test_model_gpu_graphs.py`` replays real graphs on a GPU.
"""

from __future__ import annotations

import logging

import pytest
import torch

from longlive_rtc.model import CausalWanModel, StreamingPipeline, tiny
from longlive_rtc.model.graphs import CAPTURE_AFTER, ForwardGraphs
from longlive_rtc.model.random_init import randomize_

from .support import rerun

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model() -> CausalWanModel:
    cfg = tiny(num_layers=2).with_(rope_max_frames=30)  # slot RoPE from frame 30 on (block 10)
    return randomize_(CausalWanModel(cfg).float(), std=0.25, norm_std=0.25).eval()


def prompt(model: CausalWanModel, seed: int, batch: int = 1) -> torch.Tensor:
    cfg = model.config
    return torch.randn(batch, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(seed))


def stream(pipeline: StreamingPipeline, model: CausalWanModel) -> list[torch.Tensor]:
    """Two runs of one stream: switches (sink kept and not), a cut, a blend step, slot RoPE past frame 30;
    then, after `end`, another run."""
    out = []
    pipeline.begin(7, prompt(model, 0))
    for i in range(14):
        if i in (5, 8):
            pipeline.switch_prompt(prompt(model, i))
        if i == 9:
            pipeline.switch_prompt(prompt(model, i), global_sink=False)
        if i == 11:
            pipeline.set_prompt(prompt(model, i))
        if i == 12:
            pipeline.cut(prompt(model, i))
        out.append(pipeline.next_block().clone())
    pipeline.flush()
    pipeline.end()
    pipeline.begin(8, prompt(model, 20))
    out += [pipeline.next_block().clone() for _ in range(7)]
    return out


def test_replayed_calls_equal_the_eager_ones_through_switches_cuts_slot_positions_and_a_new_run() -> None:
    model = tiny_model()
    want = stream(StreamingPipeline(model), model)
    assert model.config.local_attn_size == 12, "the steady window this test means"

    pipeline = StreamingPipeline(model)
    graphs = pipeline.graphs = ForwardGraphs(model, capture=rerun)
    got = stream(pipeline, model)
    assert len(got) == len(want)
    for block, (a, b) in enumerate(zip(got, want, strict=True)):
        assert torch.equal(a, b), f"block {block} differs from the eager stream"
    # steady absolute mode (roll, rewrite, cache pass), steady slot mode, and the second run's again
    assert graphs.captures >= 6, graphs.captures
    assert graphs.replays > 20, graphs.replays
    assert graphs.enabled


def test_a_shape_is_captured_on_its_call_after_capture_after_eager_ones_with_the_same_layouts(monkeypatch) -> None:
    """The replays' inputs have the eager calls' strides, so compiled code meets the layouts it was made for."""
    model = tiny_model()
    layouts = []
    run_planned = model.run_planned

    def recorded(x, t, context, cache, plan, freqs, compute_output=True):
        context_layouts = [k.stride() for k, _ in context.kv]
        layouts.append((x.is_contiguous(), x.stride(), t.stride(), freqs.query.stride(), context_layouts))
        return run_planned(x, t, context, cache, plan, freqs, compute_output)

    monkeypatch.setattr(model, "run_planned", recorded)
    pipeline = StreamingPipeline(model)
    graphs = pipeline.graphs = ForwardGraphs(model, capture=rerun)
    pipeline.begin(0, prompt(model, 0))
    pipeline.next_block()  # block 0: 4 calls of one shape (each writes slots 0-2: the take's first frames)
    assert graphs.captures == 1 and graphs.replays == 4 - CAPTURE_AFTER
    assert len(layouts) == 4 and all(layout == layouts[0] for layout in layouts), layouts
    assert not layouts[0][0], "the DiT's input is a transposed view: a contiguous copy would have other strides"
    pipeline.begin(1, prompt(model, 1))  # a new stream in the same cache buffers: the graphs go on
    pipeline.next_block()
    assert graphs.captures == 1 and graphs.replays == 4 - CAPTURE_AFTER + 4
    pipeline.end()
    assert graphs._graphs and graphs._context_source is None, "end() keeps the graphs, not the prompt"
    pipeline.begin(2, prompt(model, 2))  # here the old buffers are still referenced (by the CPU "graph"): new ones
    pipeline.next_block()
    assert graphs.captures == 2 and graphs.replays == 2 * (4 - CAPTURE_AFTER) + 4, "new buffers: captured anew"


def test_a_capture_that_fails_turns_graphs_off_and_the_stream_goes_on_eagerly(caplog) -> None:
    model = tiny_model()
    want = stream(StreamingPipeline(model), model)

    def refuse(fn, pool, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    pipeline = StreamingPipeline(model)
    graphs = pipeline.graphs = ForwardGraphs(model, capture=refuse)
    with caplog.at_level(logging.WARNING, logger="longlive_rtc.model.graphs"):
        got = stream(pipeline, model)
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert not graphs.enabled and graphs.captures == 0
    assert "CUDA graphs off for this stream" in caplog.text and "not permitted" in caplog.text


def test_a_fork_has_its_own_graphs_over_the_same_pool_and_new_cache_buffers_drop_them() -> None:
    model = tiny_model()
    pipeline = StreamingPipeline(model)
    pool = object()
    pipeline.graphs = ForwardGraphs(model, capture=rerun, pool=pool)
    pipeline.begin(0, prompt(model, 0))
    for _ in range(5):
        pipeline.next_block()
    assert pipeline.graphs.captures > 0

    other = pipeline.fork()
    assert other.graphs is not pipeline.graphs and other.graphs.pool is pool and other.graphs.captures == 0

    pipeline.begin(0, prompt(model, 1, batch=2))  # a batch of two: new cache buffers
    pipeline.next_block()
    assert len(pipeline.graphs._graphs) <= 1, "the graphs of the old buffers are gone"
    plain = StreamingPipeline(model)
    plain.begin(0, prompt(model, 1, batch=2))
    pipeline.begin(0, prompt(model, 1, batch=2))
    for _ in range(6):
        assert torch.equal(pipeline.next_block(), plain.next_block())
