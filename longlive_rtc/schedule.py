"""The prompt schedule: prompts placed on the generation-frame timeline, applied at block starts.

A prompt scheduled at frame ``t`` takes effect at the first block whose start frame is ``>= t``. A prompt
scheduled at or before the frame being generated (while a stream is under way) takes effect at the next
block that has not started yet. Each entry therefore records the block start where it applies
(``frame``), fixed when it is scheduled; every entry becomes due exactly once, at that block.

The schedule is shared by the event loop (commands) and the engine's worker thread (block starts), so
every method takes an internal lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

FRAMES_PER_BLOCK = 3
MAX_SCHEDULED_PROMPTS = 10_000


def block_start_at_or_after(frame: int, frames_per_block: int = FRAMES_PER_BLOCK) -> int:
    """First block start frame ``>= frame``."""
    return -(-frame // frames_per_block) * frames_per_block


@dataclass(frozen=True)
class ScheduledPrompt:
    """A prompt on the timeline: requested ``timestamp`` and the block start ``frame`` where it applies."""

    timestamp: int
    prompt: str
    frame: int

    def to_dict(self) -> dict[str, int | str]:
        return {"timestamp": self.timestamp, "prompt": self.prompt, "frame": self.frame}


class ScheduleFull(Exception):
    """Raised when the schedule already holds :data:`MAX_SCHEDULED_PROMPTS` prompts."""


class PromptSchedule:
    """Prompts keyed by timestamp; thread-safe."""

    def __init__(self, frames_per_block: int = FRAMES_PER_BLOCK, max_prompts: int = MAX_SCHEDULED_PROMPTS) -> None:
        self._frames_per_block = frames_per_block
        self._max_prompts = max_prompts
        self._entries: dict[int, ScheduledPrompt] = {}
        self._next_block_start = 0  # first block that has not been committed to generation yet
        self._lock = threading.Lock()

    def put(self, timestamp: int, prompt: str) -> ScheduledPrompt:
        """Schedule ``prompt`` at ``timestamp``, overwriting any prompt at the same timestamp."""
        with self._lock:
            if timestamp not in self._entries and len(self._entries) >= self._max_prompts:
                raise ScheduleFull(f"the schedule holds the maximum of {self._max_prompts} prompts")
            frame = max(block_start_at_or_after(timestamp, self._frames_per_block), self._next_block_start)
            entry = ScheduledPrompt(timestamp, prompt, frame)
            self._entries[timestamp] = entry
            return entry

    def remove(self, timestamp: int) -> bool:
        """Delete the prompt at ``timestamp``; False when there is none."""
        with self._lock:
            return self._entries.pop(timestamp, None) is not None

    def clear(self) -> None:
        """Remove every prompt and rewind to frame 0 (a reset)."""
        with self._lock:
            self._entries.clear()
            self._next_block_start = 0

    def rewind(self) -> None:
        """Rewind to frame 0 keeping the prompts (a new start); each applies at its own block again."""
        with self._lock:
            self._next_block_start = 0
            self._entries = {
                t: ScheduledPrompt(t, e.prompt, block_start_at_or_after(t, self._frames_per_block))
                for t, e in self._entries.items()
            }

    def has_initial_prompt(self) -> bool:
        """True when a prompt applies to block 0."""
        with self._lock:
            return 0 in self._entries

    def take_due(self, block_start: int) -> ScheduledPrompt | None:
        """Commit the block starting at ``block_start``; return the prompt that switches in there, if any.

        When several prompts fall on the same block, the one with the latest timestamp wins.
        """
        with self._lock:
            due = [e for e in self._entries.values() if e.frame == block_start]
            self._next_block_start = block_start + self._frames_per_block
            return max(due, key=lambda e: e.timestamp) if due else None

    def prompt_for_block(self, block_start: int) -> ScheduledPrompt | None:
        """The prompt in effect for the block starting at ``block_start`` (latest entry applied by then)."""
        with self._lock:
            applied = [e for e in self._entries.values() if e.frame <= block_start]
            return max(applied, key=lambda e: (e.frame, e.timestamp)) if applied else None

    def snapshot(self) -> list[ScheduledPrompt]:
        """Entries sorted by timestamp, for ``state`` events and export."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.timestamp)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
