"""A prompt schedule that records its changes, so that members get small deltas instead of snapshots.

Every change (from a command on the event loop, or from the engine's worker thread: a rewind when a run
begins, an entry dropped that could not be encoded) is appended, in the order it happened, to a journal
as the ``schedule_changed`` event lists it (see :data:`longlive_rtc.protocol.SCHEDULE_CHANGES`):

- ``{"op": "put", "timestamp", "prompt", "frame", ...}``: the entry at that timestamp, as ``state`` lists it;
- ``{"op": "remove", "timestamp"}``: no prompt at that timestamp any more;
- ``{"op": "clear"}``: no prompt at all;
- ``{"op": "rewind"}``: every entry applies at its own block start again (the first one ``>=`` its timestamp).

The session drains the journal once per event-loop turn (or sooner when it grows large), so a change
costs the same whatever the size of the schedule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .schedule import PromptSchedule, ScheduledPrompt

Change = dict[str, Any]


class JournaledSchedule(PromptSchedule):
    """A :class:`PromptSchedule` whose changes are kept until :meth:`drain`; ``on_change`` is called (from the
    thread that made it, outside every lock) after each change."""

    def __init__(self, *args: Any, on_change: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._journal: list[Change] = []
        self._journal_chars = 0  # prompt characters waiting in the journal
        self._journal_lock = threading.Lock()  # held around each change and its record: they keep one order
        self._on_change = on_change

    @property
    def pending_chars(self) -> int:
        """Prompt characters in changes not drained yet (a bound for the size of the next delta)."""
        return self._journal_chars

    def put(self, *args: Any, **kwargs: Any) -> ScheduledPrompt:
        with self._journal_lock:
            entry = super().put(*args, **kwargs)
            self._record({"op": "put", **entry.to_dict()}, len(entry.prompt))
        self._changed_outside()
        return entry

    def remove(self, timestamp: int) -> bool:
        with self._journal_lock:
            removed = super().remove(timestamp)
            if removed:
                self._record({"op": "remove", "timestamp": timestamp})
        if removed:
            self._changed_outside()
        return removed

    def discard(self, entry: ScheduledPrompt) -> bool:
        with self._journal_lock:
            removed = super().discard(entry)
            if removed:
                self._record({"op": "remove", "timestamp": entry.timestamp})
        if removed:
            self._changed_outside()
        return removed

    def clear(self) -> None:
        with self._journal_lock:
            super().clear()
            self._journal.clear()  # nothing before a clear matters to whoever applies the changes
            self._journal_chars = 0
            self._record({"op": "clear"})
        self._changed_outside()

    def rewind(self) -> int:
        with self._journal_lock:
            epoch = super().rewind()
            self._record({"op": "rewind"})
        self._changed_outside()
        return epoch

    def drain(self) -> list[Change]:
        """The changes since the last drain, oldest first; the journal is empty afterwards."""
        with self._journal_lock:
            return self._take()

    def drain_with_snapshot(self) -> tuple[list[Change], int, list[ScheduledPrompt]]:
        """The changes since the last drain, the schedule's version and its entries, all at one instant: the
        entries are the schedule with every drained change applied."""
        with self._journal_lock:
            return self._take(), self.version, self.snapshot()

    def _take(self) -> list[Change]:
        changes, self._journal, self._journal_chars = self._journal, [], 0
        return changes

    def _record(self, change: Change, chars: int = 0) -> None:
        self._journal.append(change)
        self._journal_chars += chars

    def _changed_outside(self) -> None:
        if self._on_change is not None:
            self._on_change()
