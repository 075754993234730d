"""Schedule files: the ``[{"timestamp", "prompt"}]`` JSON that ``generate`` reads, the director page imports
and exports, and ``POST /sessions`` takes, validated with the rules of ``schedule_prompt``."""

from __future__ import annotations

import json
from pathlib import Path

from . import protocol


class ScheduleFileError(ValueError):
    """The schedule file is not a JSON array of valid ``{"timestamp", "prompt"}`` objects."""


def load_schedule_file(path: Path) -> list[tuple[int, str]]:
    """Read and validate a schedule file: the director page's export, or the JSON beside a recording."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScheduleFileError(f"{path}: cannot read a JSON schedule: {exc}") from None
    if isinstance(entries, dict) and "schedule" in entries:  # a recording's or clip's JSON (docs/outputs.md)
        entries = entries["schedule"]
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
        parsed = protocol.validate_command(message)
        if isinstance(parsed, protocol.Event):
            raise ScheduleFileError(f"{where}[{i}]: {parsed.data['message'].replace('new_prompt', 'prompt')}")
        out.append((parsed.data["timestamp"], parsed.data["new_prompt"]))
    if require_initial and not any(t == 0 for t, _ in out):
        raise ScheduleFileError(f"{where}: needs a prompt at timestamp 0")
    return out
