"""Several LongLive sessions on one GPU: one worker thread owns the device and the shared weights.

The weights, text encoder and decoder are loaded once; each session gets a thin ``WorkerSession``
(a Generator) with its own stream state (KV cache, cross-attention cache, noise, decoder cache). The
sessions' engines call it from their own threads; every call becomes a request to the worker, which runs
them one at a time, the most urgent first: a block request is due when the session's playback would run
out of frames (at the paced rate; a new stream's first block ``START_GRACE`` after it is asked for, so that
it yields to a playing session's block due sooner), every other request (prompt encode, begin, reset) at
once. A prompt change (switch, cut, set) runs in the same turn as the block it is for, so that no other
session's block comes between its recache and that block.

The worker only *queues* a block on the device (``LongLiveGenerator.launch_block``) and goes on with the
next request; the session's own thread waits for its frames. So one session's decode and host copy (on
its side CUDA stream) overlap the next session's DiT forwards. Sessions never share mutable state, and
each request runs the same kernels on the same shapes as a stream alone: the latents are identical.

A request that runs on a CUDA device for over ``stuck_after`` seconds (a block takes well under one; the
warm-up is exempt), or a launched block whose frames take that long to come out, means the device hung:
every waiting request, and every later one, fails with :class:`DeviceHung` instead of waiting for ever
(``serve``'s device pool, of its ``--devices`` or its one ``--device``, marks the device failed: its
sessions report ``generator_failed``, new sessions go elsewhere, ``/health`` shows it).

Warm the model up *on the worker* (:meth:`GpuWorker.warm_up`): PyTorch keeps cuDNN's tuned convolution plans
per thread, so after a warm-up on another thread the first blocks of each shape here autotune again (with the
Wan VAE, 1.3-1.5 s more for each of a stream's first two blocks on an H200: stalls at every start).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple

import numpy as np
import torch

from . import base
from .base import PLAYBACK_FPS
from .longlive import LaunchedBlock, LongLiveGenerator, warm_up

log = logging.getLogger(__name__)

#: Seconds by which a stream's first block yields: a block that a playing session needs sooner runs first,
#: so a stream that starts does not make one on air stall (its own first frame comes that much later at most).
START_GRACE = 0.8
STUCK_AFTER = 120.0  # seconds one request may run before the device counts as hung
_POLL = 1.0  # seconds between a waiting caller's checks that the device still moves
_EVENT_POLL = 0.001  # seconds between a collecting session's checks that its block's frames are out
#: Seconds after its last block (or its begin) that a session stops counting as active on its device: it is
#: paused, or its run stopped. Several blocks' play time (12 frames: 0.8 s at 15 FPS).
IDLE_AFTER = 3.0


class DeviceHung(RuntimeError):
    """A request on the GPU worker ran for too long: the device is treated as hung from then on."""


class _Request(NamedTuple):
    """A queued request; ordered by ``due``, then ``order`` (unique: the rest is never compared)."""

    due: float
    order: int
    future: Future
    job: Callable[[], Any]
    owner: object  # the session it is for
    limited: bool  # subject to ``stuck_after``


class GpuWorker:
    """Runs the requests of every session on one device, earliest deadline first (ties: first come)."""

    def __init__(self, template: LongLiveGenerator, stuck_after: float | None = None) -> None:
        """``template`` is a loaded (and warmed-up) generator; its weights, encoder and decoder are shared.
        ``stuck_after``: seconds a request may run (default ``STUCK_AFTER`` on CUDA; no limit on a CPU, where
        a full-size block can take minutes)."""
        self.template = template
        self.device = template.device
        if stuck_after is None and self.device.type == "cuda":
            stuck_after = STUCK_AFTER
        self.stuck_after = stuck_after
        self._queue: list[_Request] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self.hung: str | None = None  # why the device counts as hung (then every request fails)
        self._running: tuple[float, bool] | None = None  # when the current request began; may it hang
        self.requests = 0
        self._streaming: dict[WorkerSession, float] = {}  # sessions between begin and reset: when last active
        self._thread = threading.Thread(target=self._work, name="longlive-gpu", daemon=True)
        self._thread.start()

    def warm_up(self, report: Callable[[str], None] = log.info) -> float:
        """Run the template's warm-up (every compiled and autotuned shape) on this worker's thread; seconds."""
        return self.call(lambda: warm_up(self.template, report=report), limited=False)

    def session(self, fps: float = PLAYBACK_FPS) -> WorkerSession:
        """A new session's generator: its own stream over the shared model."""
        return WorkerSession(self, self.template.fork(), fps)

    def stream_active(self, session: WorkerSession) -> None:
        """``session`` streams: it began, or asks for (or got) a block, now."""
        with self._cond:
            self._streaming[session] = time.monotonic()

    def stream_ended(self, session: WorkerSession) -> None:
        """``session`` stopped streaming (reset, or a block of its failed)."""
        with self._cond:
            self._streaming.pop(session, None)

    def others_streaming(self, session: WorkerSession) -> int:
        """How many other sessions stream on this device: begun, not reset, and no block of theirs failed since.
        A paused one counts: it may ask for a block at any moment."""
        with self._cond:
            return len(self._streaming.keys() - {session})

    def others_active(self, session: WorkerSession) -> int:
        """How many of those asked for a block within ``IDLE_AFTER`` seconds: a paused one needs no device time now."""
        now = time.monotonic()
        with self._cond:
            return sum(1 for s, active in self._streaming.items() if s is not session and now - active <= IDLE_AFTER)

    def call(
        self, fn: Callable[..., Any], *args: Any, deadline: float | None = None, owner: object = None,
        limited: bool = True,
    ) -> Any:  # fmt: skip
        """Run ``fn(*args)`` on the worker thread and return its result (re-raising its exception); ``owner``
        names the session it is for (see :meth:`cancel`); ``limited=False`` exempts it from ``stuck_after``."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the GPU worker is closed")
            if self.hung is not None:
                raise DeviceHung(self.hung)
            due = time.monotonic() if deadline is None else deadline
            heapq.heappush(self._queue, _Request(due, next(self._order), future, lambda: fn(*args), owner, limited))
            self._cond.notify()
        while True:
            try:
                return future.result(timeout=_POLL)
            except FutureTimeout:
                self._check_moving()

    def _check_moving(self) -> None:
        """Raise :class:`DeviceHung` once the device counts as hung; the first caller to see a request run for
        too long declares it."""
        with self._cond:
            if self.hung is None and not self._overran():
                return
        self._declare_hung(f"the device hung: a request has run for over {self.stuck_after:g} s")

    def _declare_hung(self, reason: str) -> None:
        """The device counts as hung from now on (the first reason given stays): every waiting request fails,
        and so does the caller, with :class:`DeviceHung`."""
        pending: list[_Request] = []
        with self._cond:
            if self.hung is None:
                self.hung = reason
                pending, self._queue = self._queue, []
                log.error("GPU worker on %s: %s; its sessions fail", self.device, reason)
            hung = self.hung
        for request in pending:
            request.future.set_exception(DeviceHung(hung))
        raise DeviceHung(hung)

    def collect(self, stream: LongLiveGenerator, block: LaunchedBlock) -> np.ndarray:
        """``stream.collect(block)`` on the caller's thread; waiting for the block's frames past ``stuck_after``
        declares the device hung, as a request running that long does."""
        if block.done is not None and self.stuck_after is not None:
            began = time.monotonic()
            while not block.done.query():
                if self.hung is not None or time.monotonic() - began > self.stuck_after:
                    self._declare_hung(f"the device hung: a block's frames took over {self.stuck_after:g} s")
                time.sleep(_EVENT_POLL)
        return stream.collect(block)

    def _overran(self) -> bool:
        """Whether the running request is under the time limit and past it (with the lock held)."""
        if self._running is None or self.stuck_after is None:
            return False
        began, limited = self._running
        return limited and time.monotonic() - began > self.stuck_after

    def cancel(self, owner: object) -> int:
        """Drop ``owner``'s requests that have not started (they raise ``CallCancelled``); how many."""
        with self._cond:
            dropped = [request for request in self._queue if request.owner is owner]
            if dropped:
                self._queue = [request for request in self._queue if request.owner is not owner]
                heapq.heapify(self._queue)
        for request in dropped:
            request.future.set_exception(base.CallCancelled("the session closed before its turn on the GPU"))
        return len(dropped)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called: requests are refused."""
        with self._cond:
            return self._closed

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking requests; the ones queued fail."""
        with self._cond:
            self._closed = True
            pending, self._queue = self._queue, []
            self._cond.notify()
        for request in pending:
            request.future.set_exception(RuntimeError("the GPU worker is closed"))
        self._thread.join(timeout)

    def _work(self) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.set_device(self.device)
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                request = heapq.heappop(self._queue)
                if not request.future.set_running_or_notify_cancel():
                    continue
                self._running = (time.monotonic(), request.limited)
            self.requests += 1
            try:
                with torch.no_grad():
                    result = request.job()
            except BaseException as exc:  # the session's thread re-raises it; the worker goes on
                request.future.set_exception(exc)
            else:
                request.future.set_result(result)
            finally:
                with self._cond:
                    self._running = None


