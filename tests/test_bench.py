"""``longlive-rtc bench`` itself on tiny random configs (CPU): several devices, the decoder moved, the step hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longlive_rtc.cli import main
from longlive_rtc.timing import StageTimer

from .test_longlive_generator import tiny_longlive


def test_bench_places_sessions_over_devices_and_moves_the_decoder(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--tiny", "--devices", "cpu,cpu", "--sessions", "2", "3", "--decoders", "tae",
            "--decoder-device", "cpu", "--blocks", "8", "--runs", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["devices"] == ["cpu", "cpu"] and set(results["configs"]) == {
        "tae", "tae decoder on cpu", "tae x2", "tae x3"
    }  # fmt: skip
    single, moved = results["configs"]["tae"], results["configs"]["tae decoder on cpu"]
    assert single["dit_forward_ms"] > 0 and single["decode_ms"] > 0 and single["first_block_frames"] == 9
    assert moved["same_device_fps"] == single["fps"] and moved["fps_vs_same_device"] > 0
    two, three = results["configs"]["tae x2"], results["configs"]["tae x3"]
    assert [s["device"] for s in two["per_session"]] == ["cpu#0", "cpu#1"]  # the most free slots first
    assert {label: d["sessions"] for label, d in three["per_device"].items()} == {"cpu#0": 2, "cpu#1": 1}
    assert all(s["fps"] > 0 for s in three["per_session"]) and three["deadline_misses"] >= 0
    assert sum(d["aggregate_fps"] for d in three["per_device"].values()) == pytest.approx(three["aggregate_fps"])


def test_bench_refuses_the_full_size_model_on_the_cpu() -> None:
    with pytest.raises(SystemExit, match="--tiny"):
        main(["bench", "--devices", "cpu", "--runs", "1"])


def test_bench_refuses_cuda_graphs_off_cuda_with_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="--cuda-graphs on: CUDA graphs need a CUDA device"):
        main(["bench", "--tiny", "--devices", "cpu", "--cuda-graphs", "on", "--decoders", "tae", "--runs", "1"])


def test_step_hook_times_every_model_call_and_changes_nothing() -> None:
    def stream(timed: bool) -> tuple[list[torch.Tensor], StageTimer]:
        generator = tiny_longlive("tae")
        timer = StageTimer()
        if timed:
            timer.attach(generator.pipeline)
        pipeline = generator.pipeline
        pipeline.begin(3, generator.encode_prompt("a"))
        latents = []
        for block in range(3):
            timer.tag = block
            if block == 2:
                pipeline.switch_prompt(generator.encode_prompt("b"))
            latents.append(pipeline.next_block())
        return latents, timer

    parent = tiny_longlive("tae").pipeline
    StageTimer().attach(parent)
    assert parent.step_hook is not None and parent.fork().step_hook is None  # a session's fork is not timed
    plain, _ = stream(False)
    timed, timer = stream(True)
    assert all(torch.equal(a, b) for a, b in zip(plain, timed, strict=True))
    assert len(timer.ms("denoise")) == 3 * 4 and len(timer.ms("recache")) == 1
    assert len(timer.ms("cache")) == 1  # block 0's deferred pass; block 1's is replaced by the recache
    assert len(timer.ms("denoise", lambda tag: tag == 2)) == 4 and all(ms >= 0 for ms in timer.ms("denoise"))
