"""The engine: a worker thread driving a Generator, a bounded frame buffer, and a frame source.

Commands arrive from the event loop (``start``, ``pause``, ``resume``, ``stop``, ``prepare``); events go
back through a callback that the engine invokes on the loop with ``call_soon_threadsafe``. The generator
is only ever touched by the worker thread. Each ``start`` opens a new *run*; events carry the run number
so that a late event from before a stop can be recognised and dropped.

A prompt that cannot be encoded (when it is prepared, or when its block comes) is removed from the
schedule and reported with :class:`PromptFailed`; the stream goes on with the prompt in effect, except
when it was the prompt of block 0, which ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cards import render_card
from .frame_buffer import BufferedFrame, FrameBuffer
from .generators.base import (
    PLAYBACK_FPS,
    CallCancelled,
    Generator,
    cancel_pending,
    shares_device,
    skip_frames,
    start_lead,
)
from .pacing import Pacer
from .schedule import PromptSchedule, ScheduledPrompt
from .stream import PROMPT_CACHE_SIZE, Block, BlockStream, PromptCache, PromptEncodingError

log = logging.getLogger(__name__)

#: Seconds ``Engine.close`` waits for the worker thread (it may be inside a block or a prompt encode).
CLOSE_WAIT = 5.0


@dataclass(frozen=True)
class BlockDone:
    """A block reached the frame buffer."""

    run: int
    current_start_frame: int
    video_frame: int


@dataclass(frozen=True)
class PromptApplied:
    run: int
    entry: ScheduledPrompt
    frame: int


@dataclass(frozen=True)
class GenerationFailed:
    run: int
    message: str


@dataclass(frozen=True)
class PromptFailed:
    """A scheduled prompt could not be encoded; it was removed from the schedule."""

    run: int
    entry: ScheduledPrompt
    message: str  # the encoder's error
    ended_run: bool  # True when it was block 0's prompt: the run ``run`` is over


EngineEvent = BlockDone | PromptApplied | GenerationFailed | PromptFailed


class Playout(enum.Enum):
    """What the frame source hands the track."""

    IDLE = "idle"  # not started: show the idle card
    FRAME = "frame"  # a new frame
    STALL = "stall"  # running but nothing ready: repeat the last frame (counted)
    PAUSED = "paused"  # paused: repeat the last frame (not a stall)


@dataclass(frozen=True)
class PlayoutItem:
    kind: Playout
    image: np.ndarray | None = None
    index: int | None = None  # the video frame shown
    run: int | None = None  # the run it belongs to
    applied: ScheduledPrompt | None = None  # on the first frame of a block that switched this prompt in
    frame: int | None = None  # the generation frame of its block's start
    skipped: int = 0  # on the first frame of a live prompt's block (asap): the queued frames it replaced


class Engine:
    """Runs one session's generation in its own thread and buffers frames for playback."""

    def __init__(
        self,
        generator: Generator,
        schedule: PromptSchedule,
        on_event: Callable[[EngineEvent], None],
        loop: asyncio.AbstractEventLoop | None = None,
        buffer_blocks: int = 1,
        idle_text: str = "The stream starts soon",  # the audience sees it: no operator instructions
        prompt_cache_size: int = PROMPT_CACHE_SIZE,
    ) -> None:
        self.generator = generator
        self.geometry = generator.geometry
        self._schedule = schedule
        self._stream = BlockStream(generator, schedule, PromptCache(generator, prompt_cache_size))
        self._on_event = on_event
        self._loop = loop or asyncio.get_running_loop()
        self.buffer = FrameBuffer(capacity=buffer_blocks * self.geometry.max_video_frames_in_block)
        self.idle_card = render_card(self.geometry.width, self.geometry.height, idle_text)
        self.stalls = 0
        self.blocks_generated = 0
        self.playout_period = 1.0 / PLAYBACK_FPS  # seconds per frame on air; the on-air clock sets its own
        self.pacer = Pacer()  # late binding: blocks start just in time (``enabled = False``: as early as they can)
        self._last_shown: float | None = None  # when the last buffered frame went on air, this playback
        self._live: list[ScheduledPrompt] = []  # prompts scheduled for the next block, for ``pacer.asap``
        self.frames_skipped = 0  # queued frames a live prompt's block replaced (``pacer.asap``)
        self._stalls_seen = 0
        self._cond = threading.Condition()
        self._run = 0
        self._seed = 0
        self._running = False
        self._paused = False
        self._begin_pending = False
        self._drop_pending = False
        self._closed = False
        self._playing = False  # a frame was shown since start/resume: underruns count as stalls now
        self._airs_from: float | None = None  # a run's first frame waits until then (``base.start_lead``)
        self._to_prepare: deque[ScheduledPrompt] = deque()
        self._thread = threading.Thread(target=self._work, name="longlive-engine", daemon=True)
        self._thread.start()

    # --- control, from the event loop ---------------------------------------------------------------

    def start(self, seed: int) -> int:
        """Begin a new run at frame 0 with ``seed``; returns the run number."""
        with self._cond:
            self._run += 1
            self._seed = seed
            self._running, self._paused = True, False
            self._begin_pending, self._playing, self._last_shown, self._airs_from = True, False, None, None
            self._live.clear()
            self.buffer.clear()
            self._cond.notify_all()
            return self._run

    def pause(self) -> None:
        with self._cond:
            self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self._paused, self._playing, self._last_shown = False, False, None
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop at once, drop buffered frames and (on the worker) the generator's state.

        Both ``stop`` and ``reset`` commands end here (the next start is at frame 0); the session decides
        what happens to the schedule.
        """
        with self._cond:
            self._run += 1
            self._running = self._paused = self._playing = False
            self._drop_pending, self._last_shown = True, None
            self._live.clear()
            self._to_prepare.clear()  # a prompt still scheduled is encoded when its block needs it
            self.buffer.clear()
            self._cond.notify_all()

    def prepare(self, entry: ScheduledPrompt) -> None:
        """Encode ``entry``'s prompt ahead of its switch (on the worker, between blocks)."""
        with self._cond:
            self._to_prepare.append(entry)
            if self._airs_asap(entry):
                self._live.append(entry)  # a live prompt: its block starts at once
                log.debug("live prompt for frame %d, %d frames buffered", entry.timestamp, len(self.buffer))
                self.buffer.wake()  # even when the worker waits for room for a block it made before
            self._cond.notify_all()

    def _airs_asap(self, entry: ScheduledPrompt) -> bool:
        """Whether ``entry`` is a live prompt whose block starts at once, in place of the frames queued
        (``pacer.asap``; under ``_cond``). Not on a device other streams share: the frames it skipped would
        be device time they needed, and their blocks go first anyway, so it would gain little time on air."""
        live = self.pacer.asap and self._running and entry.timestamp <= self._stream.next_frame
        return live and not shares_device(self.generator)

    def close(self, timeout: float | None = None) -> bool:
        """Stop the worker thread; whether it ended within ``timeout`` (default ``CLOSE_WAIT``; it may be
        inside a generator call, and then owns the generator until ``wait_closed`` returns)."""
        with self._cond:
            self._closed = True
            self._run += 1
            self._cond.notify_all()
        self.buffer.close()
        cancel_pending(self.generator)  # its calls still waiting for a shared device never run
        self._thread.join(CLOSE_WAIT if timeout is None else timeout)
        return not self._thread.is_alive()

    def wait_closed(self) -> None:
        """Block until the worker thread has ended (after ``close``): the generator is free again."""
        self._thread.join()

    @property
    def current_run(self) -> int:
        with self._cond:
            return self._run

    # --- frame source, for the paced track -----------------------------------------------------------

    def next_frame(self) -> PlayoutItem:
        """The next frame to show, or what to do instead; never blocks."""
        with self._cond:
            running, paused = self._running, self._paused
        if not running:
            return PlayoutItem(Playout.IDLE, self.idle_card)
        if paused:
            return PlayoutItem(Playout.PAUSED)
        with self._cond:
            if not self._playing and self._airs_from is not None and time.monotonic() < self._airs_from:
                return PlayoutItem(Playout.STALL)  # a run's first frame held back: not a stall yet
            frame = self.buffer.pop()
            while frame is not None and frame.run != self._run:  # queued by a run stopped meanwhile
                frame = self.buffer.pop()
            if frame is None:
                if self._playing:
                    self.stalls += 1
                    log.debug("stall %d: nothing buffered, the worker is %s", self.stalls,
                              "waiting for a live prompt's block" if self._live else "generating")  # fmt: skip
                return PlayoutItem(Playout.STALL)
            self._playing, self._last_shown, self._airs_from = True, time.monotonic(), None
            self._cond.notify_all()  # the worker's just-in-time start is counted from this frame
        return PlayoutItem(
            Playout.FRAME, frame.image, frame.index, frame.run, frame.applied, frame.block_start, frame.skipped
        )

    # --- the worker thread -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._to_prepare or self._drop_pending):
                    if not self._running or self._paused:
                        self._cond.wait()
                        continue
                    wait = 0.0 if self._begin_pending else self._start_in()
                    if wait <= 0.0:
                        break
                    self._cond.wait(wait)  # late binding: the block's prompt is read when it starts
                if self._closed:
                    break
                entries = list(self._to_prepare)
                self._to_prepare.clear()
                drop, self._drop_pending = self._drop_pending, False
                begin, self._begin_pending = self._begin_pending, False
                run, seed = self._run, self._seed
                generate = self._running and not self._paused and (begin or self._start_in() <= 0.0)
            try:
                if drop:
                    self._stream.reset()
                for entry in entries:
                    if self._preparing_cancelled():
                        break
                    self._prepare(entry, run)
                if begin and not self._is_closed():  # closed meanwhile: nothing more for a session that is gone
                    self._stream.begin(seed)
                if generate and not self._is_closed():
                    self._generate_block(run)
            except Exception as exc:  # a generator failure ends the run, never the server
                with self._cond:
                    current = run == self._run
                    if current:
                        self._running = False
                if current:
                    log.exception("generator failed")
                    self._emit(GenerationFailed(run, f"{type(exc).__name__}: {exc}"))
                else:  # the run was stopped meanwhile (e.g. its schedule rewound under it)
                    log.debug("a stopped run failed: %s: %s", type(exc).__name__, exc)
        try:
            self._stream.reset()
        except Exception:
            log.exception("generator reset failed while closing")

    def _is_closed(self) -> bool:
        with self._cond:
            return self._closed

    def _preparing_cancelled(self) -> bool:
        """A close, stop or reset came while prompts were being encoded: the rest are not needed now (a
        prompt still scheduled is encoded when its block needs it)."""
        with self._cond:
            return self._closed or self._drop_pending

    def _prepare(self, entry: ScheduledPrompt, run: int) -> None:
        if not self._schedule.holds(entry):  # overwritten or removed while queued: never needed
            return
        try:
            self._stream.cache.get(entry.prompt)
        except Exception as exc:  # the prompt is dropped, the stream goes on
            self._prompt_failed(run, entry, exc, ends_run=False)

    def _prompt_failed(self, run: int, entry: ScheduledPrompt, cause: BaseException, ends_run: bool) -> None:
        """Remove an entry that cannot be encoded and report it (ending the run when it was block 0's)."""
        if isinstance(cause, CallCancelled):  # the session is closing: the prompt itself is fine
            return
        log.warning("the prompt at frame %d cannot be encoded", entry.timestamp, exc_info=cause)
        removed = self._schedule.discard(entry)
        with self._cond:
            ended = ends_run and run == self._run
            if ended:
                self._running = False
        if removed or ended:
            self._emit(PromptFailed(run, entry, f"{type(cause).__name__}: {cause}", ended))

    def _start_in(self) -> float:
        """Seconds until the next block should start (under ``_cond``): just in time, and on a shared device
        earlier by the other streams' blocks that may run before it (``base.start_lead``)."""
        if self._live:
            return 0.0
        now, buffered, ahead = time.monotonic(), len(self.buffer), start_lead(self.generator)
        return self.pacer.start_in(now, buffered, self._last_shown, self.playout_period, ahead)

    def _live_waiting(self) -> bool:
        """A live prompt waits for its block (read without ``_cond``: the buffer calls it under its own lock).

        Its block replaces whatever is queued, so a block made before it need not wait for room: queued past
        the buffer's capacity, it is replaced at once, and the live prompt airs a block wait earlier.
        """
        return bool(self._live)

    def _generate_block(self, run: int) -> None:
        started = time.monotonic()
        with self._cond:
            live = list(self._live)  # scheduled before this block read its prompt: it applies them or none
        try:
            block = self._stream.step()
        except PromptEncodingError as exc:  # nothing reached the generator: retry the block without it
            self._prompt_failed(run, exc.entry, exc.cause, ends_run=self._stream.next_frame == 0)
            return
        with self._cond:  # every entry due by this block was applied or superseded by it, captured or not
            self._live = [entry for entry in self._live if entry not in live and entry.frame > block.start_frame]
        self.blocks_generated += 1
        finished = time.monotonic()
        with self._cond:
            slack = self.pacer.slack(finished, len(self.buffer), self._last_shown, self.playout_period)
            stalled, self._stalls_seen = self.stalls > self._stalls_seen, self.stalls
            if block.start_frame > 0:  # block 0 (the stream's begin) says little about the blocks after it
                self.pacer.record(finished - started, slack, self.playout_period, block.applied is not None, stalled)
        log.debug("block %d generated in %.1f ms (ready %s ms early, margin %.0f ms)", block.start_frame,
                  1e3 * (finished - started), "?" if slack is None else f"{1e3 * slack:.0f}",
                  1e3 * self.pacer.margin)  # fmt: skip
        if run != self.current_run:
            return
        if block.start_frame == 0:  # its first frame airs after the generator's lead (a shared device's)
            lead = start_lead(self.generator)
            with self._cond:
                self._airs_from = time.monotonic() + lead
        if block.applied is not None:  # before its frames can go on air: on_air always follows prompt_applied
            self._emit(PromptApplied(run, block.applied, block.start_frame))
        if block.applied is not None and block.applied in live:  # at once, in place of the frames queued
            with self._cond:  # no frame is popped meanwhile: the on-air clock pops under this lock
                if run != self._run:
                    return
                skipped = len(self.buffer)
                self.buffer.replace(_buffered(block, run, skipped))
                self.frames_skipped += skipped
            skip_frames(self.generator, skipped)  # on a shared GPU its next blocks are due that much sooner
        elif not self.buffer.put_block(_buffered(block, run), overflow=self._live_waiting):
            return
        self._emit(BlockDone(run, block.end_frame, block.end_video_frame))

    def _emit(self, event: EngineEvent) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._on_event, event)


def _buffered(block: Block, run: int, skipped: int = 0) -> list[BufferedFrame]:
    """The block's frames; its first carries the prompt it switched in and the frames it replaced."""
    first, start = block.first_video_frame, block.start_frame
    return [
        BufferedFrame(first + i, image, run, start, block.applied, skipped)
        if i == 0
        else BufferedFrame(first + i, image, run, start)
        for i, image in enumerate(block.frames)
    ]
