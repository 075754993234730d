"""Schedule deltas (issue #19): a change broadcasts a small ``schedule_changed``, never the whole schedule;
the full ``state`` greets a member and answers ``get_state``; deltas applied to the join state give the
schedule ``get_state`` lists. Sessions on the synthetic generator, members recording what they receive."""

from __future__ import annotations

import asyncio

import pytest

from longlive_rtc import protocol
from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.generators.synthetic import SyntheticPrompt
from longlive_rtc.protocol import Event
from longlive_rtc.session import MAX_DELTA_CHARS, Role, Session

from .schedule_mirror import ScheduleMirror
from .support import SMALL, EventLog
from .test_session import Client, cmd, drain, settle


class Failing(SyntheticGenerator):
    """The synthetic generator whose encoder fails on the prompt ``bad`` (the engine drops it)."""

    def __init__(self) -> None:
        super().__init__(SMALL)

    def encode_prompt(self, prompt: str) -> SyntheticPrompt:
        if prompt == "bad":
            raise RuntimeError("cannot encode (simulated)")
        return super().encode_prompt(prompt)


class Mirrored(EventLog):
    """A member that keeps the schedule from what it receives, as a page does."""

    def __init__(self) -> None:
        super().__init__()
        self.mirror = ScheduleMirror(SMALL.frames_per_block)

    def __call__(self, event: Event) -> None:
        super().__call__(event)
        self.mirror.feed(event.type, event.data)


def get_state(session: Session) -> dict:
    replies: list[Event] = []
    session.handle(cmd("get_state"), Role.VIEWER, replies.append)
    assert replies[-1].type == "state"
    return replies[-1].data


async def in_step(session: Session, member: Mirrored) -> None:
    """The member's schedule equals get_state's, at get_state's version, with no gap seen."""
    await settle()
    state = get_state(session)
    assert member.mirror.scheduled == state["scheduled"]
    assert member.mirror.version == state["schedule_version"] and member.mirror.asked == 0


async def test_deltas_applied_to_the_join_state_give_get_state() -> None:
    session = Session("d", Failing())
    try:
        client, watcher = Client(session), Mirrored()
        session.join(Role.VIEWER, watcher)
        for t, text in [(0, "a fox"), (7, "a hen"), (13, "a cow"), (7, "a duck")]:
            client.ok("schedule_prompt", new_prompt=text, timestamp=t)
        client.ok("remove_prompt", timestamp=13)
        await in_step(session, watcher)
        assert [(e["timestamp"], e["prompt"]) for e in watcher.mirror.scheduled] == [(0, "a fox"), (7, "a duck")]

        client.ok("start")  # the run's rewind comes from the engine's thread
        await drain(session, 9 + 12 * 4)
        client.ok("schedule_prompt", new_prompt="now", timestamp=1)  # in the past: applies at the next block
        client.ok("schedule_prompt", new_prompt="bad", timestamp=90)  # the engine drops it
        await watcher.wait_for(lambda e: e.type == "error" and "'bad'" in e.data["message"])
        await in_step(session, watcher)
        late = [e for e in watcher.mirror.scheduled if e["timestamp"] == 1]
        assert late and late[0]["frame"] > 3 and all(e["prompt"] != "bad" for e in watcher.mirror.scheduled)

        client.ok("stop")  # rewind: every entry at its own block start again
        await in_step(session, watcher)
        assert [e["frame"] for e in watcher.mirror.scheduled] == [0, 3, 9]
        client.ok("reset")
        client.ok("schedule_prompt", new_prompt="again", timestamp=0)
        await in_step(session, watcher)
        assert [e["prompt"] for e in watcher.mirror.scheduled] == ["again"]
        versions = [e.data["version"] for e in watcher.of("schedule_changed")]
        assert versions == list(range(1, len(versions) + 1))  # one more each time
    finally:
        session.close()


async def test_a_late_joiner_gets_the_whole_schedule_and_follows_it(session: Session) -> None:
    client = Client(session)
    for t in range(0, 30, 3):
        client.ok("schedule_prompt", new_prompt=f"p{t}", timestamp=t)
    late = Mirrored()
    session.join(Role.VIEWER, late)  # in the same turn: the changes still pending go out before its state
    greeting = late.events[0]
    assert greeting.type == "state" and len(greeting.data["scheduled"]) == 10
    assert greeting.data["schedule_version"] == session.schedule_version == 1
    assert [e.type for e in client.log.events[-1:]] == ["schedule_changed"]  # the others got them first
    client.ok("remove_prompt", timestamp=0)
    await in_step(session, late)
    assert len(late.mirror.scheduled) == 9 and [e.type for e in late.events] == ["state", "schedule_changed"]


