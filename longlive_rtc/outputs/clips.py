"""Clips: "the last N seconds" from a bounded ring of a session's encoded packets.

The ring holds whole keyframe intervals (groups of pictures) covering at least ``seconds``; a clip
starts at the keyframe nearest to N seconds before the newest packet, so with one keyframe a second
it is N seconds long to within half a second.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path
from typing import Any

from .encoder import CLOCK_RATE, EncodedPacket
from .mp4 import Mp4Writer, WriteFailed
from .recording import Describe, iso
from .replay import ShownFrames, replay_document, write_document
from .store import Store, StoreFull

DEFAULT_SECONDS = 30.0
MAX_BYTES = 64 * 1024 * 1024  # the ring never holds more than this, whatever the bitrate


class NothingToClip(Exception):
    """The ring holds no keyframe yet (the encoder has only just started)."""

    status = 409


class ClipRing:
    """The newest ``seconds`` (plus up to one keyframe interval) of packets; a :class:`PacketSink`."""

    def __init__(self, seconds: float = DEFAULT_SECONDS, max_bytes: int = MAX_BYTES) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._packets: deque[EncodedPacket] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def on_packet(self, packet: EncodedPacket) -> None:
        with self._lock:
            if not self._packets and not packet.keyframe:
                return  # the ring always starts at a keyframe
            self._packets.append(packet)
            self._bytes += len(packet.data)
            self._trim(packet.pts)

    def _trim(self, newest: int) -> None:
        """Drop whole groups of pictures from the front while the rest still covers ``seconds``."""
        span = self.seconds * CLOCK_RATE
        while True:
            second = next((i for i, p in enumerate(self._packets) if i and p.keyframe), None)
            if second is None:
                return
            if newest - self._packets[second].pts < span and self._bytes <= self.max_bytes:
                return
            for _ in range(second):
                self._bytes -= len(self._packets.popleft().data)

    def last(self, seconds: float) -> list[EncodedPacket]:
        """The packets of the last ``seconds``, from the keyframe nearest to that start."""
        with self._lock:
            packets = list(self._packets)
        if not packets:
            raise NothingToClip("no video has been encoded yet for this session; try again in a second")
        step = packets[1].pts - packets[0].pts if len(packets) > 1 else 0
        start = packets[-1].pts + step - seconds * CLOCK_RATE
        keyframes = [i for i, p in enumerate(packets) if p.keyframe]
        first = min(keyframes, key=lambda i: (abs(packets[i].pts - start), -i))
        return packets[first:]

    @property
    def held_seconds(self) -> float:
        with self._lock:
            if not self._packets:
                return 0.0
            return (self._packets[-1].pts - self._packets[0].pts) / CLOCK_RATE


def write_clip(
    packets: list[EncodedPacket], store: Store, session_id: str, size: tuple[int, int], fps: int, describe: Describe,
    asked: float,
) -> dict[str, Any]:  # fmt: skip
    """Write a clip's MP4 and JSON (on a worker thread); its listing entry. :class:`StoreFull` if no room."""
    store.check_room(sum(len(packet.data) for packet in packets))
    stem = store.new_stem(session_id, "clip")
    mp4, json_path = stem.with_suffix(".mp4"), stem.with_suffix(".json")
    writer = Mp4Writer(mp4, size[0], size[1], fps, store)
    shown = ShownFrames()
    try:
        for packet in packets:
            writer.write(packet)
            shown.see(packet)
    except WriteFailed as exc:
        writer.close()
        _discard(mp4, store, writer.size)
        raise StoreFull(f"the clip was not saved: {exc}", exc.reason) from None
    writer.close()
    if writer.failure is not None:
        _discard(mp4, store, writer.size)
        raise StoreFull(f"the clip was not saved: {writer.failure}", writer.failure.reason)
    info = {
        "name": mp4.name, "kind": "clip", "status": "finished", "started": iso(packets[0].wall),
        "stopped": iso(packets[-1].wall), "reason": None, "message": None, "frames": writer.committed,
        "seconds": round(writer.duration, 3), "bytes": writer.size, "asked_seconds": asked,
    }  # fmt: skip
    document = replay_document(describe(), shown.range, mp4, **info, runs=shown.runs)
    store.add(write_document(json_path, document))
    return info


def _discard(path: Path, store: Store, size: int) -> None:
    path.unlink(missing_ok=True)
    store.refund(size)
