"""Schedule files: the ``[{"timestamp", "prompt", "transition"?}]`` JSON that ``generate`` reads, the director
page imports and exports, and ``POST /sessions`` takes, validated with the rules of ``schedule_prompt``
(entries as ``state`` lists them: ``frame`` is ignored, ``transition`` absent means the default recache)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from . import protocol
from .schedule import DEFAULT_TRANSITION, Transition


class FileEntry(NamedTuple):
    """One validated entry of a schedule file."""

    timestamp: int
    prompt: str
    transition: Transition = DEFAULT_TRANSITION

    def command(self) -> dict[str, Any]:
        """The ``schedule_prompt`` message that schedules this entry."""
        data: dict[str, Any] = {"new_prompt": self.prompt, "timestamp": self.timestamp}
        if self.transition != DEFAULT_TRANSITION:
            data["transition"] = self.transition.to_dict()
        return {"type": "schedule_prompt", "data": data}


class ScheduleFileError(ValueError):
    """The schedule file is not a JSON array of valid ``{"timestamp", "prompt"}`` objects."""


def load_schedule_file(path: Path) -> list[FileEntry]:
    """Read and validate a schedule file: the director page's export, or the JSON beside a recording."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScheduleFileError(f"{path}: cannot read a JSON schedule: {exc}") from None
    if isinstance(entries, dict) and "schedule" in entries:  # a recording's or clip's JSON (docs/outputs.md)
        entries = entries["schedule"]
    return parse_schedule_entries(entries, str(path))


def parse_schedule_entries(entries: object, where: str = "schedule", require_initial: bool = True) -> list[FileEntry]:
    """Validate a decoded schedule with the same rules as ``schedule_prompt``."""
    shape = '{"timestamp": int, "prompt": str, "transition"?: object}'
    if not isinstance(entries, list):
        raise ScheduleFileError(f"{where}: expected a JSON array of {shape}")
    out: list[FileEntry] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) - {"timestamp", "prompt", "frame", "transition"}:
            raise ScheduleFileError(f"{where}[{i}]: expected {shape}")
        data = {"new_prompt": entry.get("prompt"), "timestamp": entry.get("timestamp")}
        if "transition" in entry:
            data["transition"] = entry["transition"]
        parsed = protocol.validate_command({"type": "schedule_prompt", "data": data})
        if isinstance(parsed, protocol.Event):
            raise ScheduleFileError(f"{where}[{i}]: {parsed.data['message'].replace('new_prompt', 'prompt')}")
        transition = Transition.from_dict(parsed.data.get("transition"))
        out.append(FileEntry(parsed.data["timestamp"], parsed.data["new_prompt"], transition))
    if require_initial and not any(e.timestamp == 0 for e in out):
        raise ScheduleFileError(f"{where}: needs a prompt at timestamp 0")
    return out
