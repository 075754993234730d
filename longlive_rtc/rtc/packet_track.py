"""Encode once for WebRTC viewers: H.264 viewer tracks carrying the session's shared encoder's packets.

aiortc sends an ``av.Packet`` from a track as it is (``H264Encoder.pack``), so every H.264 viewer of a
session gets the same bytes and costs packetisation and encryption, not an encode. What is lost: per-viewer
congestion control (REMB cannot change a shared bitrate). Keyframes are asked of the shared encoder when a
viewer's sender starts, when a viewer sends PLI/FIR (:func:`forward_keyframe_requests`) and when a sender
falls behind, at most one every ``KEYFRAME_GAP`` seconds per session (requests in between are merged into
one at the end of the gap), so a flood of PLIs cannot blow the bitrate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

import av
from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from ..outputs.encoder import TIME_BASE, EncodedPacket, SharedEncoder

log = logging.getLogger(__name__)

MAX_QUEUE = 30  # packets a viewer's sender may lag (2 s); beyond, it skips to the next keyframe
KEYFRAME_GAP = 0.5  # seconds between keyframes forced for a session's viewers, at least


class PacketTrack(MediaStreamTrack):
    """One viewer's track of encoded packets, fed by its session's :class:`PacketFanOut`."""

    kind = "video"

    def __init__(self, fan_out: PacketFanOut) -> None:
        super().__init__()
        self._fan_out = fan_out
        self._queue: deque[EncodedPacket] = deque()
        self._ready = asyncio.Event()
        self._listening = False  # set at the sender's first recv(): packets before it would only be stale
        self._started = False
        self.packets_sent = 0
        self.skipped = 0  # packets skipped: before the first keyframe, or after falling behind

    def push(self, packet: EncodedPacket) -> None:
        if not self._listening:
            return
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

    def request_keyframe(self) -> None:
        """This viewer needs a keyframe (a PLI or FIR came): ask the session's encoder, rate-limited."""
        self._fan_out.request_keyframe()

    async def recv(self) -> av.Packet:
        if not self._listening:  # the sender runs (DTLS is up): start at a keyframe made now
            self._listening = True
            self._fan_out.request_keyframe()
        while not self._queue:
            if self.readyState != "live" or self._fan_out.ended:
                self.stop()
                raise MediaStreamError
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):  # not wait_for: on 3.11 it can swallow a cancel
                    await self._ready.wait()
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
        self.keyframe_requests = 0  # asked for: senders starting, PLI/FIR, senders fallen behind
        self.keyframes_forced = 0  # asked of the encoder: at most one per KEYFRAME_GAP
        self._forced_at = -KEYFRAME_GAP  # loop time of the last one
        self._deferred: asyncio.TimerHandle | None = None

    def track(self) -> PacketTrack:
        """A new viewer's track; it starts at a keyframe asked for when its sender first reads it."""
        self._loop = asyncio.get_running_loop()
        encoder = self._encoder_of()
        if encoder is not self._encoder:
            if self._encoder is not None:
                self._encoder.remove(self)
            self._encoder = encoder
            encoder.add(self, keyframe=False)
        elif not self.tracks:
            encoder.add(self, keyframe=False)
        track = PacketTrack(self)
        self.tracks.add(track)
        return track

    @property
    def ended(self) -> bool:
        """Closed with its session, or its encoder failed."""
        return self.closed or (self._encoder is not None and not self._encoder.alive)

    def request_keyframe(self) -> None:
        """Ask the encoder for a keyframe now, or, within ``KEYFRAME_GAP`` of the last one, once at its end."""
        self.keyframe_requests += 1
        if self._deferred is not None or self._loop is None:
            return  # one is already due: it serves this request too
        wait = self._forced_at + KEYFRAME_GAP - self._loop.time()
        if wait > 0:
            self._deferred = self._loop.call_later(wait, self._force_keyframe)
        else:
            self._force_keyframe()

    def _force_keyframe(self) -> None:
        self._deferred = None
        if self._encoder is None or self.closed:
            return
        assert self._loop is not None
        self._forced_at = self._loop.time()
        self.keyframes_forced += 1
        self._encoder.request_keyframe()

    def stats(self) -> dict[str, int]:
        return {
            "viewers": len(self.tracks), "keyframe_requests": self.keyframe_requests,
            "keyframes_forced": self.keyframes_forced, "packets_skipped": sum(t.skipped for t in self.tracks),
        }  # fmt: skip

    def leave(self, track: PacketTrack) -> None:
        self.tracks.discard(track)
        if not self.tracks and self._encoder is not None:
            self._encoder.remove(self)  # no viewer: the encoder may stop encoding for them

    def close(self) -> None:
        self.closed = True
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        for track in list(self.tracks):
            track.stop()

    def on_packet(self, packet: EncodedPacket) -> None:  # the encoder's thread
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody watches any more
                self._loop.call_soon_threadsafe(self._fan_out, packet)

    def _fan_out(self, packet: EncodedPacket) -> None:
        for track in list(self.tracks):
            track.push(packet)


def forward_keyframe_requests(sender: RTCRtpSender, track: PacketTrack) -> bool:
    """Make ``sender`` pass its viewer's PLI/FIR on to ``track``'s shared encoder; False if it cannot.

    An adapter over aiortc internals, as aiortc has no public hook: ``RTCRtpSender._handle_rtcp_packet``
    answers a PLI or FIR by calling ``self._send_keyframe()``, which only sets a flag its own encoder reads
    (aiortc 1.x; a packet track never reaches that encoder). This wraps that one method on this sender
    instance, keeping aiortc's own behaviour, and also asks the track for a keyframe (rate-limited by its
    :class:`PacketFanOut`). tests/test_outputs_webrtc.py checks it with a real PLI; should aiortc rename the
    method, this logs a warning and viewers get keyframes only on join, when behind and every GOP.
    """
    original = getattr(sender, "_send_keyframe", None)
    if not callable(original):
        log.warning("this aiortc has no RTCRtpSender._send_keyframe: PLI/FIR will not force keyframes")
        return False

    def send_keyframe() -> None:
        original()
        track.request_keyframe()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    return True
