"""The JSON beside a recording or clip: the schedule as it went on air, the seed and the settings, in the
shape ``longlive-rtc generate --schedule`` reads, so the same prompts come at the same frames again."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

from ..generators.base import TEMPORAL_STRIDE
from .encoder import EncodedPacket


def generation_frame(video_frame: int) -> int:
    """The generation (latent) frame a video frame was decoded from: 0 -> 0, 4k-3..4k -> k."""
    return 0 if video_frame <= 0 else (video_frame + TEMPORAL_STRIDE - 1) // TEMPORAL_STRIDE


def as_applied(entries: list[dict[str, Any]], frames: int) -> list[dict[str, Any]]:
    """The prompts that took effect before generation frame ``frames``, each timestamped at its block start
    (where several apply at one block, the one in effect: the latest timestamp), so a replay applies each
    where it applied live, however late it was scheduled."""
    in_effect: dict[int, dict[str, Any]] = {}
    for entry in entries:
        frame = entry["frame"]
        if frame < frames and (frame not in in_effect or entry["timestamp"] > in_effect[frame]["timestamp"]):
            in_effect[frame] = entry
    out = []
    for frame in sorted(in_effect):
        entry = {"timestamp": frame, "prompt": in_effect[frame]["prompt"]}
        if "transition" in in_effect[frame]:
            entry["transition"] = in_effect[frame]["transition"]
        out.append(entry)
    return out


def replay_document(
    description: dict[str, Any], video_frames: tuple[int | None, int | None], mp4: Path, **recording: Any
) -> dict[str, Any]:
    """The sidecar of ``mp4``.

    ``description`` is the session's: ``generator``, ``geometry``, ``fps``, ``seed`` (of the run on air)
    and ``schedule`` (its entries as ``state`` lists them, each with the block ``frame`` where it applies).
    ``video_frames`` are the first and last generated video frames the file shows (None: idle card only).
    """
    geometry = description["geometry"]
    first, last = video_frames
    frames = generation_frame(last) + 1 if last is not None else 0
    schedule = as_applied(description["schedule"], frames)
    document: dict[str, Any] = {
        "schedule": schedule,
        "seed": description["seed"],
        "frames": frames,
        "settings": {
            "generator": description["generator"],
            "width": geometry["width"],
            "height": geometry["height"],
            "fps": description["fps"],
            "content_fps": geometry.get("content_fps"),
        },  # fmt: skip
        "video_frames": {"first": first, "last": last},
        "recording": {"file": mp4.name, **recording},
        "replay": None,
    }
    if schedule and schedule[0]["timestamp"] == 0:
        args = [
            "longlive-rtc", "generate", "--schedule", mp4.with_suffix(".json").name, "--frames", str(frames),
            "--seed", str(description["seed"]), "--generator", description["generator"],
            "--width", str(geometry["width"]), "--height", str(geometry["height"]),
            "--out", mp4.stem + "-replay.mp4",
        ]  # fmt: skip
        document["replay"] = shlex.join(args)
    return document


def write_document(path: Path, document: dict[str, Any]) -> int:
    """Write the JSON atomically (a reader never sees half of it); returns its size in bytes."""
    data = json.dumps(document, indent=1).encode("utf-8")
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return len(data)


class ShownFrames:
    """Which generated video frames a file shows: the first and last of the run on air at its end."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None
        self.runs = 0  # runs seen (a reset and start mid-file begins another; the replay is of the last)

    def see(self, packet: EncodedPacket) -> None:
        frame = packet.video_frame
        if frame is None:
            return
        if self.last is None or frame < self.last:
            self.first = frame
            self.runs += 1
        self.last = frame

    @property
    def range(self) -> tuple[int | None, int | None]:
        return self.first, self.last
