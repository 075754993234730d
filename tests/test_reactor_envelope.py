"""The Reactor SDK envelope over a real session (no network): commands in, events out, runtime messages.

A "wire" stands for the SDK's data channel: text goes in through the enveloped ``handle`` and comes out as
the text a peer would send (``fit_json`` with the peer's limit), so every assertion is on JSON the SDK reads.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from longlive_rtc import protocol
from longlive_rtc.engine import Playout
from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.protocol import Event
from longlive_rtc.rtc.outbox import MAX_EVENT_BYTES
from longlive_rtc.rtc.reactor_envelope import ReactorEnvelope, command_capabilities, wrap
from longlive_rtc.session import Role, Session

from .support import SMALL, EventLog


class Wire:
    """One SDK client on a session: sends envelopes, records what it would receive, as JSON."""

    def __init__(self, session: Session, role: Role = Role.CONTROLLER) -> None:
        self.session = session
        self.role = role
        self.received: list[dict] = []
        join, self._handle = ReactorEnvelope().bind(session.join, session.handle)
        self.member = join(role, self._send)

    def _send(self, event: Event) -> None:  # what Peer.send does with an event
        text = event.fit_json(MAX_EVENT_BYTES)
        assert len(text.encode()) <= MAX_EVENT_BYTES
        self.received.append(json.loads(text))

    def raw(self, text: str | bytes) -> list[dict]:
        """Send one message; the messages it caused at once."""
        mark = len(self.received)
        self._handle(text, self.role, self._send, member=self.member)
        return self.received[mark:]

    def command(self, kind: str, data: dict | None = None, scope: str = "application") -> list[dict]:
        """``reactor.sendCommand(kind, data, scope)`` as the SDK serialises it."""
        return self.raw(json.dumps({"scope": scope, "data": {"type": kind, "data": data or {}}}))

    def app(self, kind: str) -> list[dict]:
        """The application messages of one type, unwrapped as the SDK's ``message`` event hands them."""
        return [m["data"] for m in self.received if m["scope"] == "application" and m["data"]["type"] == kind]

    async def wait(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.received:
                if message["scope"] == "application" and predicate(message["data"]):
                    return message["data"]
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no matching message in {self.received[-4:]}")


async def drain(session: Session, stop: asyncio.Event) -> None:
    """Play the session's frames out as the track would, so the engine keeps generating."""
    while not stop.is_set():
        item = session.engine.next_frame()
        await asyncio.sleep(0 if item.kind is Playout.FRAME else 0.002)


@pytest.fixture
async def session():
    s = Session("reactor", SyntheticGenerator(SMALL), buffer_blocks=1)
    yield s
    s.close()


def only(messages: list[dict]) -> dict:
    assert len(messages) == 1, messages
    return messages[0]


async def test_joining_sends_the_state_in_the_application_scope(session: Session) -> None:
    wire = Wire(session)
    first = only(wire.received)
    assert first["scope"] == "application"
    assert first["data"]["type"] == "state" and first["data"]["data"]["status"] == "idle"


async def test_seed_schedule_and_progress_through_the_envelope(session: Session) -> None:
    """The seed's flow: three prompts, start; progress 3, 6, 9 and the prompt at frame 30 applied."""
    wire = Wire(session)
    own = EventLog()
    session.join(Role.VIEWER, own)  # a peer on our own channel sees the same session, unwrapped
    for at, prompt in ((0, "a red fox"), (30, "a blue whale"), (90, "a green forest")):
        ack = only(wire.command("schedule_prompt", {"new_prompt": prompt, "timestamp": at}))
        assert ack == {"scope": "application", "data": {"type": "ack", "data": {"command": "schedule_prompt"}}}
    assert [entry.timestamp for entry in session.schedule.snapshot()] == [0, 30, 90]
    assert only(wire.command("start"))["data"]["type"] == "ack"
    stop = asyncio.Event()
    player = asyncio.ensure_future(drain(session, stop))
    try:
        await wire.wait(lambda m: m["type"] == "prompt_applied" and m["data"]["timestamp"] == 30, timeout=30)
    finally:
        stop.set()
        await player
    frames = [m["data"]["current_start_frame"] for m in wire.app("progress")]
    assert frames[:3] == [3, 6, 9] and frames == sorted(frames)
    applied = wire.app("prompt_applied")
    assert [(m["data"]["timestamp"], m["data"]["frame"]) for m in applied[:2]] == [(0, 0), (30, 30)]
    assert [e.data["current_start_frame"] for e in own.of("progress")][:3] == [3, 6, 9]
    assert only(wire.command("reset"))["data"]["type"] == "ack"
    await asyncio.sleep(0.05)  # the coalesced state broadcast
    assert wire.app("state")[-1]["data"]["status"] == "idle"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"scope":"application","data":{"type":"fly","data":{}}}', "unknown_command"),
        ('{"scope":"application","data":{"type":"schedule_prompt","data":{"timestamp":0}}}', "invalid_field"),
        ('{"scope":"application","data":{"type":"set_seed","data":{"seed":-1}}}', "invalid_field"),
        ('{"scope":"application","data":{"type":"start","data":{}}}', "no_initial_prompt"),
        ('{"scope":"application","data":{"type":"start","data":{},"uploads":{"x":{}}}}', "bad_message"),
        ('{"scope":"application","data":"start"}', "bad_message"),
        ('{"scope":"elsewhere","data":{"type":"start"}}', "bad_message"),
        ('{"scope":"application","data":', "bad_json"),
        (b"\xff\xfe", "bad_json"),
        ('{"scope":"application","data":{"type":"get_state","data":{"pad":"' + "x" * 20000 + '"}}}', "limit_exceeded"),
    ],
)
async def test_bad_messages_get_the_protocols_errors_in_the_envelope(session: Session, text, code: str) -> None:
    wire = Wire(session)
    error = only(wire.raw(text))
    assert error["scope"] == "application"
    assert error["data"]["type"] == "error" and error["data"]["data"]["code"] == code, error
    assert session.schedule.snapshot() == [] and str(session.status) == "idle"


