"""A session: one generation stream, its state machine, its members and the events they receive.

All session state lives on the event loop; the engine's worker thread reports back through
``call_soon_threadsafe``. Members are controllers (may send commands) and viewers (receive video and
events; their commands other than ``get_state`` are answered ``forbidden``).

Costs are bounded: every message gets exactly one ``ack`` or ``error`` at once, but the broadcasts that
changes cause are coalesced (one per event-loop turn, however many commands came in it) and never carry the
whole schedule: the schedule's changes go out as a small ``schedule_changed`` (from the schedule's journal),
other changes as a ``state`` without ``scheduled``; the full ``state`` only greets a member and answers
``get_state``;
each member has a token bucket of commands (``limit_exceeded`` when empty); callers that are no member
(HTTP routes: signaling limits those per address) are not limited here; the schedule holds at most
``max_prompts`` prompts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .engine import BlockDone, Engine, EngineEvent, GenerationFailed, Playout, PlayoutItem, PromptApplied, PromptFailed
from .generators.base import Generator, check_prompt
from .protocol import COMMAND_BURST, COMMAND_RATE, SCHEDULE_EVENT_INTERVAL, Command, ErrorCode, Event, ProtocolError
from .schedule import MAX_SCHEDULED_PROMPTS, ScheduledPrompt, ScheduleFull, Transition
from .schedule_journal import JournaledSchedule

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]

READ_ONLY_COMMANDS = frozenset({"get_state"})
SCHEDULE_COMMANDS = frozenset({"schedule_prompt", "remove_prompt"})  # they change the schedule alone
#: Prompt characters of pending changes past which they go out at once (keeps one delta well under 200 KB).
MAX_DELTA_CHARS = 32_000


class Role(enum.StrEnum):
    CONTROLLER = "controller"
    VIEWER = "viewer"


class Status(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"


_member_ids = itertools.count(1)


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` a second; one command spends one."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("a command limit needs burst >= 1 and rate > 0")
        self.burst, self.rate, self._clock = burst, rate, clock
        self._tokens, self._at = float(burst), clock()

    def take(self) -> bool:
        """Spend one token; False (nothing spent) when there is none."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def wait(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self._tokens) / self.rate)


@dataclass(eq=False)
class Member:
    """A subscriber of the session's events."""

    role: Role
    send: EventSink
    id: int = field(default_factory=lambda: next(_member_ids))
    bucket: TokenBucket | None = None  # its command budget; None: unlimited


def spend(
    member: Member | None, kind: str | None = None, message_id: protocol.MessageId | None = None
) -> Event | None:
    """Spend one of ``member``'s command budget: None, or the ``limit_exceeded`` answer when it is spent
    (callers that are no member, or members without a bucket, are not limited)."""
    bucket = member.bucket if member is not None else None
    if bucket is None or bucket.take():
        return None
    wait = bucket.wait()
    limits = f"{bucket.burst} at once and {bucket.rate:g} a second at most"
    message = f"too many commands: {limits}; retry in {wait:.2f} s"
    return protocol.error(ErrorCode.LIMIT_EXCEEDED, message, kind, message_id, retry_after=wait)


