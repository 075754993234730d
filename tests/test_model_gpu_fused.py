"""GPU: the optimised pipeline (fused, compiled) against the plain one on the same random full-size weights."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def stream(generator, prompts) -> list[torch.Tensor]:
    generator.begin(3, prompts[0])
    out = []
    for i in range(5):
        if i == 3:
            generator.pipeline.switch_prompt(prompts[1])
        out.append(generator.pipeline.next_block().float())
    generator.reset()
    return out


def test_compiled_pipeline_matches_the_plain_one_within_bf16_tolerance() -> None:
    from longlive_rtc.generators.longlive import enable_compile, random_longlive
    from longlive_rtc.model import fused

    generator = random_longlive("cuda", "tae")
    prompts = [generator.encode_prompt("a"), generator.encode_prompt("b")]
    plain = stream(generator, prompts)
    enable_compile(generator)
    try:
        optimised = stream(generator, prompts)
    finally:
        fused.enable(False)
    for block, (a, b) in enumerate(zip(plain, optimised, strict=True)):
        relative = (a - b).norm() / a.norm()
        assert relative < 3e-2, (block, float(relative))
