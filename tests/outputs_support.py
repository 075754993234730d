"""Helpers for the outputs tests: on-air frames from the synthetic generator, ffprobe, stamps of a file."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from longlive_rtc.generators import Geometry, SyntheticGenerator
from longlive_rtc.generators.stamp import Stamp, read_stamp
from longlive_rtc.outputs import OnAirFrame
from longlive_rtc.rtc.track import to_yuv420p
from longlive_rtc.schedule import PromptSchedule
from longlive_rtc.stream import BlockStream

GEOMETRY = Geometry(width=256, height=160)
STEP = 6000  # 90 kHz ticks per frame at 15 FPS

needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs Debian's ffmpeg (ffprobe)")


def synthetic_frames(count: int, prompts: dict[int, str] | None = None, seed: int = 3) -> list[OnAirFrame]:
    """``count`` on-air frames of a synthetic stream (video frames 0.., pts 0, 6000, ...)."""
    schedule = PromptSchedule(GEOMETRY.frames_per_block)
    for timestamp, prompt in (prompts or {0: "a red fox in the snow"}).items():
        schedule.put(timestamp, prompt)
    stream = BlockStream(SyntheticGenerator(GEOMETRY), schedule)
    stream.begin(seed)
    frames: list[OnAirFrame] = []
    while len(frames) < count:
        block = stream.step()
        for i, image in enumerate(block.frames[: count - len(frames)]):
            index = block.first_video_frame + i
            frames.append(OnAirFrame(to_yuv420p(image), len(frames) * STEP, index, False, time.time()))
    return frames


def feed(sink, frames: list[OnAirFrame], encoder=None, ahead: int = 10) -> None:
    """Hand frames to ``sink`` as fast as ``encoder`` takes them (no more than ``ahead`` waiting)."""
    for frame in frames:
        if encoder is not None:
            deadline = time.monotonic() + 30
            while encoder.frames_in - encoder.frames_encoded - encoder.dropped >= ahead:
                assert time.monotonic() < deadline, "the encoder made no progress"
                time.sleep(0.002)
        sink.on_air(OnAirFrame(frame.planes, frame.pts, frame.video_frame, frame.repeat, time.time()))


def wait_encoded(encoder, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while encoder.frames_encoded + encoder.dropped + encoder.unwatched < count:
        assert time.monotonic() < deadline, f"only {encoder.frames_encoded} of {count} frames encoded"
        time.sleep(0.01)


def ffprobe(path: Path | str) -> dict:
    """The video stream as ffprobe sees it, frames counted by decoding."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,duration:format=duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(result.stdout)
    stream = data["streams"][0]
    stream["format_duration"] = float(data.get("format", {}).get("duration", "nan"))
    stream["nb_read_frames"] = int(stream["nb_read_frames"])
    return stream


def stamps(path: Path | str) -> list[Stamp | None]:
    """The stamp of every decoded frame of a video file, in order."""
    out: list[Stamp | None] = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            out.append(read_stamp(np.asarray(frame.to_ndarray(format="gray"))))
    return out
