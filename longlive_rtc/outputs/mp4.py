"""Encoded packets into a fragmented MP4 (one fragment per keyframe) through PyAV's muxer.

Fragmented so that what is on disk is always playable: a fragment is written whole once the next
keyframe comes, and when a write fails (quota, full disk) the file is cut back to the last whole
fragment. Every byte is charged to the store's quota before it is written.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import av

from .encoder import TIME_BASE, EncodedPacket
from .store import Store, StoreFull, is_disk_full

log = logging.getLogger(__name__)

MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


class WriteFailed(Exception):
    """The MP4 could not be written further; ``reason`` is ``quota``, ``disk full`` or ``error``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _ChargedFile(io.RawIOBase):
    """A file whose writes are charged to the store first; remembers the last good length."""

    def __init__(self, path: Path, store: Store | None) -> None:
        super().__init__()
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self._store = store
        self.size = 0
        self.good = 0  # length at the end of the last whole fragment
        self.failure: WriteFailed | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.failure is not None:
            raise self.failure
        size = len(data)
        try:
            if self._store is not None:
                self._store.charge(size)
            try:
                self._file.write(data)
                self._file.flush()
            except OSError:
                if self._store is not None:
                    self._store.refund(size)
                raise
        except StoreFull as exc:
            self.failure = WriteFailed(str(exc), exc.reason)
            raise self.failure from None
        except OSError as exc:
            reason = "disk full" if is_disk_full(exc) else "error"
            self.failure = WriteFailed(f"cannot write the recording: {exc.strerror or exc}", reason)
            raise self.failure from None
        self.size += size
        return size

    def cut_back(self) -> None:
        """Drop a partly written fragment: the file ends at the last whole one."""
        if self.size > self.good:
            try:
                self._file.truncate(self.good)
            except OSError:
                log.exception("could not cut a recording back to its last whole fragment")
                return
            if self._store is not None:
                self._store.refund(self.size - self.good)
            self.size = self.good

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class Mp4Writer:
    """Writes packets (the first one a keyframe) with their on-air timing, from pts 0."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int,
        store: Store | None = None,
        on_commit: Callable[[EncodedPacket], None] | None = None,
    ) -> None:
        """``on_commit`` is called with each packet once it is in a whole fragment on disk, in order."""
        self.path = Path(path)
        self._file = _ChargedFile(self.path, store)
        self._container = av.open(self._file, "w", format="mp4", options=MP4_OPTIONS)
        self._stream = self._container.add_mux_stream("h264", rate=fps, width=width, height=height)
        self._stream.time_base = TIME_BASE
        self._origin: int | None = None
        self._last_pts = -1
        self._step: int | None = None  # ticks between frames, from the first two
        self.frames = 0  # packets handed to the muxer
        self.committed = 0  # frames in whole fragments on disk
        self.first: EncodedPacket | None = None
        self.last: EncodedPacket | None = None  # the last packet muxed
        self.last_committed: EncodedPacket | None = None  # the last packet in a whole fragment on disk
        self._fragment: list[EncodedPacket] = []  # muxed since the last keyframe: not on disk as a whole yet
        self._on_commit = on_commit
        self.failure: WriteFailed | None = None
        self._closed = False

    @property
    def size(self) -> int:
        return self._file.size

    @property
    def duration(self) -> float:
        """Seconds of video muxed (from the first frame to the end of the last)."""
        return self._seconds_to(self.last)

    @property
    def committed_duration(self) -> float:
        """Seconds of video in whole fragments on disk: what the file holds once closed."""
        return self._seconds_to(self.last_committed)

    def _seconds_to(self, last: EncodedPacket | None) -> float:
        if self.first is None or last is None:
            return 0.0
        return (last.pts + (self._step or 0) - self.first.pts) / TIME_BASE.denominator

    def write(self, packet: EncodedPacket) -> None:
        """Mux one packet; :class:`WriteFailed` once the file cannot grow (it stays valid)."""
        if self.failure is not None:
            raise self.failure
        if self._origin is None:
            if not packet.keyframe:
                raise ValueError("an MP4 must start at a keyframe")
            self._origin = packet.pts
        pts = packet.pts - self._origin
        if pts <= self._last_pts:
            return  # never feed the muxer a non-increasing timestamp
        if self.last is not None and self._step is None:
            self._step = packet.pts - self.last.pts
        av_packet = av.Packet(packet.data)
        av_packet.pts = av_packet.dts = pts
        av_packet.time_base = TIME_BASE
        av_packet.is_keyframe = packet.keyframe
        av_packet.stream = self._stream
        try:
            self._container.mux(av_packet)
        except Exception as exc:
            self._failed(exc)
            raise self.failure from None
        if packet.keyframe:  # the fragment before this keyframe is on disk now
            self.committed = self.frames
            self._commit()
        self._fragment.append(packet)
        self._file.good = self._file.size
        self._last_pts = pts
        self.frames += 1
        self.first = self.first or packet
        self.last = packet

    def _commit(self) -> None:
        """The open fragment is on disk whole."""
        fragment, self._fragment = self._fragment, []
        if fragment:
            self.last_committed = fragment[-1]
        if self._on_commit is not None:
            for packet in fragment:
                self._on_commit(packet)

    def _failed(self, exc: BaseException) -> None:
        failure = self._file.failure
        if failure is None:
            failure = WriteFailed(f"the MP4 muxer failed: {type(exc).__name__}: {exc}", "error")
        self.failure = failure
        self._file.cut_back()

    def close(self) -> None:
        """Write the last fragment (or cut back to the last whole one) and close the file."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.failure is None:
                self._container.close()
                self.committed = self.frames
                self._commit()
            else:
                try:
                    self._container.close()
                except Exception:
                    log.debug("closing a failed MP4 muxer", exc_info=True)
        except Exception as exc:
            self._failed(exc)
        finally:
            if self.failure is not None:
                self._file.cut_back()
            self._file.close()
