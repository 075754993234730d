"""Live MPEG-TS: one muxer per session over the shared encoder's packets, many readers.

The muxer runs on the encoder's thread (it only copies bytes) while readers are connected, and hands
each chunk to the event loop, where every reader has a queue of its own. A reader starts at a keyframe
(PAT/PMT come with each) and is dropped once it lags more than ``max_lag`` seconds or ``max_bytes``
behind: a slow reader never makes the others wait nor the server buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import deque

import av

from .encoder import TIME_BASE, EncodedPacket, SharedEncoder

log = logging.getLogger(__name__)

#: The muxer's options: written at once; PCR close to the timestamps so players buffer little.
TS_OPTIONS = {"flush_packets": "1", "max_delay": "0", "mpegts_flags": "resend_headers"}
MAX_LAG = 3.0  # seconds a reader may fall behind before it is dropped
MAX_BYTES = 8 * 1024 * 1024
NO_VIDEO_TIMEOUT = 10.0  # a reader that got nothing for this long is ended (the encoder failed or stopped)


class TooManyReaders(Exception):
    status = 503


class TsReader:
    """One reader's queue of TS chunks (on the event loop); starts at a keyframe."""

    def __init__(self, max_lag: float = MAX_LAG, max_bytes: int = MAX_BYTES) -> None:
        self.max_lag, self.max_bytes = max_lag, max_bytes
        self.sent_bytes = 0
        self.closed: str | None = None  # why it was closed
        self.lagged = False  # closed for falling behind (its queue here, or its connection)
        self._chunks: deque[tuple[bytes, float]] = deque()
        self._bytes = 0
        self._started = False
        self._ready = asyncio.Event()

    def push(self, chunk: bytes, keyframe: bool, wall: float) -> None:
        if self.closed is not None or not (self._started or keyframe):
            return
        self._started = True
        self._chunks.append((chunk, wall))
        self._bytes += len(chunk)
        lag = time.time() - self._chunks[0][1]
        if self._bytes > self.max_bytes or (len(self._chunks) > 1 and lag > self.max_lag):
            self.drop(f"too slow: {lag:.1f} s ({self._bytes} bytes) behind the live stream")
        self._ready.set()

    def drop(self, reason: str) -> None:
        """Close a reader that fell behind (``lagged``; the feed counts it)."""
        if self.closed is None:
            self.lagged = True
        self.close(reason)

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self._chunks.clear()
            self._bytes = 0
        self._ready.set()

    async def next(self) -> bytes | None:
        """Everything waiting (at least one chunk), or None once the reader is closed."""
        while not self._chunks and self.closed is None:
            self._ready.clear()
            try:
                async with asyncio.timeout(NO_VIDEO_TIMEOUT):  # not wait_for: on 3.11 it can swallow a cancel
                    await self._ready.wait()
            except TimeoutError:
                self.close(f"no video for {NO_VIDEO_TIMEOUT:g} s")
        if self.closed is not None:
            return None
        data = b"".join(chunk for chunk, _ in self._chunks)
        self._chunks.clear()
        self._bytes = 0
        self.sent_bytes += len(data)
        return data


class _Chunks(io.RawIOBase):
    """Collects what the muxer writes."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class TsFeed:
    """A session's live MPEG-TS: a :class:`PacketSink` while at least one reader is connected."""

    def __init__(
        self, encoder: SharedEncoder, loop: asyncio.AbstractEventLoop, max_readers: int = 16,
        max_lag: float = MAX_LAG, max_bytes: int = MAX_BYTES,
    ) -> None:  # fmt: skip
        self._encoder, self._loop = encoder, loop
        self.max_readers, self.max_lag, self.max_bytes = max_readers, max_lag, max_bytes
        self.readers: set[TsReader] = set()
        self.dropped = 0  # readers dropped for lagging (their queue here, or their connection)
        self._muxer: tuple[av.container.OutputContainer, av.video.stream.VideoStream, _Chunks] | None = None
        self._attached = False

    # --- readers (event loop) ------------------------------------------------------------------------

    def open(self) -> TsReader:
        if len(self.readers) >= self.max_readers:
            raise TooManyReaders(f"this session has its maximum of {self.max_readers} MPEG-TS readers")
        reader = TsReader(self.max_lag, self.max_bytes)
        self.readers.add(reader)
        if not self._attached:
            self._attached = True
            self._encoder.add(self)
        else:
            self._encoder.request_keyframe()
        return reader

    def leave(self, reader: TsReader) -> None:
        reader.close("left")
        if reader in self.readers:
            self.readers.discard(reader)
            self.dropped += reader.lagged  # its connection did not take the data in time
        if not self.readers and self._attached:
            self._attached = False
            self._encoder.remove(self)  # the muxer is closed on the next packet it would have had

    def close(self) -> None:
        for reader in list(self.readers):
            reader.close("the session ended")
        self.readers.clear()
        self._attached = False
        self._encoder.remove(self)

    def _fan_out(self, chunk: bytes, keyframe: bool, wall: float) -> None:
        for reader in list(self.readers):
            reader.push(chunk, keyframe, wall)
            if reader.closed is not None:
                self.dropped += reader.lagged
                log.info("an MPEG-TS reader was dropped: %s", reader.closed)
                self.readers.discard(reader)
        if not self.readers and self._attached:
            self._attached = False
            self._encoder.remove(self)

    # --- the encoder's thread ------------------------------------------------------------------------

    def on_packet(self, packet: EncodedPacket) -> None:
        if self._muxer is None:
            if not packet.keyframe:
                return
            self._muxer = self._open_muxer()
        container, stream, chunks = self._muxer
        av_packet = av.Packet(packet.data)
        av_packet.pts = av_packet.dts = packet.pts
        av_packet.time_base = TIME_BASE
        av_packet.is_keyframe = packet.keyframe
        av_packet.stream = stream
        container.mux(av_packet)
        data = chunks.take()
        if data:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody reads any more
                self._loop.call_soon_threadsafe(self._fan_out, data, packet.keyframe, packet.wall)

    def _open_muxer(self):
        chunks = _Chunks()
        container = av.open(chunks, "w", format="mpegts", options=TS_OPTIONS)
        stream = container.add_mux_stream("h264", rate=self._encoder.fps)
        stream.width, stream.height = self._encoder.width, self._encoder.height
        stream.time_base = TIME_BASE
        return container, stream, chunks
