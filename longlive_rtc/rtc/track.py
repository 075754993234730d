"""The paced video track: pulls frames from the engine at a steady 15 FPS on a drift-free clock."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from ..engine import Engine, Playout

CLOCK_RATE = 90_000
DEFAULT_FPS = 15
#: Frames carry their 90 kHz time in microseconds, rounded up. PyAV rebases a frame in place to the
#: encoder's 1 us time base and aiortc truncates on the way back to 90 kHz; 90 kHz pts would come out
#: 1 tick short every third frame (5999/6001 steps), microseconds rounded up come out exact.
FRAME_TIME_BASE = fractions.Fraction(1, 1_000_000)


def ticks_to_frame_pts(ticks: int) -> int:
    """90 kHz ticks -> frame pts in :data:`FRAME_TIME_BASE`, rounded up (see there)."""
    return -(-ticks * FRAME_TIME_BASE.denominator // CLOCK_RATE)


def to_yuv420p(image: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` -> planar yuv420p ``[H * 3/2, W]`` (once per frame, before fan-out)."""
    return VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray()


class PacedVideoTrack(MediaStreamTrack):
    """A live track reading the engine's frame source ``fps`` times a second.

    Timestamps advance by exactly ``90000 / fps`` ticks per frame (6000 at 15 FPS) on the RTP clock.
    The clock is absolute (no drift); if the consumer falls more than one frame behind, it is
    re-anchored instead of bursting.
    On underrun the last frame is repeated (the engine counts the stall); before start the engine's
    idle card is shown. Add it to peers only through a ``MediaRelay`` (a sender stops its track).
    """

    kind = "video"

    def __init__(self, engine: Engine, fps: int = DEFAULT_FPS) -> None:
        super().__init__()
        if CLOCK_RATE % fps:
            raise ValueError(f"fps must divide {CLOCK_RATE}")
        self.engine = engine
        self.step = CLOCK_RATE // fps
        self.frames_sent = 0
        self.repeats = 0
        self.last_index: int | None = None  # video frame index of the picture on screen
        self._pts = -self.step  # 90 kHz ticks of the last frame
        self._anchor: float | None = None
        self._last: np.ndarray | None = None
        self._idle: np.ndarray | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._next_pts()
        planes = self._next_planes()
        frame = VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts, frame.time_base = ticks_to_frame_pts(pts), FRAME_TIME_BASE
        self.frames_sent += 1
        return frame

    async def _next_pts(self) -> int:
        self._pts += self.step
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = now - self._pts / CLOCK_RATE
        due = self._anchor + self._pts / CLOCK_RATE
        if now - due > self.step / CLOCK_RATE:  # more than a frame late: re-anchor rather than burst
            self._anchor = now - self._pts / CLOCK_RATE
        else:
            await asyncio.sleep(max(0.0, due - now))
        return self._pts

    def _next_planes(self) -> np.ndarray:
        item = self.engine.next_frame()
        if item.kind is Playout.FRAME and item.image is not None:
            self._last = to_yuv420p(item.image)
            self.last_index = item.index
        elif item.kind is Playout.IDLE:
            if self._idle is None:
                self._idle = to_yuv420p(self.engine.idle_card)
            self._last, self.last_index = self._idle, None
        else:
            self.repeats += 1
        if self._last is None:
            if self._idle is None:
                self._idle = to_yuv420p(self.engine.idle_card)
            return self._idle
        return self._last