async def test_the_protocols_own_messages_pass_unwrapped_and_are_answered_in_the_envelope(session: Session) -> None:
    wire = Wire(session)
    ack = only(wire.raw('{"type":"set_seed","data":{"seed":7},"id":"s1"}'))
    assert ack["data"] == {"type": "ack", "data": {"command": "set_seed"}, "id": "s1"}
    assert session.seed == 7


async def test_viewers_are_refused_commands_as_on_our_channel(session: Session) -> None:
    wire = Wire(session, Role.VIEWER)
    assert only(wire.command("start"))["data"]["data"]["code"] == "forbidden"


async def test_runtime_ping_is_silent_and_capabilities_list_every_command(session: Session) -> None:
    wire = Wire(session)
    assert wire.command("ping", scope="runtime") == []
    answer = only(wire.command("requestCapabilities", scope="runtime"))
    assert answer["scope"] == "runtime" and answer["data"]["type"] == "modelCapabilities"
    listed = {c["name"]: c for c in answer["data"]["data"]["commands"]}
    assert list(listed) == list(protocol.COMMANDS)
    fields = listed["schedule_prompt"]["schema"]
    assert fields["new_prompt"]["type"] == "string" and fields["new_prompt"]["maxLength"] == protocol.MAX_PROMPT_CHARS
    assert fields["timestamp"] == {"type": "integer", "minimum": 0, "maximum": protocol.MAX_TIMESTAMP, "required": True}
    assert listed["start"]["schema"] == {} and listed["start"]["description"] == protocol.COMMAND_DESCRIPTIONS["start"]
    unknown = only(wire.command("requestClip", {"duration_seconds": 5}, scope="runtime"))
    assert unknown["scope"] == "runtime" and unknown["data"]["data"]["code"] == "unknown_command"


async def test_runtime_requests_spend_the_members_command_budget() -> None:
    session = Session("frozen", SyntheticGenerator(SMALL), clock=lambda: 0.0)  # no refill during the test
    wire = Wire(session)
    answers = [wire.command("requestCapabilities", scope="runtime") for _ in range(protocol.COMMAND_BURST + 5)]
    refused = [a[0]["data"]["data"] for a in answers if a[0]["data"]["type"] == "error"]
    assert len(refused) >= 5 and refused[0]["code"] == "limit_exceeded" and refused[0]["retry_after"] > 0
    assert wire.command("ping", scope="runtime") == []  # pings never count
    assert only(wire.command("get_state"))["data"]["data"]["code"] == "limit_exceeded"  # one budget for both
    session.close()


def test_a_state_too_large_is_cut_inside_the_envelope() -> None:
    scheduled = [{"timestamp": t, "prompt": "p" * 1900} for t in range(0, 600, 3)]
    state = Event("state", {"status": "idle", "scheduled": scheduled})
    text = wrap(state).fit_json(MAX_EVENT_BYTES)
    assert len(text.encode()) <= MAX_EVENT_BYTES
    message = json.loads(text)
    assert message["scope"] == "application" and message["data"]["data"]["scheduled_truncated"] is True
    assert json.loads(wrap(wrap(state)).to_json())["data"]["type"] == "state"  # one envelope, never two


def test_capability_schemas_are_the_protocols_json_schema() -> None:
    definitions = protocol.json_schema()["$defs"]
    for capability in command_capabilities():
        data = definitions[f"command.{capability['name']}"]["properties"]["data"]["properties"]
        listed = {
            name: {k: v for k, v in field.items() if k != "required"} for name, field in capability["schema"].items()
        }
        assert listed == data
