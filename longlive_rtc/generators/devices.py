"""Sessions spread over several devices: one backend per device, each session placed where most slots are free.

A :class:`DevicePool` is the hub's generator factory when ``serve --devices`` names several devices. Each
device is *opened* once (weights loaded once per device: for LongLive a GPU worker over one loaded and
warmed-up generator) and then hands out one generator per session. The pool places a new session on the
healthy device with the most free slots (the first listed among equals) and wraps its generator in a
:class:`PlacedGenerator` that knows its device.

A device fails as a whole: the first exception out of any generator call of a session on it (a CUDA error
poisons the device's context for every stream on it) marks it failed, but for a ``ValueError`` (the caller's
input) or running out of memory (that session's allocation, :func:`is_session_error`), which fail that
session's run only. From then on every session on it gets :class:`DeviceFailed` from its next call (the
engine ends its run and the session reports ``generator_failed``; its schedule is kept), new sessions go
to the other devices, and ``report()`` (``/health``, ``/metrics``) shows it failed until the server
restarts. The other devices' sessions never touch it and stream on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import base
from .base import Generator

log = logging.getLogger(__name__)

#: Opens a device (loads what it needs once) and returns what makes one generator per session on it.
DeviceOpener = Callable[[str], Callable[[], Generator]]

OK, FAILED, CLOSED = "ok", "failed", "not loaded"


class NoFreeSlot(RuntimeError):
    """Every healthy device has all its slots taken (or no device is healthy); the hub answers ``busy``."""


class DeviceFailed(RuntimeError):
    """The session's device failed earlier; nothing runs on it any more."""


_UNAVAILABLE = object()  # what a failed device "encodes" a prompt to: the next begin/block raises anyway


def parse_devices(text: str, cuda_count: Callable[[], int] | None = None) -> list[str]:
    """``cuda:0,cuda:1``, ``cpu,cpu`` or ``all`` (every CUDA device) -> device names, checked.

    A device may be listed more than once only when it is ``cpu`` (tests and CPU emulation).
    """
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if names == ["all"]:
        count = cuda_count() if cuda_count is not None else _cuda_count()
        if count < 1:
            raise ValueError("--devices all: no CUDA device is visible")
        return [f"cuda:{i}" for i in range(count)]
    if not names:
        raise ValueError("--devices needs a comma-separated list of devices (cuda:0,cuda:1) or 'all'")
    for name in names:
        kind, _, index = name.partition(":")
        if kind not in ("cuda", "cpu") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise ValueError(f"--devices: {name!r} is not a device (cuda:N, cuda or cpu)")
    normal = [f"cuda:{n.partition(':')[2] or 0}" if n.startswith("cuda") else n for n in names]
    repeated = sorted({n for n in normal if n != "cpu" and normal.count(n) > 1})
    if repeated:
        raise ValueError(f"--devices lists {', '.join(repeated)} twice (one worker per device)")
    return normal


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_labels(names: Sequence[str]) -> list[str]:
    """One unique label per device: its name, numbered (``cpu#1``) when the name is listed twice."""
    return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


@dataclass
class Device:
    """One device of the pool: its slots, the sessions placed on it, its health."""

    name: str
    label: str
    slots: int
    make: Callable[[], Generator] | None = None  # set once opened
    placed: int = 0  # sessions holding a slot here
    spare: list[PlacedGenerator] = field(default_factory=list)  # generators of freed sessions, reused
    error: str | None = None  # why it failed

    @property
    def state(self) -> str:
        return FAILED if self.error is not None else OK if self.make is not None else CLOSED

    @property
    def free(self) -> int:
        return self.slots - self.placed