async def test_a_change_costs_the_same_with_a_full_schedule(session: Session, monkeypatch) -> None:
    client = Client(session)
    for t in range(1000):
        client.ok("schedule_prompt", new_prompt=f"prompt number {t} " * 10, timestamp=t)
    members = [Mirrored() for _ in range(15)]
    for member in members:
        session.join(Role.CONTROLLER, member)
    await settle()
    encoded: list[str] = []
    real = protocol.encode_json
    monkeypatch.setattr(protocol, "encode_json", lambda message, what="message": encoded.append(what) or
                        real(message, what))  # fmt: skip
    client.ok("schedule_prompt", new_prompt="one more change", timestamp=500)
    client.ok("set_seed", seed=3)
    await settle()
    broadcasts = [m.events[-2:] for m in members]
    assert all([e.type for e in b] == ["schedule_changed", "state"] for b in broadcasts)
    assert all(len(e.to_json()) < 1000 for e in broadcasts[0])  # small, whatever the schedule holds
    assert "scheduled" not in broadcasts[0][1].data
    assert sorted(encoded) == ["schedule_changed", "state"]  # each broadcast encoded once, for all 16
    assert members[0].mirror.scheduled == get_state(session)["scheduled"]


async def test_a_burst_of_long_prompts_is_split_under_the_message_limit(session: Session) -> None:
    client, watcher = Client(session), Mirrored()
    session.join(Role.VIEWER, watcher)
    for t in range(40):
        client.ok("schedule_prompt", new_prompt=chr(0x4E00 + t) * 2000, timestamp=t)  # 3 bytes a character
    await settle()
    deltas = watcher.of("schedule_changed")
    assert len(deltas) >= 40 * 2000 // MAX_DELTA_CHARS
    assert all(len(d.to_json().encode("utf-8")) < 150_000 for d in deltas)
    await in_step(session, watcher)


async def test_a_gap_asks_for_the_state_and_heals_with_the_deltas_kept() -> None:
    mirror = ScheduleMirror()
    mirror.feed("state", {"scheduled": [{"timestamp": 0, "prompt": "a", "frame": 0}], "schedule_version": 4})
    mirror.feed("schedule_changed", {"version": 4, "changes": [{"op": "clear"}]})  # old: skipped
    mirror.feed("schedule_changed", {"version": 6, "changes": [{"op": "remove", "timestamp": 0}]})
    assert mirror.asked == 1 and mirror.version == 4  # version 5 was missed
    mirror.feed("schedule_changed", {"version": 7, "changes": [{"op": "put", "timestamp": 3, "prompt": "c",
                                                                "frame": 6}]})  # fmt: skip
    answer = [{"timestamp": 0, "prompt": "a", "frame": 0}, {"timestamp": 1, "prompt": "b", "frame": 3}]
    mirror.feed("state", {"scheduled": answer, "schedule_version": 5})
    assert mirror.version == 7 and [e["prompt"] for e in mirror.scheduled] == ["b", "c"]
    mirror.feed("state", {"scheduled": answer, "schedule_version": 6})  # a snapshot sent late: kept ours
    assert mirror.version == 7 and len(mirror.scheduled) == 2


@pytest.fixture
async def session(small_generator: SyntheticGenerator):
    s = Session("s", small_generator)
    yield s
    s.close()


async def test_changes_from_the_engine_thread_go_out_in_order(session: Session) -> None:
    client, watcher = Client(session), Mirrored()
    session.join(Role.VIEWER, watcher)
    client.ok("schedule_prompt", new_prompt="first", timestamp=0)
    for _ in range(3):  # each start's rewind happens on the engine's thread, each stop's on the loop
        client.ok("start")
        await drain(session, 9)
        client.ok("schedule_prompt", new_prompt="live", timestamp=0)
        client.ok("stop")
    await asyncio.sleep(0.05)
    await in_step(session, watcher)
    assert [e["prompt"] for e in watcher.mirror.scheduled] == ["live"]
