"""Recording: a session's encoded packets into an MP4 on a thread of its own, its replay JSON beside it.

The encoder's thread only queues packets here; the disk is written by this recording's thread, so a
slow or full disk never holds up the encoder, the stream or the generator. The recording stops by
itself when the quota is reached, the disk is full or the disk cannot keep up; the file written so far
stays valid (see :mod:`.mp4`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .encoder import EncodedPacket, SharedEncoder
from .mp4 import Mp4Writer, WriteFailed
from .replay import ShownFrames, replay_document, write_document
from .store import Store

log = logging.getLogger(__name__)

QUEUE_SECONDS = 10.0  # packets waiting for the disk at most; beyond, the disk is too slow: stop
#: A session's description for the replay JSON (see :func:`.replay.replay_document`); called on the
#: recording's thread, so it must only copy plain values.
Describe = Callable[[], dict[str, Any]]


def iso(seconds: float | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Recording:
    """One recording; starts at the next keyframe (asked for at once) and runs until :meth:`stop`."""

    def __init__(self, store: Store, session_id: str, encoder: SharedEncoder, describe: Describe) -> None:
        store.check_room(encoder.bitrate // 4)  # room for two seconds of video at least
        self.session_id = session_id
        self._store, self._encoder, self._describe = store, encoder, describe
        stem = store.new_stem(session_id, "rec")
        self.mp4, self.json = stem.with_suffix(".mp4"), stem.with_suffix(".json")
        self._shown = ShownFrames()  # of the frames in the file: a fragment cut off by the quota is not
        self._writer = Mp4Writer(self.mp4, encoder.width, encoder.height, encoder.fps, store, self._shown.see)
        self.started = time.time()
        self.stopped: float | None = None
        self.reason: str | None = None  # why it ended: stopped, quota, disk full, too slow, error, ...
        self.message: str | None = None  # what went wrong, when it did not end on request
        self._queue: deque[EncodedPacket] = deque()
        self._max_queue = max(1, round(QUEUE_SECONDS * encoder.fps))
        self._begun = False
        self._stop: str | None = None
        self._cond = threading.Condition()
        self._json_bytes = 0
        self._write_document()
        self._thread = threading.Thread(target=self._work, name=f"record-{session_id}", daemon=True)
        self._thread.start()
        encoder.add(self)  # asks for a keyframe: the file starts within a frame or two

    @property
    def name(self) -> str:
        return self.mp4.name

    @property
    def done(self) -> bool:
        return self.stopped is not None

    # --- from the encoder's thread -------------------------------------------------------------------

    def on_packet(self, packet: EncodedPacket) -> None:
        with self._cond:
            if self._stop is not None or (not self._begun and not packet.keyframe):
                return
            self._begun = True
            self._queue.append(packet)
            if len(self._queue) > self._max_queue:
                self._stop = "too slow"
            self._cond.notify()

    # --- from the owner ---------------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """End the recording (what is queued is still written); returns at once, see :meth:`wait`."""
        with self._cond:
            if self._stop is None:
                self._stop = reason
            self._cond.notify()

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait for the file and its JSON to be complete; False on timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def info(self) -> dict[str, Any]:
        writer = self._writer
        return {
            "name": self.name, "kind": "recording", "status": "finished" if self.done else "recording",
            "started": iso(self.started), "stopped": iso(self.stopped), "reason": self.reason,
            "message": self.message, "frames": writer.committed if self.done else writer.frames,
            "seconds": round(writer.committed_duration if self.done else writer.duration, 3), "bytes": writer.size,
        }  # fmt: skip

    # --- the recording's thread -------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._record()
        except Exception as exc:  # a bug in an output stops that output only
            log.exception("recording %s failed", self.name)
            self.reason, self.message = "error", f"{type(exc).__name__}: {exc}"
        finally:
            self._encoder.remove(self)
            self._writer.close()
            if self._writer.failure is not None and self.reason in (None, "stopped"):
                self.reason, self.message = self._writer.failure.reason, str(self._writer.failure)
            self.stopped = time.time()
            self._write_document()
            log.info("recording %s ended (%s): %d frames", self.name, self.reason, self._writer.committed)

    def _record(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._stop is not None or not self._encoder.alive):
                    self._cond.wait(1.0)
                packets = list(self._queue)
                self._queue.clear()
                stop = self._stop
            if stop is None and not packets and not self._encoder.alive:
                self.reason, self.message = "encoder failed", self._encoder.failed
                return
            for packet in packets:
                try:
                    self._writer.write(packet)
                except WriteFailed as exc:
                    self.reason, self.message = exc.reason, str(exc)
                    log.warning("recording %s stopped: %s", self.name, exc)
                    return
            if stop is not None:
                self.reason = stop
                if stop == "too slow":
                    self.message = f"the disk did not keep up: over {QUEUE_SECONDS:g} s of video waited to be written"
                return

    def _write_document(self) -> None:
        try:
            document = replay_document(
                self._describe(), self._shown.range, self.mp4, **self.info(), runs=self._shown.runs
            )
            size = write_document(self.json, document)
            self._store.add(size - self._json_bytes)
            self._json_bytes = size
        except Exception:  # the JSON is best effort: the MP4 is what matters
            log.exception("could not write %s", self.json.name)
