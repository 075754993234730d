"""One shared H.264 encoder per session: on-air frames in, encoded packets out to every output.

``on_air`` (the event loop) only queues the frame; a thread of its own encodes it. The queue is bounded:
when the encoder falls behind, the oldest frame waiting is dropped and counted, the clock never waits.
Packets are Annex B with SPS/PPS before every keyframe (a reader may start at any keyframe), no
B-frames (pts = dts, no reordering delay), a keyframe every ``keyframe_seconds`` and on request (a
recording starting, a live reader joining).
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import re
import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import av
from av.video.frame import PictureType

from ..generators.base import PLAYBACK_FPS
from . import CLOCK_RATE, OnAirFrame

log = logging.getLogger(__name__)

TIME_BASE = fractions.Fraction(1, CLOCK_RATE)
DEFAULT_BITRATE = 2_000_000
QUEUE_FRAMES = 30  # frames waiting for the encoder at most (2 s at 15 FPS); older ones are dropped


MIN_BITRATE, MAX_BITRATE = 100_000, 50_000_000


def parse_bitrate(text: str) -> int:
    """``"2M"``, ``"800k"``, ``"1500000"`` -> bits per second (k/M are powers of 1000), within 100k..50M."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([km]?)(?:bit/?s|bps|b)?\s*", str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not a bitrate (e.g. 2M, 800k)")
    bits = int(float(match.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2)])
    if not MIN_BITRATE <= bits <= MAX_BITRATE:
        raise ValueError(f"a bitrate of {bits} bit/s is outside {MIN_BITRATE}..{MAX_BITRATE}")
    return bits


@dataclass(frozen=True)
class EncodedPacket:
    """One encoded frame, with the on-air timing of the frame it came from."""

    data: bytes  # Annex B H.264 access unit
    pts: int  # 90 kHz ticks on the session's clock (dts is the same: no B-frames)
    keyframe: bool  # an IDR with SPS/PPS in front: decoding may start here
    video_frame: int | None  # the generated video frame shown, None for the idle card
    wall: float  # time.time() when the frame went on air


class PacketSink(Protocol):
    """An output fed every packet the shared encoder makes (on the encoder's thread)."""

    def on_packet(self, packet: EncodedPacket) -> None:
        """Take one packet; must return quickly (queue it); an exception detaches the sink."""