class WorkerSession:
    """One session's generator on a shared GPU worker (the Generator protocol, called from one thread)."""

    name = "longlive"

    def __init__(self, worker: GpuWorker, stream: LongLiveGenerator, fps: float = PLAYBACK_FPS) -> None:
        self.worker = worker
        self.stream = stream
        self.geometry = stream.geometry
        self.fps = fps
        self._clock: float | None = None  # when this stream's playback would have shown frame 0
        self._frames = 0  # video frames delivered since begin, less those never shown (`skip_frames`)
        self._block_seconds: float | None = None  # device time of its last block (from its launch to its frames)
        self._changes: list[Callable[[], None]] = []  # prompt changes for its next block, run in that block's turn

    def _call(self, fn: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
        return self.worker.call(fn, *args, deadline=deadline, owner=self)

    def cancel_pending(self) -> None:
        """The session is closing: its requests still queued never run (see ``base.cancel_pending``), but for
        a reset, which frees its state."""
        dropped = self.worker.cancel(self)
        if dropped:
            log.debug("dropped %d queued GPU request(s) of a closing session", dropped)

    @property
    def pipeline(self):
        return self.stream.pipeline

    @property
    def decoder(self):
        return self.stream.decoder

    def check_prompt(self, prompt: str) -> None:
        self.stream.check_prompt(prompt)  # tokenising only, on the caller's thread

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        if self.stream.encodes_on_cpu and not self.worker.closed:  # seconds of CPU work: on the caller's
            return self.stream.encode_prompt(prompt)  # thread, while the device serves the other sessions
        return self._call(self.stream.encode_prompt, prompt)

    def begin(self, seed: int, prompt: torch.Tensor) -> None:
        self._clock, self._frames, self._changes = None, 0, []
        self._call(self.stream.begin, seed, prompt)
        self.worker.stream_active(self)

    def switch_prompt(self, prompt: torch.Tensor) -> None:
        self._for_next_block(self.stream.switch_prompt, prompt)

    def cut(self, prompt: torch.Tensor) -> None:
        self._for_next_block(self.stream.cut, prompt)

    def set_prompt(self, prompt: torch.Tensor) -> None:
        self._for_next_block(self.stream.set_prompt, prompt)

    def mix_prompts(self, a: Any, b: Any, weight: float, curve: str) -> Any:
        """The mixed embedding (computed on the device, due with the next block, which it conditions)."""
        return self._call(base.mix_prompts, self.stream, a, b, weight, curve, deadline=self._due(time.monotonic()))

    def _for_next_block(self, fn: Callable[..., None], *args: Any) -> None:
        """A prompt change: it runs on the worker in the turn of the block it is for (``next_block``), so no
        other session's block comes between its recache and that block (which would make the block late)."""
        self._changes.append(functools.partial(fn, *args))

    def skip_frames(self, count: int) -> None:
        """``count`` frames delivered will never be shown (a live prompt's block replaced them): the frames
        after them take their time on air, so the next blocks are due that much sooner."""
        self._frames -= count

    def _due(self, now: float) -> float:
        """When this stream's next block is needed: when its playback would run out of frames, ``START_GRACE``
        from now for a stream not yet playing. A playback already out of frames (paused, or fell behind)
        counts from now on, so a lag it has does not outrank every other session's blocks for the rest of
        its stream."""
        if self._clock is None:
            return now + START_GRACE
        if self._clock + self._frames / self.fps < now:
            self._clock = now - self._frames / self.fps
        return self._clock + self._frames / self.fps

    def shares_device(self) -> bool:
        """Whether another session on this device uses it now (``others_active``): a live prompt then skips no
        frames, which would be device time that session needs."""
        return self.worker.others_active(self) > 0

    def start_lead(self) -> float:
        """One of its blocks' time for every other session streaming here (paused ones too: they may resume),
        whose next blocks may run before its own: its first frame waits that long, and each block starts that
        much earlier (``base.start_lead``)."""
        return self.worker.others_streaming(self) * (self._block_seconds or 0.0)

    def next_block(self) -> np.ndarray:
        """The next block's frames; a block that fails ends this stream on the device (``others_streaming``) until
        it begins again."""
        changes, self._changes = self._changes, []
        self.worker.stream_active(self)
        try:
            launched, block_seconds = self._call(self._launch, changes, deadline=self._due(time.monotonic()))
            frames = self.worker.collect(self.stream, launched)
            self._block_seconds = block_seconds()
        except BaseException:
            self.worker.stream_ended(self)
            raise
        self.worker.stream_active(self)
        if self._clock is None:  # its playback begins once the engine has held its first frame for the lead
            self._clock = time.monotonic() + self.start_lead()
        self._frames += len(frames)
        return frames

    def _launch(self, changes: list[Callable[[], None]]) -> tuple[LaunchedBlock, Callable[[], float]]:
        """Apply the prompt changes for the next block and queue it; also how to read, once its frames are out,
        the block's time on this device: between CUDA events (to its frames copied out, or with the decoder on
        another device to its DiT's end), else in wall time."""
        for change in changes:
            change()
        if self.stream.device.type != "cuda":
            began = time.monotonic()
            return self.stream.launch_block(), lambda: time.monotonic() - began
        started = _recorded_event()
        launched = self.stream.launch_block()
        ended = launched.done if self.stream.handover is None and launched.done is not None else _recorded_event()

        def seconds() -> float:
            ended.synchronize()
            return started.elapsed_time(ended) / 1e3

        return launched, seconds

    def reset(self) -> None:
        self.worker.stream_ended(self)
        self._clock, self._frames, self._changes = None, 0, []
        self.worker.call(self.stream.reset)  # no owner: never dropped, it frees the stream's device memory


def _recorded_event() -> torch.cuda.Event:
    """A timing event recorded on the current CUDA stream."""
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event
