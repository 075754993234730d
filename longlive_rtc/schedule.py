"""The prompt schedule: prompts placed on the generation-frame timeline, applied at block starts.

A prompt scheduled at frame ``t`` takes effect at the first block whose start frame is ``>= t``. A prompt
scheduled at or before the frame being generated (while a stream is under way) takes effect at the next
block that has not started yet. Each entry therefore records the block start where it applies
(``frame``), fixed when it is scheduled; every entry becomes due exactly once, at that block.

The schedule is shared by the event loop (commands) and the engine's worker thread (block starts), so
every method takes an internal lock. Entries are indexed by timestamp and by block start, so that a
command or a block start costs O(log n) (a sorted insert at worst), never a scan of the schedule; the
sorted snapshot is cached until the next change.

Each entry carries the :class:`Transition` that switches it in: ``recache`` (LongLive's KV-recache, the
default), ``cut`` (a hard cut: the generator's context is dropped, the frame counter goes on) or ``blend``
(the conditioning moves from the prompt in effect to the new one over ``blocks`` blocks).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, replace
from typing import Any

from .generators.base import BLEND_CURVES, FRAMES_PER_BLOCK, LINEAR

MAX_SCHEDULED_PROMPTS = 1000
MAX_BLEND_BLOCKS = 64  # a blend spans at most this many blocks (48 s of video)

RECACHE, CUT, BLEND = "recache", "cut", "blend"
TRANSITION_MODES = (RECACHE, CUT, BLEND)


def block_start_at_or_after(frame: int, frames_per_block: int = FRAMES_PER_BLOCK) -> int:
    """First block start frame ``>= frame``."""
    return -(-frame // frames_per_block) * frames_per_block


@dataclass(frozen=True)
class Transition:
    """How a prompt switches in; ``blocks`` and ``curve`` only mean something for ``blend``."""

    mode: str = RECACHE
    blocks: int = 0
    curve: str = LINEAR

    def __post_init__(self) -> None:
        if self.mode not in TRANSITION_MODES:
            raise ValueError(f"unknown transition mode {self.mode!r}")
        if self.mode == BLEND and not (1 <= self.blocks <= MAX_BLEND_BLOCKS and self.curve in BLEND_CURVES):
            raise ValueError(f"a blend needs 1..{MAX_BLEND_BLOCKS} blocks and a curve in {BLEND_CURVES}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Transition:
        """From the validated ``transition`` field of ``schedule_prompt`` (None: the default recache)."""
        if not data:
            return DEFAULT_TRANSITION
        if data["mode"] != BLEND:
            return cls(data["mode"])
        return cls(BLEND, data["blocks"], data.get("curve", LINEAR))

    def to_dict(self) -> dict[str, int | str]:
        if self.mode != BLEND:
            return {"mode": self.mode}
        return {"mode": self.mode, "blocks": self.blocks, "curve": self.curve}


DEFAULT_TRANSITION = Transition()


@dataclass(frozen=True)
class ScheduledPrompt:
    """A prompt on the timeline: requested ``timestamp``, the block start ``frame`` where it applies and
    the transition that switches it in."""

    timestamp: int
    prompt: str
    frame: int
    transition: Transition = DEFAULT_TRANSITION

    def to_dict(self) -> dict[str, Any]:
        """As ``state`` lists it: ``transition`` only when it is not the default recache."""
        out: dict[str, Any] = {"timestamp": self.timestamp, "prompt": self.prompt, "frame": self.frame}
        if self.transition != DEFAULT_TRANSITION:
            out["transition"] = self.transition.to_dict()
        return out


class ScheduleFull(Exception):
    """Raised when the schedule already holds :data:`MAX_SCHEDULED_PROMPTS` prompts."""


class PromptSchedule:
    """Prompts keyed by timestamp; thread-safe."""

    def __init__(self, frames_per_block: int = FRAMES_PER_BLOCK, max_prompts: int = MAX_SCHEDULED_PROMPTS) -> None:
        if max_prompts < 1:
            raise ValueError("max_prompts must be at least 1")
        self._frames_per_block = frames_per_block
        self._max_prompts = max_prompts
        self._entries: dict[int, ScheduledPrompt] = {}
        self._timestamps: list[int] = []  # sorted keys of _entries
        self._by_frame: dict[int, set[int]] = {}  # block start -> timestamps of the entries applying there
        self._frames: list[int] = []  # sorted keys of _by_frame
        self._sorted: list[ScheduledPrompt] | None = None  # snapshot cache, dropped on every change
        self._version = 0
        self._epoch = 0  # counts rewinds and clears: a run's block starts carry the epoch it began in
        self._next_block_start = 0  # first block that has not been committed to generation yet
        self._lock = threading.Lock()

    @property
    def max_prompts(self) -> int:
        return self._max_prompts

    @property
    def version(self) -> int:
        """Increases on every change of the entries (not on block starts): a key for derived caches."""
        with self._lock:
            return self._version

    def put(self, timestamp: int, prompt: str, transition: Transition = DEFAULT_TRANSITION) -> ScheduledPrompt:
        """Schedule ``prompt`` at ``timestamp`` (switched in by ``transition``), overwriting any prompt at the
        same timestamp."""
        with self._lock:
            old = self._entries.get(timestamp)
            if old is None:
                if len(self._entries) >= self._max_prompts:
                    raise ScheduleFull(f"the schedule holds the maximum of {self._max_prompts} prompts")
                insort(self._timestamps, timestamp)
            else:
                self._unindex(old)
            frame = max(block_start_at_or_after(timestamp, self._frames_per_block), self._next_block_start)
            entry = ScheduledPrompt(timestamp, prompt, frame, transition)
            self._entries[timestamp] = entry
            self._index(entry)
            self._changed()
            return entry

    def remove(self, timestamp: int) -> bool:
        """Delete the prompt at ``timestamp``; False when there is none."""
        with self._lock:
            return self._remove(timestamp)

    def discard(self, entry: ScheduledPrompt) -> bool:
        """Delete ``entry`` if its timestamp still holds the same prompt (not one put there since)."""
        with self._lock:
            return self._holds(entry) and self._remove(entry.timestamp)

    def holds(self, entry: ScheduledPrompt) -> bool:
        """Whether ``entry``'s timestamp still holds its prompt (it was not removed or overwritten since)."""
        with self._lock:
            return self._holds(entry)

    def clear(self) -> None:
        """Remove every prompt and rewind to frame 0 (a reset)."""
        with self._lock:
            self._entries.clear()
            self._timestamps.clear()
            self._by_frame.clear()
            self._frames.clear()
            self._next_block_start = 0
            self._epoch += 1
            self._changed()

    def rewind(self) -> int:
        """Rewind to frame 0 keeping the prompts (a new start); each applies at its own block again.

        Returns the new epoch: block starts committed with an older one (a run stopped meanwhile) are ignored.
        """
        with self._lock:
            self._next_block_start = 0
            self._epoch += 1
            self._by_frame.clear()
            self._frames.clear()
            for t, e in self._entries.items():
                entry = replace(e, frame=block_start_at_or_after(t, self._frames_per_block))
                self._entries[t] = entry
                self._by_frame.setdefault(entry.frame, set()).add(t)
            self._frames = sorted(self._by_frame)
            self._changed()
            return self._epoch

    def has_initial_prompt(self) -> bool:
        """True when a prompt applies to block 0."""
        with self._lock:
            return 0 in self._entries

    def take_due(self, block_start: int, epoch: int | None = None) -> ScheduledPrompt | None:
        """Commit the block starting at ``block_start``; return the prompt that switches in there, if any.

        When several prompts fall on the same block, the one with the latest timestamp wins. With an
        ``epoch`` (from :meth:`rewind`) older than the schedule's, nothing is committed and None returned.
        """
        with self._lock:
            if epoch is not None and epoch != self._epoch:
                return None
            self._next_block_start = block_start + self._frames_per_block
            return self._latest_at(block_start)

    def prompt_for_block(self, block_start: int) -> ScheduledPrompt | None:
        """The prompt in effect for the block starting at ``block_start`` (latest entry applied by then)."""
        with self._lock:
            i = bisect_right(self._frames, block_start)
            return self._latest_at(self._frames[i - 1]) if i else None

    def snapshot(self) -> list[ScheduledPrompt]:
        """Entries sorted by timestamp, for ``state`` events and export (cached until the next change)."""
        with self._lock:
            if self._sorted is None:
                self._sorted = [self._entries[t] for t in self._timestamps]
            return list(self._sorted)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # --- internals, under the lock ---------------------------------------------------------------------

    def _holds(self, entry: ScheduledPrompt) -> bool:
        current = self._entries.get(entry.timestamp)
        return current is not None and (current.prompt, current.transition) == (entry.prompt, entry.transition)

    def _latest_at(self, frame: int) -> ScheduledPrompt | None:
        stamps = self._by_frame.get(frame)
        return self._entries[max(stamps)] if stamps else None

    def _remove(self, timestamp: int) -> bool:
        entry = self._entries.pop(timestamp, None)
        if entry is None:
            return False
        del self._timestamps[bisect_left(self._timestamps, timestamp)]
        self._unindex(entry)
        self._changed()
        return True

    def _index(self, entry: ScheduledPrompt) -> None:
        stamps = self._by_frame.get(entry.frame)
        if stamps is None:
            stamps = self._by_frame[entry.frame] = set()
            insort(self._frames, entry.frame)
        stamps.add(entry.timestamp)

    def _unindex(self, entry: ScheduledPrompt) -> None:
        stamps = self._by_frame[entry.frame]
        stamps.discard(entry.timestamp)
        if not stamps:
            del self._by_frame[entry.frame]
            del self._frames[bisect_left(self._frames, entry.frame)]

    def _changed(self) -> None:
        self._sorted = None
        self._version += 1
