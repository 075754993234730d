"""The on-air clock of a live session and the viewer tracks it feeds.

One :class:`OnAirClock` per session ticks ``fps`` times a second on a drift-free clock, whether or not anyone
watches: each tick takes one frame from the engine, converts it to yuv420p once and hands the same picture,
with the same pts, to every viewer's :class:`ViewerTrack` (latest frame, unbuffered) and to every output sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Callable

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from ..engine import Engine, Playout, PlayoutItem
from ..generators.base import PLAYBACK_FPS
from ..generators.stamp import Stamp, draw_stamp
from ..outputs import CLOCK_RATE, FrameSink, OnAirFrame

log = logging.getLogger(__name__)

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


class OnAirClock:
    """A session's on-air clock: one engine frame per tick, fanned out to viewer tracks and sinks.

    Ticks are ``90000 / fps`` apart on an absolute clock (pts steps of 6000 at 15 FPS, no drift); a tick more
    than one frame late re-anchors the clock instead of bursting. On underrun the last picture is repeated
    (the engine counts the stall); before start the engine's idle card is shown. ``on_shown`` is called
    with each tick's :class:`PlayoutItem` just after the frame went out (soon after, on the loop), so events
    tied to the screen follow the picture. A sink that raises is removed and logged; nothing stops the
    clock but :meth:`stop`. With ``stamp`` every generated frame gets the :mod:`stamp` band (its index and
    the number of prompt switches so far), whatever the generator: latency probes read it.
    """

    def __init__(
        self,
        engine: Engine,
        fps: int = PLAYBACK_FPS,
        on_shown: Callable[[PlayoutItem], None] | None = None,
        stamp: bool = False,
    ) -> None:
        if CLOCK_RATE % fps:
            raise ValueError(f"fps must divide {CLOCK_RATE}")
        self.engine = engine
        self.fps = fps
        self.step = CLOCK_RATE // fps
        engine.playout_period = 1.0 / fps
        self.frames_sent = 0  # ticks since the session began (each a frame on air)
        self.repeats = 0  # ticks that repeated the picture for a stall or a pause
        self.last_index: int | None = None  # video frame index of the picture on screen (None: idle card)
        self.latest: OnAirFrame | None = None
        self.sinks: list[FrameSink] = []
        self._on_shown = on_shown
        self.stamp = stamp
        self._prompt_number = 0
        self._planes: np.ndarray | None = None
        self._idle: np.ndarray | None = None
        self._waiters: list[asyncio.Future[OnAirFrame | None]] = []
        self._task: asyncio.Task | None = None
        self._stopped = False

    # --- life -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin ticking (on the running loop); pts 0 is the first tick."""
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="on-air-clock")

    def stop(self) -> None:
        """Stop ticking; every viewer track ends (its ``recv`` raises ``MediaStreamError``)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
        self._wake(None)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- fan-out --------------------------------------------------------------------------------------

    def track(self) -> ViewerTrack:
        """A new viewer track on this clock (one per peer)."""
        return ViewerTrack(self)

    def add_sink(self, sink: FrameSink) -> None:
        if sink not in self.sinks:
            self.sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        with contextlib.suppress(ValueError):
            self.sinks.remove(sink)

    async def next_frame(self, after: int | None) -> OnAirFrame | None:
        """The latest frame when its pts is past ``after`` (None: any), else the next one; None once stopped."""
        latest = self.latest
        if self._stopped:
            return None
        if latest is not None and (after is None or latest.pts > after):
            return latest
        waiter: asyncio.Future[OnAirFrame | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return await waiter

    # --- ticking --------------------------------------------------------------------------------------

    async def _run(self) -> None:
        pts, anchor = -self.step, None
        while True:
            pts += self.step
            now = time.monotonic()
            if anchor is None:
                anchor = now - pts / CLOCK_RATE
            due = anchor + pts / CLOCK_RATE
            if now - due > self.step / CLOCK_RATE:  # more than a frame late: re-anchor rather than burst
                anchor = now - pts / CLOCK_RATE
            else:
                await asyncio.sleep(max(0.0, due - now))
            try:
                self.tick(pts)
            except Exception:  # a bug in one tick must not stop the picture
                log.exception("the on-air clock failed a tick")

    def tick(self, pts: int) -> OnAirFrame:
        """Put one frame on air at ``pts`` (90 kHz ticks): engine -> yuv420p -> viewers, sinks, ``on_shown``."""
        item = self.engine.next_frame()
        repeat = True
        if item.kind is Playout.FRAME and item.image is not None:
            self._planes, self.last_index, repeat = to_yuv420p(item.image), item.index, False
            if self.stamp:
                self._stamp(self._planes, item)
        elif item.kind is Playout.IDLE:
            if self._idle is None:
                self._idle = to_yuv420p(self.engine.idle_card)
            repeat = self._planes is self._idle
            self._planes, self.last_index = self._idle, None
        else:
            self.repeats += 1
        if self._planes is None:  # a stall or pause before any picture: the idle card
            if self._idle is None:
                self._idle = to_yuv420p(self.engine.idle_card)
            self._planes = self._idle
        frame = OnAirFrame(self._planes, pts, self.last_index, repeat, time.time())
        self.latest = frame
        self.frames_sent += 1
        self._wake(frame)
        for sink in list(self.sinks):
            try:
                sink.on_air(frame)
            except Exception:
                log.exception("output %r failed; removing it", sink)
                self.remove_sink(sink)
        if self._on_shown is not None:
            with contextlib.suppress(RuntimeError):  # no loop (a test ticking by hand): nobody to tell
                asyncio.get_running_loop().call_soon(self._shown, item)
        return frame

    def _stamp(self, planes: np.ndarray, item: PlayoutItem) -> None:
        """The stamp band into the luma plane of a fresh frame (the synthetic generator's numbering)."""
        if item.applied is not None:
            self._prompt_number = 0 if item.frame == 0 else self._prompt_number + 1
        draw_stamp(planes[: self.engine.geometry.height], Stamp(item.index or 0, self._prompt_number))

    def _shown(self, item: PlayoutItem) -> None:
        try:
            if self._on_shown is not None:
                self._on_shown(item)
        except Exception:
            log.exception("on_shown failed")

    def _wake(self, frame: OnAirFrame | None) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(frame)


class ViewerTrack(MediaStreamTrack):
    """One viewer's video track: the clock's latest frame, never a queue (a busy encoder skips frames).

    Every viewer gets the same pts for the same picture; add it to a peer directly (one track per peer).
    """

    kind = "video"

    def __init__(self, clock: OnAirClock) -> None:
        super().__init__()
        self.clock = clock
        self.frames_sent = 0
        self._last_pts: int | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.clock.next_frame(self._last_pts)
        if frame is None or self.readyState != "live":
            self.stop()
            raise MediaStreamError
        self._last_pts = frame.pts
        video = VideoFrame.from_ndarray(frame.planes, format="yuv420p")  # its own frame: encoders write to it
        video.pts, video.time_base = ticks_to_frame_pts(frame.pts), FRAME_TIME_BASE
        self.frames_sent += 1
        return video
