"""Offline rendering of a prompt schedule to an MP4: the offline twin of the live stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from . import protocol
from .generators.base import Generator
from .schedule import PromptSchedule
from .stream import BlockStream


class ScheduleFileError(ValueError):
    """The schedule file is not a JSON array of valid ``{"timestamp", "prompt"}`` objects."""


def load_schedule_file(path: Path) -> list[tuple[int, str]]:
    """Read and validate a schedule file (the format the director page imports and exports)."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScheduleFileError(f"{path}: cannot read a JSON schedule: {exc}") from None
    return parse_schedule_entries(entries, str(path))


def parse_schedule_entries(
    entries: object, where: str = "schedule", require_initial: bool = True
) -> list[tuple[int, str]]:
    """Validate a decoded schedule with the same rules as ``schedule_prompt``."""
    if not isinstance(entries, list):
        raise ScheduleFileError(f'{where}: expected a JSON array of {{"timestamp": int, "prompt": str}}')
    out: list[tuple[int, str]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) - {"timestamp", "prompt", "frame"}:
            raise ScheduleFileError(f'{where}[{i}]: expected {{"timestamp": int, "prompt": str}}')
        message = {
            "type": "schedule_prompt",
            "data": {"new_prompt": entry.get("prompt"), "timestamp": entry.get("timestamp")},
        }
        parsed = protocol.parse_command(json.dumps(message))
        if isinstance(parsed, protocol.Event):
            raise ScheduleFileError(f"{where}[{i}]: {parsed.data['message'].replace('new_prompt', 'prompt')}")
        out.append((parsed.data["timestamp"], parsed.data["new_prompt"]))
    if require_initial and not any(t == 0 for t, _ in out):
        raise ScheduleFileError(f"{where}: needs a prompt at timestamp 0")
    return out


def render_to_mp4(
    generator: Generator,
    entries: list[tuple[int, str]],
    frames: int,
    out: Path,
    seed: int = 0,
    on_block: Callable[[int, int], None] | None = None,
) -> int:
    """Generate ``frames`` generation frames (rounded up to whole blocks) into an H.264 MP4 at the content rate.

    Returns the number of video frames written (``1 + 4(N - 1)`` for N generation frames).
    ``on_block(frames_done, video_frames_done)`` is called after every block.
    """
    geometry = generator.geometry
    schedule = PromptSchedule(geometry.frames_per_block)
    for timestamp, prompt in entries:
        schedule.put(timestamp, prompt)
    stream = BlockStream(generator, schedule)
    stream.begin(seed)
    written = 0
    rate = Fraction(geometry.content_fps).limit_denominator(1000)
    with av.open(str(out), mode="w") as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = geometry.width, geometry.height, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        while stream.next_frame < frames:
            block = stream.step()
            for image in block.frames:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = written
                container.mux(video.encode(frame))
                written += 1
            if on_block:
                on_block(block.end_frame, written)
        container.mux(video.encode(None))
    generator.reset()
    return written
