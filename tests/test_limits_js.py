"""The pages' limits and geometry, evaluated in Node from signaling/static/js/protocol.js, are the server's."""

from __future__ import annotations

from pathlib import Path

from longlive_rtc import protocol
from longlive_rtc.generators.base import Geometry
from longlive_rtc.schedule import MAX_BLEND_BLOCKS

from .page_modules import run_module_script

SCRIPT = """
import { DEFAULT_GEOMETRY, LIMITS, Timebase } from "./js/protocol.js";

const timebase = new Timebase();
const blocks = [0, 1, 2, 3, 4, 5, 6, 7].map((frame) => timebase.blockStart(frame));
const videoFrames = [0, 1, 2, 3, 6].map((frame) => timebase.videoFrame(frame));
console.log(JSON.stringify({ LIMITS, DEFAULT_GEOMETRY, blocks, videoFrames }));
"""


def test_the_pages_limits_and_geometry_are_the_python_constants(tmp_path: Path) -> None:
    pages = run_module_script(tmp_path, SCRIPT)
    assert pages["LIMITS"] == {
        "promptChars": protocol.MAX_PROMPT_CHARS,
        "timestamp": protocol.MAX_TIMESTAMP,
        "seed": protocol.MAX_SEED,
        "blendBlocks": MAX_BLEND_BLOCKS,
    }
    assert pages["DEFAULT_GEOMETRY"] == Geometry().to_dict()


def test_the_pages_time_units_follow_the_python_geometry(tmp_path: Path) -> None:
    from longlive_rtc.schedule import block_start_at_or_after

    pages = run_module_script(tmp_path, SCRIPT)
    assert pages["blocks"] == [block_start_at_or_after(frame) for frame in range(8)]
    assert pages["videoFrames"] == [Geometry().video_frames_before(frame) for frame in (0, 1, 2, 3, 6)]
