"""Offline rendering of a prompt schedule to an MP4: the offline twin of the live stream."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from .generators.base import Generator
from .schedule import DEFAULT_TRANSITION, PromptSchedule, Transition
from .stream import BlockStream

Entry = tuple[int, str] | tuple[int, str, Transition]


def render_to_mp4(
    generator: Generator,
    entries: list[Entry],
    frames: int,
    out: Path,
    seed: int = 0,
    on_block: Callable[[int, int], None] | None = None,
) -> int:
    """Generate ``frames`` generation frames (rounded up to whole blocks) into an H.264 MP4 at the content rate.

    ``entries`` are ``(timestamp, prompt)`` or ``(timestamp, prompt, transition)`` (a schedule file's entries).
    Returns the number of video frames written (``1 + 4(N - 1)`` for N generation frames).
    ``on_block(frames_done, video_frames_done)`` is called after every block.
    """
    geometry = generator.geometry
    schedule = PromptSchedule(geometry.frames_per_block)
    for timestamp, prompt, *transition in entries:
        schedule.put(timestamp, prompt, transition[0] if transition else DEFAULT_TRANSITION)
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
