"""The Generator protocol every video source implements, and the stream geometry they share."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

FRAMES_PER_BLOCK = 3  # generation (latent) frames per block
TEMPORAL_STRIDE = 4  # video frames per latent frame after the stream's first
CONTENT_FPS = 16.0  # native rate of the generated video
PLAYBACK_FPS = 15  # frames on air per second: the paced rate of the live stream
LINEAR, SLERP = "linear", "slerp"  # blend curves (see blend.py)
BLEND_CURVES = (LINEAR, SLERP)


@dataclass(frozen=True)
class Geometry:
    """Frame and block geometry of a generated stream (LongLive's, for every generator)."""

    width: int = 832
    height: int = 480
    frames_per_block: int = FRAMES_PER_BLOCK
    content_fps: float = CONTENT_FPS
    temporal_stride: int = TEMPORAL_STRIDE

    def video_frames_in_block(self, block_start: int) -> int:
        """Video frames a block decodes to: 9 for block 0, 12 after (latent 0 -> 1 frame, later -> 4)."""
        first = 1 if block_start == 0 else self.temporal_stride
        return first + self.temporal_stride * (self.frames_per_block - 1)

    @property
    def max_video_frames_in_block(self) -> int:
        """Video frames of the largest block, any after block 0 (12)."""
        return self.temporal_stride * self.frames_per_block

    def video_frames_before(self, frame: int) -> int:
        """Video frames decoded from the generation frames before ``frame`` (1 + 4(frame-1))."""
        return 0 if frame == 0 else 1 + self.temporal_stride * (frame - 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PromptEmbedding = Any
"""Whatever a generator's ``encode_prompt`` returns; opaque to the engine."""


@runtime_checkable
class Generator(Protocol):
    """A frame-autoregressive video generator driven block by block.

    Every method but ``check_prompt`` is called from one worker thread. ``begin`` starts a fresh stream
    (dropping any state), ``switch_prompt`` changes the prompt for the blocks that follow (LongLive's
    KV-recache), ``cut`` changes it with a hard cut, ``set_prompt`` changes the conditioning alone (each
    step of a blend), and ``next_block`` returns the block's video frames as uint8 RGB ``[T, H, W, 3]``
    (T = 9 for block 0, 12 after).

    A generator may also define ``mix_prompts(a, b, weight, curve)`` for embeddings that are not tensors
    (see :func:`mix_prompts`), ``cancel_pending()`` when its calls wait their turn on a shared device
    (see :func:`cancel_pending`), and ``skip_frames(count)`` when it schedules by its playback (see
    :func:`skip_frames`).
    """

    geometry: Geometry
    name: str

    def check_prompt(self, prompt: str) -> None:
        """Raise ``ValueError`` (with a message for the user) if ``encode_prompt`` cannot encode ``prompt``.

        Called on the event loop when a prompt is scheduled, before it is stored: it must be cheap
        (tokenising, not encoding) and thread-safe with respect to the worker.
        """
        ...

    def encode_prompt(self, prompt: str) -> PromptEmbedding: ...

    def begin(self, seed: int, prompt: PromptEmbedding) -> None: ...

    def switch_prompt(self, prompt: PromptEmbedding) -> None: ...

    def cut(self, prompt: PromptEmbedding) -> None:
        """Hard cut: drop the stream's context (KV cache) and go on with ``prompt`` as a stream begun at the
        current frame would; the frame counter, the decoder and the noise stream continue."""
        ...

    def set_prompt(self, prompt: PromptEmbedding) -> None:
        """Condition the blocks that follow on ``prompt`` without any transition work (no recache)."""
        ...

    def next_block(self) -> np.ndarray: ...

    def reset(self) -> None:
        """Drop all stream state (KV cache, decoder cache); the next call is ``begin``."""
        ...


def check_prompt(generator: Generator, prompt: str) -> None:
    """``generator.check_prompt(prompt)``; generators without one accept every prompt."""
    check = getattr(generator, "check_prompt", None)
    if check is not None:
        check(prompt)


class CallCancelled(Exception):
    """The session was closed while this generator call waited its turn on a shared device; nothing ran."""


def cancel_pending(generator: Generator) -> None:
    """Drop the calls of ``generator`` that still wait their turn (they raise :class:`CallCancelled`), for a
    session that is closing; a generator with no queue has nothing to drop."""
    cancel = getattr(generator, "cancel_pending", None)
    if cancel is not None:
        cancel()


def skip_frames(generator: Generator, count: int) -> None:
    """Tell ``generator`` that ``count`` frames it made will never be shown (a live prompt's block replaced
    them); a generator that does not schedule by its playback has nothing to do."""
    skip = getattr(generator, "skip_frames", None)
    if skip is not None and count > 0:
        skip(count)


def shares_device(generator: Generator) -> bool:
    """Whether other streams generate on ``generator``'s device now: frames it makes and never shows (a live
    prompt's block replacing them) are then device time the other streams needed."""
    shares = getattr(generator, "shares_device", None)
    return bool(shares()) if shares is not None else False


def start_lead(generator: Generator) -> float:
    """Seconds a stream must keep ahead on a device shared with other streams: their blocks may run before its
    next one. The engine holds a run's first frame that long (its first block's frames alone would run out: a
    stall at the start) and starts each block that much earlier than alone. 0 for a generator that has its
    device to itself."""
    lead = getattr(generator, "start_lead", None)
    return max(0.0, lead()) if lead is not None else 0.0


def mix_prompts(generator: Generator, a: PromptEmbedding, b: PromptEmbedding, weight: float, curve: str) -> Any:
    """The embedding ``weight`` of the way from ``a`` to ``b``: the generator's ``mix_prompts`` when it has
    one, else :func:`~longlive_rtc.generators.blend.mix_embeddings` (tensors and arrays)."""
    mix = getattr(generator, "mix_prompts", None)
    if mix is not None:
        return mix(a, b, weight, curve)
    from .blend import mix_embeddings

    return mix_embeddings(a, b, weight, curve)
