"""A bounded frame buffer between the generator thread and the paced track."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .schedule import ScheduledPrompt


@dataclass(frozen=True)
class BufferedFrame:
    """A decoded video frame and its index in the stream."""

    index: int
    image: np.ndarray  # uint8 [H, W, 3]
    run: int = 0  # the engine run that made it
    block_start: int = 0  # generation frame of its block's start
    applied: ScheduledPrompt | None = None  # on a block's first frame: the prompt that block switched in
    skipped: int = 0  # on the first frame of a block that replaced the frames queued: how many it replaced


class FrameBuffer:
    """FIFO of frames holding at most ``capacity``; producers wait for room for a whole block.

    ``clear`` drops every frame and releases a waiting producer, which then learns its block was
    discarded; this is how stop stays prompt.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._frames: deque[BufferedFrame] = deque()
        self._epoch = 0
        self._closed = False
        self._cond = threading.Condition()
        self.high_water = 0  # the most frames ever held, for tests and metrics

    def put_block(self, frames: list[BufferedFrame], overflow: Callable[[], bool] = lambda: False) -> bool:
        """Append a block once there is room for all of it; False if cleared or closed meanwhile.

        Once ``overflow()`` is true (checked on every wake-up, see :meth:`wake`; it must not block) the rest
        is appended at once, past the capacity: a block that will :meth:`replace` the queue comes next.
        """
        need = min(len(frames), self.capacity)
        with self._cond:
            epoch = self._epoch
            while (
                not self._closed
                and self._epoch == epoch
                and len(self._frames) + need > self.capacity
                and not overflow()
            ):
                self._cond.wait()
            if self._closed or self._epoch != epoch:
                return False
            for frame in frames:
                while len(self._frames) >= self.capacity and not overflow():  # larger than the buffer: per frame
                    self._cond.wait()
                    if self._closed or self._epoch != epoch:
                        return False
                self._frames.append(frame)
                self.high_water = max(self.high_water, len(self._frames))
            return True

    def replace(self, frames: list[BufferedFrame]) -> int:
        """Drop every queued frame and queue ``frames`` in their place at once; the number dropped."""
        with self._cond:
            dropped = len(self._frames)
            self._frames.clear()
            self._frames.extend(frames)
            self.high_water = max(self.high_water, len(self._frames))
            self._cond.notify_all()
            return dropped

    def pop(self) -> BufferedFrame | None:
        """The oldest frame, or None when empty (never blocks)."""
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    def wake(self) -> None:
        """Wake a waiting producer to check its ``overflow`` again."""
        with self._cond:
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self._epoch += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)