class DevicePool:
    """The hub's generator factory over several devices (call it for a session's generator; ``release`` it)."""

    def __init__(self, names: Sequence[str], slots: int, opener: DeviceOpener) -> None:
        """``slots`` generation slots per device; ``opener(name)`` loads a device when it is first needed."""
        if not names:
            raise ValueError("a device pool needs at least one device")
        if slots < 1:
            raise ValueError("a device needs at least one slot")
        self.devices = [Device(n, label, slots) for n, label in zip(names, device_labels(list(names)), strict=True)]
        self._opener = opener
        self._lock = threading.RLock()

    @property
    def capacity(self) -> int:
        """Slots of every device together (what the hub's ``max_sessions`` should be)."""
        return sum(d.slots for d in self.devices)

    def open(self, device: Device) -> bool:
        """Load ``device`` unless it is loaded or failed; False when it is (or now is) failed."""
        with self._lock:
            if device.make is None and device.error is None:
                try:
                    device.make = self._opener(device.name)
                except Exception as exc:  # the device is unusable; the others serve on
                    log.exception("device %s could not be opened", device.label)
                    device.error = f"could not be opened: {type(exc).__name__}: {exc}"
            return device.error is None

    def open_all(self) -> None:
        """Load every device now (``serve`` does, before it listens); raise when none could be loaded."""
        opened = [self.open(device) for device in self.devices]
        if not any(opened):
            raise RuntimeError("no device could be loaded: " + "; ".join(f"{d.label} {d.error}" for d in self.devices))

    def __call__(self) -> Generator:
        """A generator for a new session, on the healthy device with the most free slots."""
        with self._lock:
            while True:
                candidates = [d for d in self.devices if d.error is None and d.free > 0]
                if not candidates:
                    healthy = sum(d.error is None for d in self.devices)
                    raise NoFreeSlot(
                        f"all {healthy * self.devices[0].slots} slots of the {healthy} healthy device(s) are busy"
                        if healthy
                        else "every device has failed"
                    )
                device = max(candidates, key=lambda d: d.free)  # max keeps the first of equals: list order
                if self.open(device):
                    break
            generator = device.spare.pop() if device.spare else PlacedGenerator(self, device, device.make())
            device.placed += 1
            log.info("session placed on %s (%d/%d slots)", device.label, device.placed, device.slots)
            return generator

    def release(self, generator: Generator) -> None:
        """A freed session's generator: its slot is free again (and the generator kept for the next session)."""
        if not isinstance(generator, PlacedGenerator) or generator.pool is not self:
            return
        with self._lock:
            device = generator.device
            device.placed = max(0, device.placed - 1)
            if device.error is None:
                device.spare.append(generator)

    def fail(self, device: Device, exc: BaseException) -> None:
        """Mark ``device`` failed (the first failure is kept); its sessions fail from their next call."""
        with self._lock:
            if device.error is not None:
                return
            device.error = f"{type(exc).__name__}: {exc}"
            device.spare.clear()
        log.error("device %s failed (%s); its %d session(s) stop, new sessions avoid it", device.label,
                  device.error, device.placed)  # fmt: skip

    def report(self) -> list[dict[str, Any]]:
        """Each device's label, state (ok / failed / not loaded), slots, sessions placed and error."""
        with self._lock:
            return [
                {"device": d.label, "state": d.state, "slots": d.slots, "sessions": d.placed, "error": d.error}
                for d in self.devices
            ]

    def device_of(self, generator: Generator) -> str | None:
        """The label of the device a session's generator runs on (None for a generator not from this pool)."""
        return generator.device.label if isinstance(generator, PlacedGenerator) and generator.pool is self else None


def is_session_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one session's, not its device's: its input (``ValueError``), out of memory (torch's
    ``OutOfMemoryError``: that session's cache or blocks did not fit; the device and its other sessions go on),
    or a call dropped because the session closed (``CallCancelled``)."""
    return isinstance(exc, ValueError | MemoryError | base.CallCancelled) or any(
        cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__
    )  # by name: this module does not import torch


class PlacedGenerator:
    """A session's generator on one device of a pool: delegates, and fails the device on a device error."""

    def __init__(self, pool: DevicePool, device: Device, inner: Generator) -> None:
        self.pool, self.device, self.inner = pool, device, inner
        self.geometry = inner.geometry
        self.name = inner.name

    @property
    def placement(self) -> str:
        """The label of the device this session runs on (``/metrics`` shows it)."""
        return self.device.label

    def _call(self, method: str, *args: Any) -> Any:
        return self._guarded(getattr(self.inner, method), *args)

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, failing the device on an error that is not the session's own."""
        if self.device.error is not None:
            raise DeviceFailed(f"device {self.device.label} failed: {self.device.error}")
        try:
            return fn(*args)
        except Exception as exc:
            if not is_session_error(exc):
                self.pool.fail(self.device, exc)
            raise

    def check_prompt(self, prompt: str) -> None:
        base.check_prompt(self.inner, prompt)  # tokenising on the caller's thread: the device is not involved

    def encode_prompt(self, prompt: str) -> Any:
        if self.device.error is not None:  # keep the schedule: the block that needs it fails the run instead
            return _UNAVAILABLE
        return self._call("encode_prompt", prompt)

    def begin(self, seed: int, prompt: Any) -> None:
        self._call("begin", seed, prompt)

    def switch_prompt(self, prompt: Any) -> None:
        self._call("switch_prompt", prompt)

    def cut(self, prompt: Any) -> None:
        self._call("cut", prompt)

    def set_prompt(self, prompt: Any) -> None:
        self._call("set_prompt", prompt)

    def mix_prompts(self, a: Any, b: Any, weight: float, curve: str) -> Any:
        if self.device.error is not None:
            return _UNAVAILABLE
        return self._guarded(base.mix_prompts, self.inner, a, b, weight, curve)

    def next_block(self) -> np.ndarray:
        return self._call("next_block")

    def cancel_pending(self) -> None:
        base.cancel_pending(self.inner)

    def skip_frames(self, count: int) -> None:
        base.skip_frames(self.inner, count)

    def start_lead(self) -> float:
        return base.start_lead(self.inner)

    def shares_device(self) -> bool:
        return base.shares_device(self.inner)

    def reset(self) -> None:
        if self.device.error is None:  # a failed device's state is dropped with it
            self._call("reset")
