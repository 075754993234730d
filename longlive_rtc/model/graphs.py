"""CUDA graphs of the DiT's streaming calls, applied from outside (as `compile.py` applies torch.compile).

A compiled DiT forward still launches several hundred kernels from Python (30 blocks of projections,
compiled halves, cache writes, two attentions). :class:`ForwardGraphs` stands in for the model in a
`StreamingPipeline`: each call shape it meets ``CAPTURE_AFTER`` times (a KV-cache plan, less its absolute
start frame, with the call's shapes and RoPE mode) is captured once as a CUDA graph and replayed from then
on, one launch per forward. A steady block's calls have three shapes: its first denoising step rolls the
window and writes the block's slots, the other three rewrite them, and so does its cache pass (in the next
block's turn), which computes no output. Each recache shape is one more.

What changes from one call of a shape to the next is copied into the graph's static inputs before each
replay: the latents, the timesteps and the queries' RoPE rotations (small; in absolute mode they follow the
start frame), and the cross-attention K/V once per prompt. The KV cache is the stream's own buffer, rolled
and written in place by the graph; the host keeps its bookkeeping (`KVCache.plan`, `commit`) as for an eager
call. A replay runs the kernels the capture recorded, the eager call's own, so its results equal the eager
path's (`tests/test_model_gpu_graphs.py` checks it on a GPU).

Graphs are per stream (they hold that stream's cache addresses) and share one memory pool per model, since
one thread runs a model's calls one after another; each call's output is copied out of the pool at once. A
capture that fails (an operation CUDA cannot capture) turns graphs off for that stream, with a warning, and
the call runs eagerly: a stream never stops for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .dit import CausalWanModel, CrossAttnCache, RopeFreqs
from .kv_cache import CachePlan, KVCache

log = logging.getLogger(__name__)

#: Eager calls of a shape before it is captured: the first compiles and autotunes, and a shape met once
#: (a stream's first blocks, before its window is full) is not worth a graph.
CAPTURE_AFTER = 2

#: ``capture(fn, pool, device)`` records ``fn()`` and returns what replays it (see :func:`cuda_capture`).
Capture = Callable[[Callable[[], None], Any, torch.device], Callable[[], None]]


@functools.cache
def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """One capture stream per device: the libraries' per-stream workspaces (cuBLAS) are made once for it."""
    return torch.cuda.Stream(device)


def cuda_capture(fn: Callable[[], None], pool: Any, device: torch.device) -> Callable[[], None]:
    """Record ``fn()``, whose work is on ``device``, as a CUDA graph in memory pool ``pool`` (nothing runs yet);
    returns its replay, which launches on ``device``'s current stream.

    The capture runs on a stream of its own (one per device) and is thread-local, so other threads' CUDA calls
    (a decode stream's event waits, host copies) go on meanwhile.
    """
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device):  # the work's device: its current stream is the one captured
        stream = _capture_stream(device)
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            graph.capture_begin(pool=pool, capture_error_mode="thread_local")
            try:
                fn()
            except BaseException:
                with contextlib.suppress(RuntimeError):  # the capture is invalid anyway: report the first error
                    graph.capture_end()
                raise
            graph.capture_end()
        torch.cuda.current_stream().wait_stream(stream)

    def replay() -> None:
        with torch.cuda.device(device):
            graph.replay()

    return replay


def _static(value: Tensor) -> Tensor:
    """A static input: a copy of ``value`` with its strides, outside the graphs' pool. The compiled halves then
    meet the layouts their guards were made for (a recompile could not run inside a capture)."""
    return torch.empty_strided(value.size(), value.stride(), dtype=value.dtype, device=value.device).copy_(value)


@dataclasses.dataclass
class _Graph:
    """One captured call shape: its static inputs, its replay, and its output after a replay.

    The static inputs are copies of the captured call's with its strides (:func:`_static`).
    """

    x: Tensor
    t: Tensor
    freqs: RopeFreqs
    replay: Callable[[], None] = lambda: None
    out: Tensor | None = None

    def load(self, x: Tensor, t: Tensor, freqs: RopeFreqs) -> None:
        """Copy this call's inputs into the static ones (stream-ordered, before the replay). The gathered keys'
        rotations (slot mode) are those of the plan's slots, the same for every call of the shape."""
        self.x.copy_(x)
        self.t.copy_(t)
        self.freqs.query.copy_(freqs.query)


