"""A session: one generation stream, its state machine, its members and the events they receive.

All session state lives on the event loop; the engine's worker thread reports back through
``call_soon_threadsafe``. Members are controllers (may send commands) and viewers (receive video and
events; their commands other than ``get_state`` are answered ``forbidden``).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .engine import BlockDone, Engine, EngineEvent, GenerationFailed, PromptApplied
from .generators.base import Generator
from .protocol import Command, ErrorCode, Event, ProtocolError
from .schedule import PromptSchedule, ScheduleFull

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]

READ_ONLY_COMMANDS = frozenset({"get_state"})


class Role(enum.StrEnum):
    CONTROLLER = "controller"
    VIEWER = "viewer"


class Status(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"


_member_ids = itertools.count(1)


@dataclass(eq=False)
class Member:
    """A subscriber of the session's events."""

    role: Role
    send: EventSink
    id: int = field(default_factory=lambda: next(_member_ids))


class Session:
    """One generation stream shared by its members."""

    def __init__(
        self,
        session_id: str,
        generator: Generator,
        loop: asyncio.AbstractEventLoop | None = None,
        buffer_blocks: int = 1,
    ) -> None:
        self.id = session_id
        self.geometry = generator.geometry
        self.schedule = PromptSchedule(self.geometry.frames_per_block)
        self.engine = Engine(generator, self.schedule, self._on_engine_event, loop, buffer_blocks)
        self.status = Status.IDLE
        self.seed = 0
        self.current_start_frame = 0
        self.video_frame = 0
        self.active_prompt: str | None = None
        self.members: list[Member] = []
        self._run = 0
        self._handlers: dict[str, Callable[[Command], None]] = {
            "schedule_prompt": self._schedule_prompt,
            "remove_prompt": self._remove_prompt,
            "start": self._start,
            "pause": self._pause,
            "resume": self._resume,
            "reset": self._reset,
            "set_seed": self._set_seed,
            "get_state": lambda command: None,
        }

    # --- members -----------------------------------------------------------------------------------

    def join(self, role: Role, send: EventSink) -> Member:
        """Add a member; it receives the current ``state`` at once."""
        member = Member(role, send)
        self.members.append(member)
        self._deliver(member, self.state_event())
        return member

    def leave(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)

    def count(self, role: Role) -> int:
        return sum(1 for m in self.members if m.role is role)

    # --- commands ----------------------------------------------------------------------------------

    def handle(self, raw: str | bytes, role: Role, reply: EventSink) -> None:
        """Parse and run one client message; answers go to ``reply``, changes to every member."""
        parsed = protocol.parse_command(raw)
        if isinstance(parsed, Event):
            reply(parsed)
            return
        self.execute(parsed, role, reply)

    def execute(self, command: Command, role: Role, reply: EventSink) -> None:
        """Run a validated command: ack or error to ``reply``; a ``state`` broadcast if anything changed."""
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
            reply(protocol.error(ErrorCode.GENERATOR_FAILED, f"{type(exc).__name__}: {exc}", command.type, command.id))
            return
        reply(protocol.ack(command.type, command.id))
        if command.type in READ_ONLY_COMMANDS:
            reply(self.state_event())
        else:
            self.broadcast(self.state_event())

    def _schedule_prompt(self, command: Command) -> None:
        prompt, timestamp = command.data["new_prompt"], command.data["timestamp"]
        try:
            self.schedule.put(timestamp, prompt)
        except ScheduleFull as exc:
            raise ProtocolError(ErrorCode.LIMIT_EXCEEDED, str(exc)) from None
        self.engine.prepare(prompt)

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
        self._run = self.engine.start(self.seed)
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

    def _reset(self, command: Command) -> None:
        self.engine.reset()
        self.schedule.clear()
        self.status = Status.IDLE
        self.current_start_frame = self.video_frame = 0
        self.active_prompt = None

    def _set_seed(self, command: Command) -> None:
        self.seed = command.data["seed"]

    # --- engine events (on the loop) ---------------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        if event.run != self._run or self.status is Status.IDLE:
            return  # from a run that was reset or failed meanwhile
        if isinstance(event, BlockDone):
            self.current_start_frame, self.video_frame = event.current_start_frame, event.video_frame
            seconds = round(event.video_frame / self.geometry.content_fps, 4)
            self.broadcast(protocol.progress(event.current_start_frame, event.video_frame, seconds))
        elif isinstance(event, PromptApplied):
            self.active_prompt = event.entry.prompt
            self.broadcast(protocol.prompt_applied(event.entry.timestamp, event.frame, event.entry.prompt))
        elif isinstance(event, GenerationFailed):
            self.status = Status.IDLE
            self.broadcast(protocol.error(ErrorCode.GENERATOR_FAILED, event.message))
            self.broadcast(self.state_event())

    # --- events ------------------------------------------------------------------------------------

    def state_data(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "status": str(self.status),
            "current_start_frame": self.current_start_frame,
            "video_frame": self.video_frame,
            "scheduled": [entry.to_dict() for entry in self.schedule.snapshot()],
            "active_prompt": self.active_prompt,
            "seed": self.seed,
            "geometry": self.geometry.to_dict(),
            "generator": self.engine.generator.name,
            "stalls": self.engine.stalls,
            "controllers": self.count(Role.CONTROLLER),
            "viewers": self.count(Role.VIEWER),
        }

    def state_event(self) -> Event:
        return Event("state", self.state_data())

    def broadcast(self, event: Event) -> None:
        for member in list(self.members):
            self._deliver(member, event)

    def _deliver(self, member: Member, event: Event) -> None:
        try:
            member.send(event)
        except Exception:  # one broken peer must not keep the others from their events
            log.exception("could not deliver %s to member %d", event.type, member.id)

    def close(self) -> None:
        self.engine.close()
        self.members.clear()
