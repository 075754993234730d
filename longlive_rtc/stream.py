"""Block-by-block driving of a Generator over a PromptSchedule, shared by the live engine and `generate`."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .generators.base import Generator, PromptEmbedding
from .schedule import PromptSchedule, ScheduledPrompt

PROMPT_CACHE_SIZE = 64


class NoInitialPrompt(Exception):
    """The schedule has no prompt for block 0."""


class PromptEncodingError(Exception):
    """A scheduled prompt could not be encoded when its block came; nothing reached the generator."""

    def __init__(self, entry: ScheduledPrompt, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.entry = entry
        self.cause = cause


class PromptCache:
    """LRU of prompt embeddings, so each scheduled prompt is encoded once, before it applies."""

    def __init__(self, generator: Generator, capacity: int = PROMPT_CACHE_SIZE) -> None:
        self._generator = generator
        self._capacity = capacity
        self._entries: OrderedDict[str, PromptEmbedding] = OrderedDict()

    def get(self, prompt: str) -> PromptEmbedding:
        if prompt in self._entries:
            self._entries.move_to_end(prompt)
            return self._entries[prompt]
        embedding = self._generator.encode_prompt(prompt)
        self._entries[prompt] = embedding
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
        return embedding


@dataclass(frozen=True)
class Block:
    """One generated block and where it sits on both time axes."""

    start_frame: int  # generation frame of the block's first latent frame
    end_frame: int  # the next generation frame (``current_start_frame`` after this block)
    first_video_frame: int
    frames: np.ndarray  # uint8 [T, H, W, 3]
    applied: ScheduledPrompt | None  # the prompt switched in at this block, if any

    @property
    def end_video_frame(self) -> int:
        return self.first_video_frame + len(self.frames)


class BlockStream:
    """Generates blocks in order, switching prompts at the block starts the schedule says."""

    def __init__(self, generator: Generator, schedule: PromptSchedule, cache: PromptCache | None = None):
        self.generator = generator
        self.schedule = schedule
        self.cache = cache or PromptCache(generator)
        self._seed = 0
        self._epoch: int | None = None
        self._next_frame = 0
        self._next_video_frame = 0
        self._active_prompt: str | None = None

    @property
    def next_frame(self) -> int:
        return self._next_frame

    @property
    def active_prompt(self) -> str | None:
        return self._active_prompt

    def begin(self, seed: int) -> None:
        """Rewind to frame 0; the generator begins on the first :meth:`step`."""
        self._seed = seed
        self._next_frame = self._next_video_frame = 0
        self._active_prompt = None
        self._epoch = self.schedule.rewind()

    def step(self) -> Block:
        """Apply the prompt due at this block start (if any) and generate the block.

        Raises :class:`PromptEncodingError` before touching the generator when the due prompt cannot be
        encoded: the stream stays where it was, and once the entry is gone from the schedule the same
        block can be stepped again (on the prompt already in effect).
        """
        start = self._next_frame
        entry = self.schedule.take_due(start, self._epoch)
        if start == 0:
            if entry is None:
                raise NoInitialPrompt("no prompt is scheduled at frame 0")
            self.generator.begin(self._seed, self._encode(entry))
        elif entry is not None and entry.prompt != self._active_prompt:
            self.generator.switch_prompt(self._encode(entry))
        if entry is not None:
            self._active_prompt = entry.prompt
        frames = self.generator.next_block()
        block = Block(start, start + self.generator.geometry.frames_per_block, self._next_video_frame, frames, entry)
        self._next_frame = block.end_frame
        self._next_video_frame += len(frames)
        return block

    def _encode(self, entry: ScheduledPrompt) -> PromptEmbedding:
        try:
            return self.cache.get(entry.prompt)
        except Exception as exc:
            raise PromptEncodingError(entry, exc) from exc

    def reset(self) -> None:
        self.generator.reset()
        self._next_frame = self._next_video_frame = 0
        self._active_prompt = None
