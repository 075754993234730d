"""Encode once for WebRTC viewers: H.264 viewer tracks carrying the session's shared encoder's packets.

aiortc sends an ``av.Packet`` from a track as it is (``H264Encoder.pack``), so every H.264 viewer of a
session gets the same bytes and costs packetisation and encryption, not an encode. What is lost: per-viewer
congestion control (REMB cannot change a shared bitrate) and keyframes on PLI (aiortc forces them only for
frames it encodes); a keyframe comes every second, when a viewer joins and when one falls behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ..outputs.encoder import TIME_BASE, EncodedPacket, SharedEncoder

MAX_QUEUE = 30  # packets a viewer's sender may lag (2 s); beyond, it skips to the next keyframe


class PacketTrack(MediaStreamTrack):
    """One viewer's track of encoded packets, fed by its session's :class:`PacketFanOut`."""

    kind = "video"

    def __init__(self, fan_out: PacketFanOut) -> None:
        super().__init__()
        self._fan_out = fan_out
        self._queue: deque[EncodedPacket] = deque()
        self._ready = asyncio.Event()
        self._started = False
        self.packets_sent = 0
        self.skipped = 0  # packets skipped: before the first keyframe, or after falling behind

    def push(self, packet: EncodedPacket) -> None:
        if not self._started and not packet.keyframe:
            self.skipped += 1
            return
        self._started = True
        self._queue.append(packet)
        if len(self._queue) > MAX_QUEUE:  # the sender fell behind: resume at the next keyframe
            self.skipped += len(self._queue)
            self._queue.clear()
            self._started = False
            self._fan_out.request_keyframe()
        self._ready.set()

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live" or self._fan_out.ended:
                self.stop()
                raise MediaStreamError
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 1.0)
        if self.readyState != "live":
            raise MediaStreamError
        encoded = self._queue.popleft()
        packet = av.Packet(encoded.data)
        packet.pts = packet.dts = encoded.pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = encoded.keyframe
        self.packets_sent += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._fan_out.leave(self)


class PacketFanOut:
    """A session's H.264 viewers: one sink on the shared encoder, one hop to the event loop per packet."""

    def __init__(self, encoder: Callable[[], SharedEncoder]) -> None:
        """``encoder`` gives the session's running shared encoder (Constrained Baseline, see docs/outputs.md)."""
        self._encoder_of = encoder
        self._encoder: SharedEncoder | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.tracks: set[PacketTrack] = set()
        self.closed = False

    def track(self) -> PacketTrack:
        """A new viewer's track; it starts at a keyframe asked for now."""
        self._loop = asyncio.get_running_loop()
        encoder = self._encoder_of()
        if encoder is not self._encoder:
            if self._encoder is not None:
                self._encoder.remove(self)
            self._encoder = encoder
            encoder.add(self)
        elif self.tracks:
            encoder.request_keyframe()
        else:
            encoder.add(self)
        track = PacketTrack(self)
        self.tracks.add(track)
        return track

    @property
    def ended(self) -> bool:
        """Closed with its session, or its encoder failed."""
        return self.closed or (self._encoder is not None and not self._encoder.alive)

    def request_keyframe(self) -> None:
        if self._encoder is not None:
            self._encoder.request_keyframe()

    def leave(self, track: PacketTrack) -> None:
        self.tracks.discard(track)
        if not self.tracks and self._encoder is not None:
            self._encoder.remove(self)  # no viewer: the encoder may stop encoding for them

    def close(self) -> None:
        self.closed = True
        for track in list(self.tracks):
            track.stop()

    def on_packet(self, packet: EncodedPacket) -> None:  # the encoder's thread
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody watches any more
                self._loop.call_soon_threadsafe(self._fan_out, packet)

    def _fan_out(self, packet: EncodedPacket) -> None:
        for track in list(self.tracks):
            track.push(packet)
