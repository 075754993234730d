"""Block-by-block driving of a Generator over a PromptSchedule, shared by the live engine and `generate`.

Transitions happen here, so every generator gets them: at the block where an entry applies, ``recache``
calls ``switch_prompt``, ``cut`` calls ``cut``, and a ``blend`` over k blocks conditions the block at
``frame + 3j`` (j = 0..k-1) on ``mix_prompts(from, to, (j + 1) / k)`` through ``set_prompt``, where
``from`` is the conditioning in effect when the entry applied (a mix, if a blend was under way).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .generators.base import Generator, PromptEmbedding, mix_prompts
from .schedule import BLEND, CUT, PromptSchedule, ScheduledPrompt

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
    blend_weight: float | None = None  # the weight of the prompt blended in, on the blocks of a blend

    @property
    def end_video_frame(self) -> int:
        return self.first_video_frame + len(self.frames)


@dataclass
class _Blend:
    """A blend under way: from one conditioning to another over ``blocks`` blocks."""

    source: PromptEmbedding
    target: PromptEmbedding
    blocks: int
    curve: str
    done: int = 0


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
        self._conditioning: PromptEmbedding | None = None  # what the generator is conditioned on now
        self._blend: _Blend | None = None

    @property
    def next_frame(self) -> int:
        return self._next_frame

    def begin(self, seed: int) -> None:
        """Rewind to frame 0; the generator begins on the first :meth:`step`."""
        self._seed = seed
        self._next_frame = self._next_video_frame = 0
        self._active_prompt = self._conditioning = self._blend = None
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
            self._conditioning = self._encode(entry)
            self._blend = None
            self.generator.begin(self._seed, self._conditioning)
        elif entry is not None:
            self._switch(entry)
        if entry is not None:
            self._active_prompt = entry.prompt
        weight = self._blend_step()
        frames = self.generator.next_block()
        end = start + self.generator.geometry.frames_per_block
        block = Block(start, end, self._next_video_frame, frames, entry, weight)
        self._next_frame = block.end_frame
        self._next_video_frame += len(frames)
        return block

    def _switch(self, entry: ScheduledPrompt) -> None:
        """Switch ``entry`` in by its transition (encoded first: a failure leaves everything as it was)."""
        mode = entry.transition.mode
        if mode != CUT and entry.prompt == self._active_prompt and self._blend is None:
            return  # the same prompt again: nothing to move to (a cut still cuts)
        target = self._encode(entry)
        self._blend = None
        if mode == CUT:
            self.generator.cut(target)
        elif mode == BLEND:
            t = entry.transition
            self._blend = _Blend(self._conditioning, target, t.blocks, t.curve)
            return  # conditioned block by block by _blend_step
        else:
            self.generator.switch_prompt(target)
        self._conditioning = target

    def _blend_step(self) -> float | None:
        """Condition this block of a blend under way; its weight (None outside a blend)."""
        blend = self._blend
        if blend is None:
            return None
        blend.done += 1
        weight = blend.done / blend.blocks
        if blend.done == blend.blocks:
            self._conditioning, self._blend = blend.target, None
        else:
            self._conditioning = mix_prompts(self.generator, blend.source, blend.target, weight, blend.curve)
        self.generator.set_prompt(self._conditioning)
        return weight

    def _encode(self, entry: ScheduledPrompt) -> PromptEmbedding:
        try:
            return self.cache.get(entry.prompt)
        except Exception as exc:
            raise PromptEncodingError(entry, exc) from exc

    def reset(self) -> None:
        self.generator.reset()
        self._next_frame = self._next_video_frame = 0
        self._active_prompt = self._conditioning = self._blend = None
