"""Outputs: what a session's pictures feed besides WebRTC viewers (recording, clips, MPEG-TS, WHIP out).

Every output is fed by the frames *as they go on air*: the on-air clock of a live session (in ``rtc/``)
hands each sink every frame it shows, at the moment it shows it, whether or not anyone watches. A sink's
``on_air`` must return at once (it is called on the event loop): outputs queue the frame and do their work
(encoding, writing) on a thread of their own, and fail alone. Layers: ``rtc`` imports ``outputs``;
``outputs`` imports only the core and PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

CLOCK_RATE = 90_000  # the pts clock of on-air frames and encoded packets (RTP's video clock)


@dataclass(frozen=True)
class OnAirFrame:
    """One frame as it went on air."""

    planes: np.ndarray  # yuv420p, uint8 [H * 3 / 2, W]; shared by every sink and viewer: never written to
    pts: int  # 90 kHz ticks on the session's clock (steps of 90000 / fps, drift-free)
    video_frame: int | None  # the generated video frame shown, None for the idle card
    repeat: bool  # the same picture as the frame before (a stall, pause or the idle card held)
    wall: float  # time.time() when it was sent


class FrameSink(Protocol):
    """Something fed every frame of a session as it goes on air."""

    def on_air(self, frame: OnAirFrame) -> None:
        """Take one frame; never blocks, never raises (an output that fails stops itself and says so)."""
