"""`longlive-rtc generate`: a schedule rendered offline to an MP4, checked frame by frame."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from longlive_rtc.cli import main
from longlive_rtc.generators.stamp import read_stamp


def test_generate_three_prompts_to_mp4(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.json"
    schedule.write_text(json.dumps([
        {"timestamp": 0, "prompt": "a red fox in the snow"},
        {"timestamp": 5, "prompt": "the fox reaches a blue lake"},
        {"timestamp": 12, "prompt": "night falls, green aurora"},
    ]))  # fmt: skip
    out = tmp_path / "video.mp4"
    assert main(["generate", "--schedule", str(schedule), "--frames", "16", "--out", str(out), "--seed", "3"]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 16
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 1 + 4 * (18 - 1)  # 16 frames round up to 18 (6 blocks)
    assert frames[0].shape == (480, 832, 3)
    stamps = [read_stamp(f) for f in frames]
    assert all(stamps), "every frame carries a readable stamp"
    assert [s.frame for s in stamps] == list(range(len(frames)))
    # prompt 1 (t=5) applies at block 6 = video frame 21; prompt 2 (t=12) at block 12 = video frame 45
    expected = [0] * 21 + [1] * 24 + [2] * (len(frames) - 45)
    assert [s.prompt for s in stamps] == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "cannot read"),
        ('{"timestamp": 0}', "JSON array"),
        ('[{"timestamp": 3, "prompt": "x"}]', "timestamp 0"),
        ('[{"timestamp": -1, "prompt": "x"}]', "timestamp"),
        ('[{"timestamp": 0, "prompt": ""}]', "prompt"),
        ('[{"timestamp": 0, "prompt": "x", "colour": 1}]', "expected"),
    ],
)
def test_generate_rejects_bad_schedules(tmp_path: Path, capsys, content: str, message: str) -> None:
    schedule = tmp_path / "bad.json"
    schedule.write_text(content)
    code = main(["generate", "--schedule", str(schedule), "--frames", "3", "--out", str(tmp_path / "x.mp4")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()
