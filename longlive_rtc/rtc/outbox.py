"""A peer's outgoing events on its data channel, with bounded cost and bounded buffering.

A snapshot (a ``state`` that lists the whole schedule: up to hundreds of KB with a full one) greets a peer
and answers its ``get_state``; changes travel as small events (``schedule_changed``, ``state`` without the
schedule). Only the latest snapshot matters: :class:`Outbox` sends one at most every ``STATE_INTERVAL``, and
large ones no faster than ``STATE_BYTES_PER_SECOND``, and none while ``STATE_BACKLOG`` bytes still wait in
the channel; a newer one replaces one not yet sent, and a ``state`` change sent meanwhile updates its other
fields (its schedule stays the one of its ``schedule_version``; the changes since went out at once). Delayed
snapshots go out on a grid of ``STATE_INTERVAL`` ticks.
Every other event (acks, errors, progress, changes: a few hundred bytes) goes out at once, in order. A
channel with more than ``MAX_BUFFERED_BYTES`` waiting belongs to a client that stopped reading: ``on_stalled``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from aiortc import RTCDataChannel

from ..protocol import Event, is_snapshot

#: Chromium and aiortc accept 256 KiB data-channel messages; keep state events well under that.
MAX_EVENT_BYTES = 200_000
#: Bytes queued on a data channel the client does not read; past this the peer is dropped.
MAX_BUFFERED_BYTES = 4 * 1024 * 1024
#: Seconds between two state snapshots sent to one peer (a burst of get_state costs one snapshot).
STATE_INTERVAL = 0.25
#: Bytes of state snapshots a second to one peer at most (0.5 Mbit/s: a 200 KB snapshot every 3 s).
STATE_BYTES_PER_SECOND = 64 * 1024
#: While more than this waits in the channel, a state snapshot waits too (and is replaced by newer ones).
STATE_BACKLOG = 256 * 1024
TIMER_SLACK = 0.005  # a loop timer may fire this early


class Outbox:
    """Sends events on ``channel``; ``on_stalled`` is called (once) when the client stopped reading."""

    def __init__(self, channel: RTCDataChannel, on_stalled: Callable[[int], None]) -> None:
        self.channel = channel
        self._on_stalled = on_stalled
        self._stalled = False
        self._pending: Event | None = None  # the latest state not sent yet
        self._timer: asyncio.TimerHandle | None = None
        self._next_state = 0.0  # loop time from which the next state may go

    def send(self, event: Event) -> None:
        if not self._open():
            return
        if not is_snapshot(event):
            if self._pending is not None and event.type == "state":  # the snapshot to come says so too
                self._pending = self._pending.updated(
                    {key: value for key, value in event.data.items() if key != "schedule_version"}
                )
            self.channel.send(event.fit_json(MAX_EVENT_BYTES))
            return
        self._pending = event
        if self._timer is None:
            self._flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = None

    def _open(self) -> bool:
        if self._stalled or self.channel.readyState != "open":
            return False
        if self.channel.bufferedAmount > MAX_BUFFERED_BYTES:
            self._stalled = True
            self.close()
            self._on_stalled(self.channel.bufferedAmount)
            return False
        return True

    def _flush(self) -> None:
        """Send the pending state now if its turn has come and the channel has room, else at a later tick."""
        self._timer = None
        if self._pending is None or not self._open():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now + TIMER_SLACK >= self._next_state and self.channel.bufferedAmount <= STATE_BACKLOG:
            event, self._pending = self._pending, None
            text = event.fit_json(MAX_EVENT_BYTES)
            self._next_state = now + max(STATE_INTERVAL, len(text) / STATE_BYTES_PER_SECOND)
            self.channel.send(text)
            return
        due = max(self._next_state, now + TIMER_SLACK)
        self._timer = loop.call_at(math.ceil(due / STATE_INTERVAL) * STATE_INTERVAL, self._flush)
