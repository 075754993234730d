"""A session's outputs together: its shared encoder, clip ring, live MPEG-TS and recording.

Everything here is called on the event loop; the work itself runs on the encoder's, the recording's
and worker threads. The encoder runs while something needs it: always when clips are on (the ring must
hold the past), otherwise while a recording or a live reader is attached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import FrameSink
from .clips import DEFAULT_SECONDS, ClipRing, write_clip
from .encoder import DEFAULT_BITRATE, SharedEncoder
from .mpegts import MAX_LAG, TsFeed, TsReader
from .recording import Describe, Recording
from .store import MIN_FREE_BYTES, Store

log = logging.getLogger(__name__)

DEFAULT_QUOTA = 10 << 30


class OutputConflict(Exception):
    """A request that does not fit the output's state (e.g. stop when not recording)."""

    status = 409


@dataclass
class OutputsConfig:
    recordings_dir: Path = Path("recordings")
    quota: int = DEFAULT_QUOTA  # bytes of every recording and clip together
    clip_seconds: float = DEFAULT_SECONDS  # the clip ring's length; 0: no clips (and no encoder unless asked)
    bitrate: int = DEFAULT_BITRATE
    keyframe_seconds: float = 1.0
    max_ts_readers: int = 16  # per session
    ts_max_lag: float = MAX_LAG
    min_free: int = MIN_FREE_BYTES
    encode_once: bool = False  # H.264 WebRTC viewers get the shared encoder's packets (Constrained Baseline)
    whip_private: bool = False  # WHIP outputs may push to private, loopback and link-local addresses


