"""A client's copy of a session's schedule, kept from ``state`` snapshots and ``schedule_changed`` deltas by
the gap rule of docs/protocol.md (what the pages' session model does, in Python for the tests)."""

from __future__ import annotations

from typing import Any

FRAMES_PER_BLOCK = 3


class ScheduleMirror:
    """Feed it every event (``type``, ``data``); ``entries`` is the schedule it holds, by timestamp."""

    def __init__(self, frames_per_block: int = FRAMES_PER_BLOCK) -> None:
        self.frames_per_block = frames_per_block
        self.entries: dict[int, dict[str, Any]] = {}
        self.version: int | None = None  # None: no snapshot yet
        self.waiting: list[dict[str, Any]] | None = None  # deltas kept while a get_state is asked
        self.asked = 0  # get_state requests the gap rule made

    def feed(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "state":
            self._state(data)
        elif kind == "schedule_changed":
            self._changed(data)

    @property
    def scheduled(self) -> list[dict[str, Any]]:
        """The entries sorted by timestamp, as ``state`` lists them."""
        return [self.entries[t] for t in sorted(self.entries)]

    def _state(self, data: dict[str, Any]) -> None:
        version = data["schedule_version"]
        if "scheduled" not in data:
            if self.version is not None and self.waiting is None and version > self.version:
                self._gap()
            return
        if self.version is not None and self.waiting is None and version < self.version:
            return  # a snapshot sent late: the deltas since are in what we hold
        self.entries = {entry["timestamp"]: dict(entry) for entry in data["scheduled"]}
        self.version = version
        waiting, self.waiting = self.waiting or [], None
        for delta in waiting:
            self._changed(delta)

    def _changed(self, data: dict[str, Any]) -> None:
        if self.version is None:
            return  # before the first snapshot: it will hold this change
        if self.waiting is not None:
            self.waiting.append(data)
        elif data["version"] == self.version + 1:
            for change in data["changes"]:
                self._apply(change)
            self.version = data["version"]
        elif data["version"] > self.version + 1:
            self.waiting = [data]
            self._gap()

    def _gap(self) -> None:
        self.waiting = self.waiting if self.waiting is not None else []
        self.asked += 1

    def _apply(self, change: dict[str, Any]) -> None:
        op = change["op"]
        if op == "put":
            self.entries[change["timestamp"]] = {k: v for k, v in change.items() if k != "op"}
        elif op == "remove":
            self.entries.pop(change["timestamp"], None)
        elif op == "clear":
            self.entries.clear()
        elif op == "rewind":
            for entry in self.entries.values():
                entry["frame"] = -(-entry["timestamp"] // self.frames_per_block) * self.frames_per_block
        else:
            raise AssertionError(f"unknown change {op!r}")