class Session:
    """One generation stream shared by its members.

    ``command_burst`` / ``command_rate`` set each member's token bucket; ``command_rate=None`` lifts the
    limit.
    """

    def __init__(
        self,
        session_id: str,
        generator: Generator,
        loop: asyncio.AbstractEventLoop | None = None,
        buffer_blocks: int = 1,
        *,
        max_prompts: int = MAX_SCHEDULED_PROMPTS,
        command_burst: int = COMMAND_BURST,
        command_rate: float | None = COMMAND_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = session_id
        self.geometry = generator.geometry
        self.schedule = JournaledSchedule(self.geometry.frames_per_block, max_prompts, on_change=self._schedule_changed)
        self._loop = loop or asyncio.get_running_loop()
        self.engine = Engine(generator, self.schedule, self._on_engine_event, self._loop, buffer_blocks)
        # The protocol's status: set by commands and, on the loop, by the failure events the session broadcasts,
        # in order with them (the engine's own flags change earlier, on its thread). The run counter is the
        # engine's alone (``engine.current_run``): it equals the run started while the status is not idle.
        self.status = Status.IDLE
        self.seed = 0
        self.current_start_frame = 0
        self.video_frame = 0
        self.active_prompt: str | None = None
        self.playback_frame: int | None = None  # the video frame on air (None: the idle card)
        self.members: list[Member] = []
        self._limit = (command_burst, command_rate, clock)
        self._state_pending: asyncio.Handle | None = None
        self._changes_pending: asyncio.Handle | None = None  # the scheduled flush of the schedule's journal
        self._changes_sent = -SCHEDULE_EVENT_INTERVAL  # loop time of the last schedule_changed
        self.schedule_version = 0  # the version of the last schedule_changed broadcast
        self._scheduled: tuple[int, list[dict[str, Any]]] = (-1, [])  # (schedule version, its entries as dicts)
        self._handlers: dict[str, Callable[[Command], None]] = {
            "schedule_prompt": self._schedule_prompt,
            "remove_prompt": self._remove_prompt,
            "start": self._start,
            "pause": self._pause,
            "resume": self._resume,
            "stop": self._stop,
            "reset": self._reset,
            "set_seed": self._set_seed,
            "get_state": lambda command: None,
        }

    def _new_bucket(self) -> TokenBucket | None:
        burst, rate, clock = self._limit
        return None if rate is None else TokenBucket(burst, rate, clock)

    # --- members -----------------------------------------------------------------------------------

    def join(self, role: Role, send: EventSink) -> Member:
        """Add a member; it receives the current ``state`` at once."""
        member = Member(role, send, bucket=self._new_bucket())
        state = self.state_event()  # first: changes still pending go to the members who do not have them
        self.members.append(member)
        self._deliver(member, state)
        return member

    def leave(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)

    def count(self, role: Role) -> int:
        return sum(1 for m in self.members if m.role is role)

    # --- commands ----------------------------------------------------------------------------------

    def handle(self, raw: str | bytes, role: Role, reply: EventSink, *, member: Member | None = None) -> None:
        """Parse and run one client message; answers go to ``reply``, changes to every member.

        ``member`` is whose command budget it spends (malformed messages spend one too); when None, the
        member whose ``send`` is ``reply``, if any (a data-channel peer); other callers are not limited.
        """
        member = member or self._member_of(reply)
        parsed = protocol.parse_command(raw)
        if isinstance(parsed, Event):
            reply(spend(member, None, parsed.id) or parsed)
            return
        self.execute(parsed, role, reply, member=member)

    def execute(self, command: Command, role: Role, reply: EventSink, *, member: Member | None = None) -> None:
        """Run a validated command: one ack or error to ``reply`` (``get_state`` adds the ``state``); a
        change schedules one coalesced ``state`` broadcast."""
        member = member or self._member_of(reply)
        limited = spend(member, command.type, command.id)
        if limited is not None:
            reply(limited)
            return
        if role is Role.VIEWER and command.type not in READ_ONLY_COMMANDS:
            reply(protocol.error(ErrorCode.FORBIDDEN, "viewers cannot send commands", command.type, command.id))
            return
        try:
            self._handlers[command.type](command)
        except ProtocolError as exc:
            reply(protocol.error(exc.code, exc.message, command.type, command.id))
            return
        except Exception as exc:  # a bug must not take the server down; say what happened
            log.exception("command %s failed", command.type)
            failure = protocol.shorten(f"{type(exc).__name__}: {exc}", 500)
            reply(protocol.error(ErrorCode.GENERATOR_FAILED, failure, command.type, command.id))
            return
        reply(protocol.ack(command.type, command.id))
        if command.type in READ_ONLY_COMMANDS:
            reply(self.state_event())
        elif command.type not in SCHEDULE_COMMANDS:  # the schedule's own changes go out from its journal
            self.state_changed()

    def _member_of(self, reply: EventSink) -> Member | None:
        return next((m for m in self.members if m.send == reply), None)

    def _schedule_prompt(self, command: Command) -> None:
        prompt, timestamp = command.data["new_prompt"], command.data["timestamp"]
        try:
            check_prompt(self.engine.generator, prompt)
        except ValueError as exc:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"the {self.engine.generator.name} generator cannot encode 'new_prompt': {exc}"
            ) from None
        try:
            entry = self.schedule.put(timestamp, prompt, Transition.from_dict(command.data.get("transition")))
        except ScheduleFull as exc:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, str(exc)) from None
        self.engine.prepare(entry)

    def _remove_prompt(self, command: Command) -> None:
        timestamp = command.data["timestamp"]
        if not self.schedule.remove(timestamp):
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no prompt is scheduled at frame {timestamp}")

    def _start(self, command: Command) -> None:
        if self.status is not Status.IDLE:
            hint = " (use resume)" if self.status is Status.PAUSED else ""
            raise ProtocolError(ErrorCode.ALREADY_RUNNING, f"the stream is already {self.status}{hint}")
        if not self.schedule.has_initial_prompt():
            raise ProtocolError(ErrorCode.NO_INITIAL_PROMPT, "schedule a prompt at frame 0 before start")
        self.current_start_frame = self.video_frame = 0
        self.active_prompt = None
        self.engine.start(self.seed)
        self.status = Status.RUNNING

    def _pause(self, command: Command) -> None:
        if self.status is not Status.RUNNING:
            raise ProtocolError(ErrorCode.NOT_RUNNING, f"cannot pause: the stream is {self.status}")
        self.engine.pause()
        self.status = Status.PAUSED

    def _resume(self, command: Command) -> None:
        if self.status is Status.RUNNING:
            raise ProtocolError(ErrorCode.ALREADY_RUNNING, "the stream is already running")
        if self.status is not Status.PAUSED:
            raise ProtocolError(ErrorCode.NOT_RUNNING, "cannot resume: the stream is idle (use start)")
        self.engine.resume()
        self.status = Status.RUNNING

    def _stop(self, command: Command) -> None:
        if self.status is Status.IDLE:
            raise ProtocolError(ErrorCode.NOT_RUNNING, "cannot stop: the stream is idle")
        self.engine.stop()
        self.schedule.rewind()
        self._to_frame_zero()

    def _reset(self, command: Command) -> None:
        self.engine.stop()
        self.schedule.clear()
        self._to_frame_zero()

    def _to_frame_zero(self) -> None:
        self.status = Status.IDLE
        self.current_start_frame = self.video_frame = 0
        self.active_prompt = None

    def _set_seed(self, command: Command) -> None:
        self.seed = command.data["seed"]

    # --- engine events (on the loop) ---------------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        if isinstance(event, PromptFailed):  # the schedule changed, whichever run it came from
            self._prompt_failed(event)
            return
        if self.status is Status.IDLE or event.run != self.engine.current_run:
            return  # from a run that was reset or failed meanwhile
        if isinstance(event, BlockDone):
            self.current_start_frame, self.video_frame = event.current_start_frame, event.video_frame
            seconds = round(event.video_frame / self.geometry.content_fps, 4)
            self.broadcast(protocol.progress(event.current_start_frame, event.video_frame, seconds))
        elif isinstance(event, PromptApplied):
            self.active_prompt = event.entry.prompt
            entry = event.entry
            self.broadcast(protocol.prompt_applied(entry.timestamp, event.frame, entry.prompt, entry.transition.mode))
        elif isinstance(event, GenerationFailed):
            self.status = Status.IDLE
            self.broadcast(protocol.error(ErrorCode.GENERATOR_FAILED, protocol.shorten(event.message, 500)))
            self.state_changed()

    def shown(self, item: PlayoutItem) -> None:
        """The on-air clock put ``item`` on air (on the loop, just after the frame went out): the picture on
        screen, and ``on_air`` when it is the first frame of the block that switched a prompt in."""
        if item.kind is Playout.IDLE:
            self.playback_frame = None
        elif item.kind is Playout.FRAME:
            self.playback_frame = item.index
            if item.applied is not None and self.status is not Status.IDLE and item.run == self.engine.current_run:
                applied = item.applied
                mode = applied.transition.mode
                self.broadcast(protocol.on_air(applied.timestamp, item.frame or 0, item.index or 0, mode, item.skipped))

    def _prompt_failed(self, event: PromptFailed) -> None:
        entry = event.entry
        if event.ended_run and self.status is not Status.IDLE and event.run == self.engine.current_run:
            self.status = Status.IDLE
        what = "the stream stopped" if event.ended_run else "it was removed from the schedule"
        message = (
            f"could not encode the prompt {protocol.excerpt(entry.prompt)} scheduled at frame {entry.timestamp} "
            f"({what}): {protocol.shorten(event.message, 300)}"
        )
        self.broadcast(protocol.error(ErrorCode.GENERATOR_FAILED, message))
        self.state_changed()

    # --- events ------------------------------------------------------------------------------------

    def state_data(self, scheduled: bool = True) -> dict[str, Any]:
        """The session as ``state`` has it, with the schedule (``scheduled``) unless told otherwise.

        Changes of the schedule not broadcast yet go out first, so that ``schedule_version`` is the version of
        the last ``schedule_changed`` every member has been sent and ``scheduled`` the schedule at that version.
        """
        if scheduled:
            changes, version, entries = self.schedule.drain_with_snapshot()
            self._send_changes(changes)
        else:
            self._flush_changes()
        data: dict[str, Any] = {
            "session": self.id,
            "status": str(self.status),
            "current_start_frame": self.current_start_frame,
            "video_frame": self.video_frame,
            "playback_frame": self.playback_frame,
        }
        if scheduled:
            data["scheduled"] = self._scheduled_dicts(version, entries)
        data.update(
            {
                "schedule_version": self.schedule_version,
                "active_prompt": self.active_prompt,
                "seed": self.seed,
                "geometry": self.geometry.to_dict(),
                "generator": self.engine.generator.name,
                "stalls": self.engine.stalls,
                "frames_skipped": self.engine.frames_skipped,
                "controllers": self.count(Role.CONTROLLER),
                "viewers": self.count(Role.VIEWER),
            }
        )
        return data

    def _scheduled_dicts(self, version: int, entries: list[ScheduledPrompt]) -> list[dict[str, Any]]:
        """The schedule as ``state`` lists it, rebuilt only when the schedule changed."""
        if self._scheduled[0] != version:
            self._scheduled = (version, [entry.to_dict() for entry in entries])
        return list(self._scheduled[1])

    def state_event(self) -> Event:
        """The whole ``state``, schedule included: what greets a member and answers ``get_state``."""
        return Event("state", self.state_data())

    def state_changed(self) -> None:
        """Schedule one ``state`` broadcast (without the schedule) for the end of this event-loop turn
        (coalesces a burst)."""
        if self._state_pending is not None:
            return
        try:
            self._state_pending = self._loop.call_soon(self._broadcast_state)
        except RuntimeError:  # the loop is closed: nobody can receive it later
            self._broadcast_state()

    def _broadcast_state(self) -> None:
        self._state_pending = None
        self.broadcast(Event("state", self.state_data(scheduled=False)))

    # --- schedule deltas ---------------------------------------------------------------------------

    def _schedule_changed(self) -> None:
        """The schedule's journal grew (on the loop, or on the engine's thread): broadcast it at the end of
        this turn, but no sooner than ``SCHEDULE_EVENT_INTERVAL`` after the last one (a flood of changes costs
        a few events a second), and at once when it holds many prompt characters."""
        if not self._on_loop():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody can receive it
                self._loop.call_soon_threadsafe(self._schedule_changed)
            return
        if self.schedule.pending_chars > MAX_DELTA_CHARS:
            self._flush_changes()
        elif self._changes_pending is None:
            wait = self._changes_sent + SCHEDULE_EVENT_INTERVAL - self._loop.time()
            try:
                if wait > 0:
                    self._changes_pending = self._loop.call_later(wait, self._flush_changes)
                else:
                    self._changes_pending = self._loop.call_soon(self._flush_changes)
            except RuntimeError:
                self._flush_changes()

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _flush_changes(self) -> None:
        if self._changes_pending is not None:
            self._changes_pending.cancel()
            self._changes_pending = None
        self._send_changes(self.schedule.drain())

    def _send_changes(self, changes: list[dict[str, Any]]) -> None:
        if changes:
            self._changes_sent = self._loop.time()
            self.schedule_version += 1
            self.broadcast(protocol.schedule_changed(self.schedule_version, changes))

    def broadcast(self, event: Event) -> None:
        for member in list(self.members):
            self._deliver(member, event)

    def _deliver(self, member: Member, event: Event) -> None:
        try:
            member.send(event)
        except Exception:  # one broken peer must not keep the others from their events
            log.exception("could not deliver %s to member %d", event.type, member.id)

    def close(self) -> bool:
        """End the session's engine; whether its worker thread ended (else ``engine.wait_closed``)."""
        if self._changes_pending is not None:
            self._changes_pending.cancel()
            self._changes_pending = None
        if self._state_pending is not None:
            self._state_pending.cancel()
            self._state_pending = None
        ended = self.engine.close()
        self.members.clear()
        return ended