class ForwardGraphs:
    """The DiT's streaming calls of one stream, replayed as CUDA graphs once captured (see the module).

    Called exactly as `CausalWanModel.forward`. ``capture`` records a call (:func:`cuda_capture` on CUDA);
    ``pool`` is the memory pool its graphs share (one per model: :meth:`fork` passes it on).
    """

    def __init__(self, model: CausalWanModel, *, capture: Capture = cuda_capture, pool: Any = None) -> None:
        self.model = model
        self.capture = capture
        if pool is None and capture is cuda_capture:
            with torch.cuda.device(model.device):
                pool = torch.cuda.graph_pool_handle()
        self.pool = pool
        self.enabled = True
        self.captures = self.replays = 0
        self._graphs: dict[tuple, _Graph] = {}
        self._seen: Counter[tuple] = Counter()
        self._cache_buffers: tuple[int, int] | None = None  # the KV cache the graphs write (its addresses)
        self._context: CrossAttnCache | None = None  # static cross-attention K/V, read by every graph
        self._context_source: CrossAttnCache | None = None  # the prompt's K/V last copied into it

    def fork(self) -> ForwardGraphs:
        """Graphs for another stream over the same model: none captured yet, the same memory pool."""
        return ForwardGraphs(self.model, capture=self.capture, pool=self.pool)

    def release_prompt(self) -> None:
        """The stream ended: let its prompt's cross-attention K/V go (the static copy stays). The graphs stay too:
        a new cache that gets the freed one's memory, as the allocator's same-size blocks most likely do, uses
        them as they are, and one elsewhere drops them (the first call's `_check_cache`)."""
        self._context_source = None

    def clear(self) -> None:
        """Drop every graph and static input (they are captured again as the calls come)."""
        self._graphs.clear()
        self._seen.clear()
        self._cache_buffers = self._context = self._context_source = None

    @torch.no_grad()
    def __call__(
        self,
        x: Tensor,
        t: Tensor,
        context: CrossAttnCache,
        cache: KVCache,
        start_frame: int,
        *,
        sink_recache: bool = False,
        compute_output: bool = True,
    ) -> Tensor | None:
        model = self.model
        if not self.enabled:
            return model(x, t, context, cache, start_frame, sink_recache=sink_recache, compute_output=compute_output)
        plan, freqs = model.plan_call(x, cache, start_frame, sink_recache)
        self._check_cache(cache)
        key = self._key(x, t, plan, cache.rope_mode, compute_output)
        graph = self._graphs.get(key)
        if graph is None:
            self._seen[key] += 1
            if self._seen[key] > CAPTURE_AFTER:
                graph = self._capture(key, x, t, context, cache, plan, freqs, compute_output)
        if graph is None:
            flow = model.run_planned(x, t, context, cache, plan, freqs, compute_output)
        else:
            self._load_context(context)
            graph.load(x, t, freqs)
            graph.replay()
            self.replays += 1
            flow = None if graph.out is None else graph.out.clone()  # the pool is reused by the next replay
        cache.commit(plan)
        return flow

    @staticmethod
    def _key(x: Tensor, t: Tensor, plan: CachePlan, rope_mode: str, compute_output: bool) -> tuple:
        """What fixes a call's kernels and addresses: its plan less the start frame, its shapes and modes."""
        return (dataclasses.replace(plan, start=0), rope_mode, compute_output, x.shape, x.dtype, t.shape, t.dtype)

    def _check_cache(self, cache: KVCache) -> None:
        """Graphs write the cache they were captured with: a stream with new cache buffers starts afresh."""
        buffers = (cache.k.data_ptr(), cache.v.data_ptr())
        if buffers != self._cache_buffers:
            self.clear()
            self._cache_buffers = buffers

    def _load_context(self, context: CrossAttnCache) -> None:
        """Copy the prompt's cross-attention K/V into the static ones, once per prompt."""
        if context is self._context_source:
            return
        assert self._context is not None, "made with the first capture, of this context's shape"
        for static, kv in zip(self._context.kv, context.kv, strict=True):
            for s, c in zip(static, kv, strict=True):
                s.copy_(c)
        self._context_source = context

    def _capture(
        self,
        key: tuple,
        x: Tensor,
        t: Tensor,
        context: CrossAttnCache,
        cache: KVCache,
        plan: CachePlan,
        freqs: RopeFreqs,
        compute_output: bool,
    ) -> _Graph | None:
        """Capture this call shape (its inputs static from now on); None, graphs off, if it cannot be."""
        if self._context is None:  # static cross-attention K/V, outside the graphs' pool
            self._context = CrossAttnCache([(_static(k), _static(v)) for k, v in context.kv])
            self._context_source = context
        keys = None if freqs.keys is None else _static(freqs.keys)
        graph = _Graph(x=_static(x), t=_static(t), freqs=RopeFreqs(_static(freqs.query), keys))
        static_context = self._context

        def call() -> None:  # the plan's slots are the shape's; its start frame is read by the host only
            graph.out = self.model.run_planned(
                graph.x, graph.t, static_context, cache, plan, graph.freqs, compute_output
            )

        try:
            graph.replay = self.capture(call, self.pool, self.model.device)
        except Exception as exc:  # an operation CUDA cannot capture: this stream goes on eagerly
            log.warning("CUDA graphs off for this stream: capturing a DiT call failed: %s: %s", type(exc).__name__, exc)
            self.enabled = False
            self.clear()
            return None
        self.captures += 1
        self._graphs[key] = graph
        return graph
