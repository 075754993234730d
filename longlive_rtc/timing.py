"""Device timing for the benchmarks: CUDA events on a CUDA device, the host clock elsewhere.

One timer for ``longlive-rtc bench`` and ``benchmarks/*.py``: :func:`device_ms` times one call,
:class:`Span` a stretch of queued work, :class:`StageTimer` every model call of a pipeline by kind through
its public ``step_hook``. On CUDA a span's end is read only when asked (no host synchronisation while
timing); on the CPU the work is synchronous and the host clock is exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .model.pipeline import StreamingPipeline


class Span:
    """The time between :meth:`start` and :meth:`stop` on ``device``'s current stream (or the host clock)."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None
        cuda = self.device.type == "cuda" if self.device is not None else torch.cuda.is_available()
        self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) if cuda else None
        self._host = [0.0, 0.0]

    def start(self) -> Span:
        if self._events is not None:
            self._events[0].record(torch.cuda.current_stream(self.device))
        else:
            self._host[0] = time.perf_counter()
        return self

    def stop(self) -> Span:
        if self._events is not None:
            self._events[1].record(torch.cuda.current_stream(self.device))
        else:
            self._host[1] = time.perf_counter()
        return self

    @property
    def ms(self) -> float:
        """Milliseconds from start to stop (on CUDA, waits for the stop event)."""
        if self._events is None:
            return 1e3 * (self._host[1] - self._host[0])
        begin, end = self._events
        end.synchronize()
        return begin.elapsed_time(end)


def device_ms(fn: Callable[[], object], device: torch.device | str | None = None) -> float:
    """Milliseconds ``fn()`` takes on ``device`` (default: CUDA when there is one), waiting for its end."""
    span = Span(device).start()
    fn()
    return span.stop().ms


@dataclass
class StageTimer:
    """Times a pipeline's model calls by kind ("denoise", "cache", "recache") through its ``step_hook``.

    ``tag`` labels the spans recorded from now on (e.g. a block index); :meth:`ms` reads them.
    """

    device: torch.device | str | None = None
    tag: object = None
    spans: list[tuple[str, object, Span]] = field(default_factory=list)

    def attach(self, pipeline: StreamingPipeline) -> StageTimer:
        """Time ``pipeline``'s model calls from now on (replacing its hook)."""
        if self.device is None:
            self.device = pipeline.model.device
        pipeline.step_hook = self._around
        return self

    @contextmanager
    def _around(self, kind: str, _x: torch.Tensor) -> Iterator[None]:
        span = Span(self.device).start()
        yield
        self.spans.append((kind, self.tag, span.stop()))

    def ms(self, kind: str, tags: Callable[[object], bool] | None = None) -> list[float]:
        """Milliseconds of every call of ``kind`` (whose tag ``tags`` accepts), in order."""
        return [span.ms for k, tag, span in self.spans if k == kind and (tags is None or tags(tag))]

    def clear(self) -> None:
        self.spans.clear()
