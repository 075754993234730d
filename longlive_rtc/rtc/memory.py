"""Memory given back when peers leave.

Every viewer costs frames (600 KB each at 832x480) and encoder buffers. glibc serves such blocks from
its heap arenas once it has raised its mmap threshold (it does so as large blocks are freed, up to 32 MB),
and the arenas fragment and keep what was freed: a soak of joining and leaving viewers grew by hundreds
of MB. :func:`map_large_blocks` pins the threshold, so large blocks are mapped and unmapped (given back
at once). A closed ``RTCPeerConnection`` also sits in reference cycles (its transports, channels and
listeners point at one another) until a full collection: :class:`Reclaimer` runs one, and a heap trim,
a few seconds after peers leave (once for a burst of departures).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter
LARGE_BLOCK = 128 * 1024  # glibc's own starting threshold, kept from moving


@functools.cache
def _libc_function(name: str):
    """A C library function of this process, or None where there is none (``mallopt`` is glibc's)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def map_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Blocks of ``threshold`` bytes or more get their own mapping, unmapped when freed (process-wide;
    call once at start-up). False where the C library has no ``mallopt``."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` (free heap memory back to the system), None elsewhere."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Reclaimer:
    """Collects cycles and trims the heap ``delay`` seconds after the first of a burst of departures."""

    def __init__(self, delay: float = 5.0) -> None:
        self.delay = delay
        self.runs = 0
        self._trim = _malloc_trim()
        self._pending: asyncio.TimerHandle | None = None

    def soon(self) -> None:
        """Something large was let go (a peer, a session): reclaim in ``delay`` seconds."""
        if self._pending is not None:
            return
        try:
            self._pending = asyncio.get_running_loop().call_later(self.delay, self._run)
        except RuntimeError:  # no loop (shutting down): nothing to pace
            self._pending = None

    def _run(self) -> None:
        self._pending = None
        began = time.perf_counter()
        found = gc.collect()  # on the loop: gc must not run concurrently with it anyway (it holds the GIL)
        collected = time.perf_counter() - began
        self.runs += 1
        if self._trim is not None:
            asyncio.get_running_loop().run_in_executor(None, self._trim)  # ctypes releases the GIL meanwhile
        log.debug("reclaimed %d objects in %.1f ms", found, collected * 1000)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