class SessionOutputs:
    """One session's outputs; ``attach``/``detach`` feed a frame sink from the session's on-air clock."""

    def __init__(
        self, session_id: str, size: tuple[int, int], fps: int, config: OutputsConfig, store: Store,
        describe: Describe, attach: Callable[[FrameSink], None], detach: Callable[[FrameSink], None],
    ) -> None:  # fmt: skip
        self.session_id, self.size, self.fps = session_id, size, fps
        self.config, self.store = config, store
        self._describe, self._attach, self._detach = describe, attach, detach
        self.encoder: SharedEncoder | None = None
        self.ring: ClipRing | None = None
        self.ts: TsFeed | None = None
        self.recording: Recording | None = None
        self._ts_dropped = 0  # MPEG-TS readers dropped for lagging, by the feeds before the current one
        self._starting = False  # a recording's files are being created
        self.closed = False
        if config.clip_seconds > 0:
            self._encoder()

    def _encoder(self) -> SharedEncoder:
        """The running encoder (a new one, with a new ring, when there is none or it failed)."""
        if self.encoder is not None and self.encoder.alive:
            return self.encoder
        if self.encoder is not None:
            self._drop_encoder()
        width, height = self.size
        encoder = SharedEncoder(
            width, height, self.fps, self.config.bitrate, self.config.keyframe_seconds, name=self.session_id,
            profile="baseline" if self.config.encode_once else "high",
        )  # fmt: skip
        self.encoder = encoder
        self._attach(encoder)
        if self.config.clip_seconds > 0:
            self.ring = ClipRing(self.config.clip_seconds)
            encoder.add(self.ring, keyframe=False)
        self.ts = TsFeed(encoder, asyncio.get_running_loop(), self.config.max_ts_readers, self.config.ts_max_lag)
        return encoder

    def _drop_encoder(self) -> None:
        if self.ts is not None:
            self.ts.close()
            self._ts_dropped += self.ts.dropped
        if self.encoder is not None:
            self._detach(self.encoder)
            self.encoder.close()
        self.encoder = self.ring = self.ts = None

    def _release_if_idle(self) -> None:
        """Stop the encoder when nothing needs it (clips off, no recording, no reader)."""
        if self.encoder is None:
            return
        busy = (self.config.clip_seconds > 0 or self._starting or self.recording_now is not None
                or (self.ts and self.ts.readers))  # fmt: skip
        if not busy and not self.encoder.sinks:  # WebRTC viewers' packets keep it too
            self._drop_encoder()

    def viewer_encoder(self) -> SharedEncoder:
        """The running encoder, for WebRTC viewers that take its packets (see ``encode_once``)."""
        return self._encoder()

    # --- recording ---------------------------------------------------------------------------------

    @property
    def recording_now(self) -> Recording | None:
        recording = self.recording
        return recording if recording is not None and not recording.done else None

    async def start_recording(self) -> Recording:
        """A new recording (:class:`~.store.StoreFull` when there is no room, a conflict when one runs).

        Its files are created on a worker thread: a slow disk never holds up the event loop's streams.
        """
        if self._starting:
            raise OutputConflict(f"session {self.session_id} is already starting a recording")
        if self.recording_now is not None:
            raise OutputConflict(f"session {self.session_id} is already recording ({self.recording.name})")
        encoder = self._encoder()
        self._starting = True
        try:
            recording = await asyncio.to_thread(Recording, self.store, self.session_id, encoder, self._describe)
        finally:
            self._starting = False
        self.recording = recording
        if self.closed:  # the session ended while the files were being created
            recording.stop("the session ended")
            await asyncio.to_thread(recording.wait)
        return recording

    async def stop_recording(self, reason: str = "stopped") -> dict[str, Any]:
        recording = self.recording_now
        if recording is None:
            ended = f" (the last one ended: {self.recording.reason})" if self.recording else ""
            raise OutputConflict(f"session {self.session_id} is not recording{ended}")
        await self._catch_up()  # what went on air before the stop is in the file
        recording.stop(reason)
        await asyncio.to_thread(recording.wait)
        self._release_if_idle()
        return recording.info()

    async def _catch_up(self, timeout: float = 2.0) -> None:
        """Wait (a frame or two) for the encoder to finish the frames on air until now."""
        encoder = self.encoder
        if encoder is None:
            return
        taken, deadline = encoder.taken, time.monotonic() + timeout
        while not encoder.caught_up(taken) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    # --- clips -------------------------------------------------------------------------------------

    async def clip(self, seconds: float) -> dict[str, Any]:
        """Save the last ``seconds`` (at most the ring's length) as a clip; its listing entry."""
        if self.ring is None:
            raise OutputConflict("clips are off on this server (serve --clip-seconds 0)")
        packets = self.ring.last(seconds)
        encoder = self._encoder()
        return await asyncio.to_thread(
            write_clip, packets, self.store, self.session_id, (encoder.width, encoder.height), self.fps,
            self._describe, seconds,
        )  # fmt: skip

    # --- live MPEG-TS -------------------------------------------------------------------------------

    def open_ts(self) -> TsReader:
        self._encoder()
        assert self.ts is not None
        return self.ts.open()

    def leave_ts(self, reader: TsReader) -> None:
        if self.ts is not None:
            self.ts.leave(reader)
        self._release_if_idle()

    @property
    def mpegts_dropped(self) -> int:
        """MPEG-TS readers dropped for lagging since the session began."""
        return self._ts_dropped + (self.ts.dropped if self.ts else 0)

    # --- the whole -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        recording = self.recording_now
        return {
            "recording": recording.info() if recording else None,
            "clips": {"max_seconds": self.config.clip_seconds, "held_seconds": self.ring.held_seconds if self.ring
                      else 0.0},
            "mpegts_readers": len(self.ts.readers) if self.ts else 0,
            "mpegts_dropped": self.mpegts_dropped,
            "encoder": self.encoder.stats() if self.encoder else None,
            "storage": {"used": self.store.used, "quota": self.store.quota},
        }  # fmt: skip

    async def close(self) -> None:
        """The session is gone: a recording ends (its file complete), readers are dropped."""
        self.closed = True
        recording = self.recording_now
        if recording is not None:
            recording.stop("the session ended")
            await asyncio.to_thread(recording.wait)
        self._drop_encoder()