class SharedEncoder:
    """A session's H.264 encoder: a :class:`~longlive_rtc.outputs.FrameSink` feeding :class:`PacketSink` s."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: int = PLAYBACK_FPS,
        bitrate: int = DEFAULT_BITRATE,
        keyframe_seconds: float = 1.0,
        queue_frames: int = QUEUE_FRAMES,
        name: str = "session",
        profile: str = "high",
    ) -> None:
        """``profile``: ``high``, or ``baseline`` (Constrained Baseline) for WebRTC viewers (encoded once)."""
        if width % 2 or height % 2:
            raise ValueError("H.264 (yuv420p) needs an even width and height")
        self.width, self.height, self.fps, self.bitrate = width, height, fps, bitrate
        self.profile = profile
        self.keyframe_interval = max(1, round(keyframe_seconds * fps))  # frames between keyframes
        self.frames_in = 0
        self.frames_encoded = 0
        self.dropped = 0  # frames dropped from a full queue (the encoder was behind)
        self.out_of_order = 0  # frames whose pts did not advance (skipped)
        self.unwatched = 0  # frames not encoded: no output was attached
        self.packets = 0
        self.failed: str | None = None  # why the encoder stopped, if it failed
        self._queue: deque[OnAirFrame] = deque()
        self._queue_frames = queue_frames
        self._sinks: list[PacketSink] = []
        self._keyframe_wanted = True
        self._last_pts: int | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=f"h264-{name}", daemon=True)
        self._thread.start()

    # --- the FrameSink side (event loop) -----------------------------------------------------------

    def on_air(self, frame: OnAirFrame) -> None:
        """Queue one frame; when the queue is full the oldest waiting frame is dropped (never blocks)."""
        with self._cond:
            if self._closed:
                return
            if not self._sinks:  # nobody to encode for: the next frame someone gets starts a keyframe
                self.unwatched += 1
                self._keyframe_wanted = True
                return
            self.frames_in += 1
            self._queue.append(frame)
            while len(self._queue) > self._queue_frames:
                self._queue.popleft()
                self.dropped += 1
            self._cond.notify()

    # --- outputs -----------------------------------------------------------------------------------

    def add(self, sink: PacketSink, keyframe: bool = True) -> None:
        """Feed ``sink`` every packet from now on; ``keyframe`` asks for one at once (it may start there)."""
        with self._cond:
            self._sinks.append(sink)
            self._keyframe_wanted |= keyframe

    def remove(self, sink: PacketSink) -> None:
        with self._cond, contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    def request_keyframe(self) -> None:
        with self._cond:
            self._keyframe_wanted = True

    @property
    def taken(self) -> int:
        """Frames handed in so far (each is encoded, dropped or skipped in turn)."""
        return self.frames_in

    def caught_up(self, taken: int) -> bool:
        """Whether every one of the first ``taken`` frames has been encoded (or dropped, or skipped)."""
        return self.frames_encoded + self.dropped + self.out_of_order >= taken or not self.alive

    @property
    def sinks(self) -> int:
        with self._cond:
            return len(self._sinks)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self.failed is None

    def stats(self) -> dict[str, object]:
        return {
            "frames_in": self.frames_in, "frames_encoded": self.frames_encoded, "dropped": self.dropped,
            "unwatched": self.unwatched, "profile": self.profile,
            "packets": self.packets, "bitrate": self.bitrate, "keyframe_interval": self.keyframe_interval,
            "failed": self.failed,
        }  # fmt: skip

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (frames still queued are dropped) and detach every sink."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # --- the encoder thread -----------------------------------------------------------------------

    def _codec(self) -> av.VideoCodecContext:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base = TIME_BASE
        codec.framerate = fractions.Fraction(self.fps, 1)
        codec.gop_size = self.keyframe_interval
        codec.max_b_frames = 0
        codec.bit_rate = self.bitrate
        kbps = max(1, self.bitrate // 1000)
        codec.options = {  # half a second of VBV: a steady rate for live readers; no scene-cut keyframes
            "preset": "veryfast", "tune": "zerolatency", "profile": self.profile, "forced-idr": "1",
            "x264-params": f"scenecut=0:vbv-maxrate={kbps}:vbv-bufsize={max(1, kbps // 2)}",
        }  # fmt: skip
        codec.open()
        return codec

    def _work(self) -> None:
        try:
            codec = self._codec()
            while True:
                with self._cond:
                    while not (self._closed or self._queue):
                        self._cond.wait()
                    if self._closed:
                        return
                    frame = self._queue.popleft()
                    keyframe, self._keyframe_wanted = self._keyframe_wanted, False
                if self._last_pts is not None and frame.pts <= self._last_pts:
                    self.out_of_order += 1
                    continue
                self._last_pts = frame.pts
                self._encode(codec, frame, keyframe)
        except Exception as exc:  # an encoder failure stops this output, never the stream
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("the shared H.264 encoder failed")
        finally:
            with self._cond:
                self._closed = True
                self._sinks.clear()

    def _encode(self, codec: av.VideoCodecContext, frame: OnAirFrame, keyframe: bool) -> None:
        picture = av.VideoFrame.from_ndarray(frame.planes, format="yuv420p")
        picture.pts, picture.time_base = frame.pts, TIME_BASE
        if keyframe:
            picture.pict_type = PictureType.I
        for packet in codec.encode(picture):  # zerolatency, no B-frames: the packet of this very frame
            pts = frame.pts if packet.pts is None else packet.pts
            self._deliver(EncodedPacket(bytes(packet), pts, packet.is_keyframe, frame.video_frame, frame.wall))
        self.frames_encoded += 1  # counted once its packet is with every output

    def _deliver(self, packet: EncodedPacket) -> None:
        self.packets += 1
        with self._cond:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink.on_packet(packet)
            except Exception:
                log.exception("an output failed; it is detached")
                self.remove(sink)
