"""A bounded frame buffer between the generator thread and the paced track."""

from __future__ import annotations

import threading
from collections import deque
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

    def put_block(self, frames: list[BufferedFrame]) -> bool:
        """Append a block once there is room for all of it; False if cleared or closed meanwhile."""
        need = min(len(frames), self.capacity)
        with self._cond:
            epoch = self._epoch
            while not self._closed and self._epoch == epoch and len(self._frames) + need > self.capacity:
                self._cond.wait()
            if self._closed or self._epoch != epoch:
                return False
            for frame in frames:
                while len(self._frames) >= self.capacity:  # a block larger than the buffer: wait per frame
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
