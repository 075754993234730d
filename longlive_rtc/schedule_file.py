"""Schedule files: the ``[{"timestamp", "prompt", "transition"?}]`` JSON that ``generate`` reads, the director
page imports and exports, and ``POST /sessions`` takes, validated with the rules of ``schedule_prompt``
(entries as ``state`` lists them: ``frame`` is ignored, ``transition`` absent means the default recache).

One format for all of them; the director's ``parseSchedule`` (signaling/static/js/protocol.js) reads the same
documents (tests/test_schedule_files.py runs both on the same files): the array itself or an object holding it
under ``schedule`` (a recording's or clip's JSON) or ``scheduled`` (a saved ``state``); ``new_prompt`` is
accepted for ``prompt``, and a timestamp written as a whole number with a fraction part (``30.0``) is that
integer, as JSON has no integer type of its own."""

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


SHAPE = '{"timestamp": int, "prompt": str, "transition"?: object}'
ENTRY_KEYS = ("timestamp", "prompt", "new_prompt", "frame", "transition")  # the keys an entry may have
LIST_KEYS = ("schedule", "scheduled")  # where an object holds the entries: a recording's JSON, a saved state


def load_schedule_file(path: Path) -> list[FileEntry]:
    """Read and validate a schedule file: the director page's export, or the JSON beside a recording."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise ScheduleFileError(f"{path}: cannot read a JSON schedule: {exc}") from None
    return parse_schedule_text(text, str(path))


def parse_schedule_text(text: str, where: str = "schedule", require_initial: bool = True) -> list[FileEntry]:
    """Validate a schedule file's text (``where`` names it in errors)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ScheduleFileError(f"{where}: cannot read a JSON schedule: {exc}") from None
    return parse_schedule_entries(schedule_list(document, where), where, require_initial)


def schedule_list(document: object, where: str = "schedule") -> list[Any]:
    """The entries of a decoded schedule file: the array itself, or the one under ``schedule``/``scheduled``."""
    if isinstance(document, dict):
        found = next((document[key] for key in LIST_KEYS if document.get(key) is not None), None)
        if isinstance(found, list):
            return found
    elif isinstance(document, list):
        return document
    raise ScheduleFileError(
        f'{where}: expected a JSON array of {SHAPE}, or an object with one under "schedule" or "scheduled"'
    )


def parse_schedule_entries(entries: object, where: str = "schedule", require_initial: bool = True) -> list[FileEntry]:
    """Validate a decoded schedule with the same rules as ``schedule_prompt``."""
    if not isinstance(entries, list):
        raise ScheduleFileError(f"{where}: expected a JSON array of {SHAPE}")
    out: list[FileEntry] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ScheduleFileError(f"{where}[{i}]: expected {SHAPE}")
        unknown = [key for key in entry if key not in ENTRY_KEYS]
        if unknown:
            raise ScheduleFileError(f"{where}[{i}]: unknown key '{unknown[0]}'; expected {SHAPE}")
        prompt = entry["prompt"] if entry.get("prompt") is not None else entry.get("new_prompt")
        data = {"new_prompt": prompt, "timestamp": whole_number(entry.get("timestamp"))}
        if entry.get("transition") is not None:  # null is the default, as absent
            data["transition"] = entry["transition"]
        parsed = protocol.validate_command({"type": "schedule_prompt", "data": data})
        if isinstance(parsed, protocol.Event):
            raise ScheduleFileError(f"{where}[{i}]: {parsed.data['message'].replace('new_prompt', 'prompt')}")
        transition = Transition.from_dict(parsed.data.get("transition"))
        out.append(FileEntry(parsed.data["timestamp"], parsed.data["new_prompt"], transition))
    if require_initial and not any(e.timestamp == 0 for e in out):
        raise ScheduleFileError(f"{where}: needs a prompt at timestamp 0")
    return out


def whole_number(value: object) -> object:
    """``30.0`` as ``30`` (JSON has one number type, and the pages read both alike); anything else unchanged."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
