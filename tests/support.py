"""Test helpers shared by several test modules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from longlive_rtc.generators import Geometry
from longlive_rtc.protocol import Event

SMALL = Geometry(width=128, height=64)


class EventLog:
    """Collects events sent to a member and waits for them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    def mark(self) -> int:
        """A position to wait from: ``wait_for(..., since=log.mark())`` ignores older events."""
        return len(self.events)

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 10.0, since: int = 0) -> Event:
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no matching event; last: {[e.to_dict() for e in self.events[-5:]]}")
            await asyncio.sleep(0.005)


def rerun(fn: Callable[[], None], pool: object, device: object) -> Callable[[], None]:
    """A CUDA-graph capture for the CPU (``ForwardGraphs(capture=rerun)``): it records nothing, and its "replay"
    runs the call again on the graph's static inputs, as a real replay reads them."""
    return fn
