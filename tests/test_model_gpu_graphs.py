"""GPU: the DiT's calls replayed as CUDA graphs (model/graphs.py) against the same calls run eagerly, full size."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu

BLOCKS = 9  # the window is full from block 4: each steady shape is captured and then replayed


def stream(pipeline, prompts, seed: int = 3) -> list[torch.Tensor]:
    """One stream with the steady-state recache (sink kept, 9 frames) at block 6."""
    pipeline.begin(seed, prompts[0])
    out = []
    for i in range(BLOCKS):
        if i == 6:
            pipeline.switch_prompt(prompts[1])
        out.append(pipeline.next_block().float())
    pipeline.end()
    return out


@pytest.fixture(scope="module")
def compiled():
    from longlive_rtc.generators.longlive import enable_compile, random_longlive

    generator = random_longlive("cuda", "tae")
    enable_compile(generator)
    prompts = [generator.encode_prompt("a"), generator.encode_prompt("b")]
    return generator, prompts


def test_replayed_graphs_match_the_compiled_eager_calls(compiled) -> None:
    from longlive_rtc.model.graphs import ForwardGraphs

    generator, prompts = compiled
    pipeline = generator.pipeline
    pipeline.graphs = None
    eager = stream(pipeline, prompts)
    graphs = pipeline.graphs = ForwardGraphs(pipeline.model)
    try:
        replayed = stream(pipeline, prompts)
    finally:
        pipeline.graphs = None
    assert graphs.enabled, "a capture failed (see the warning logged)"
    assert graphs.captures >= 3 and graphs.replays >= 10, (graphs.captures, graphs.replays)
    for block, (a, b) in enumerate(zip(eager, replayed, strict=True)):
        relative = float((a - b).norm() / a.norm())
        assert relative < 1e-2, (block, relative)
    print("bit-identical to the eager calls:", all(torch.equal(a, b) for a, b in zip(eager, replayed, strict=True)))


def test_two_streams_whose_graphs_share_one_pool_equal_each_alone(compiled) -> None:
    """Forks share the model's graph pool: interleaved block by block, each stream equals itself alone."""
    from longlive_rtc.model.graphs import ForwardGraphs

    generator, prompts = compiled
    template = generator.pipeline
    template.graphs = ForwardGraphs(template.model)
    try:
        alone = [stream(template.fork(), prompts, seed) for seed in (3, 4)]
        first, second = template.fork(), template.fork()
        assert first.graphs.pool is second.graphs.pool is template.graphs.pool
        for pipeline, seed in ((first, 3), (second, 4)):
            pipeline.begin(seed, prompts[0])
        together: list[list[torch.Tensor]] = [[], []]
        for i in range(BLOCKS):
            for pipeline, out in zip((first, second), together, strict=True):
                if i == 6:
                    pipeline.switch_prompt(prompts[1])
                out.append(pipeline.next_block().float())
        assert first.graphs.replays > 0 and second.graphs.replays > 0
    finally:
        template.graphs = None
    for mine, theirs in zip(together, alone, strict=True):
        for block, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            assert torch.equal(a, b), block
