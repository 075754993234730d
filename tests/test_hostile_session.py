"""Hostile input never kills a stream: bad text, prompts a generator cannot encode, floods (issue #19)."""

from __future__ import annotations

import asyncio
import json

import pytest

from longlive_rtc.engine import BlockDone, Engine, EngineEvent, PromptApplied, PromptFailed
from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.generators.synthetic import SyntheticPrompt
from longlive_rtc.protocol import Event
from longlive_rtc.schedule import PromptSchedule
from longlive_rtc.session import Role, Session, Status

from .support import SMALL, EventLog
from .test_session import cmd, drain, settle

SURROGATE_PROMPT = '{"type":"schedule_prompt","data":{"new_prompt":"\\ud800","timestamp":0}}'


class Wire(EventLog):
    """A member that encodes every event as the data channel does before recording it."""

    def __call__(self, event: Event) -> None:
        event.to_json().encode("utf-8")
        super().__call__(event)


class Picky(SyntheticGenerator):
    """The synthetic generator whose encoder fails on some prompts (its ``check_prompt`` lets them pass),
    and whose ``check_prompt`` refuses others."""

    def __init__(self, fails: set[str], refuses: frozenset[str] = frozenset(), fail_after: int = 0) -> None:
        super().__init__(SMALL)
        self.fails, self.refuses, self.fail_after = fails, refuses, fail_after
        self.encoded: list[str] = []

    def check_prompt(self, prompt: str) -> None:
        super().check_prompt(prompt)
        if prompt in self.refuses:
            raise ValueError("this prompt is refused")

    def encode_prompt(self, prompt: str) -> SyntheticPrompt:
        self.encoded.append(prompt)
        if prompt in self.fails and self.encoded.count(prompt) > self.fail_after:
            raise RuntimeError("the text encoder ran out of memory (simulated)")
        return super().encode_prompt(prompt)


def answers(session: Session, raw: str | bytes, role: Role = Role.CONTROLLER) -> list[Event]:
    replies: list[Event] = []
    session.handle(raw, role, replies.append)
    for reply in replies:
        reply.to_json().encode("utf-8")
    return replies


def prompts(session: Session) -> list[tuple[int, str]]:
    return [(e.timestamp, e.prompt) for e in session.schedule.snapshot()]


@pytest.fixture
async def session(small_generator: SyntheticGenerator):
    s = Session("h", small_generator)
    yield s
    s.close()


async def test_a_lone_surrogate_prompt_is_refused_and_the_session_goes_on(session: Session) -> None:
    wire = Wire()
    session.join(Role.VIEWER, wire)
    assert answers(session, cmd("schedule_prompt", new_prompt="a red fox", timestamp=0))[0].type == "ack"
    await settle()
    before = prompts(session)
    replies = answers(session, SURROGATE_PROMPT)
    assert len(replies) == 1 and replies[0].data["code"] == "invalid_field"
    assert prompts(session) == before == [(0, "a red fox")]
    mark = wire.mark()
    assert answers(session, cmd("schedule_prompt", new_prompt="a blue sea", timestamp=6))[0].type == "ack"
    changed = await wire.wait_for(lambda e: e.type == "schedule_changed", since=mark)
    assert wire.events[mark:] == [changed]  # the change still goes out, encoded
    assert [c["prompt"] for c in changed.data["changes"]] == ["a blue sea"]
    state = answers(session, cmd("get_state"))[-1]
    assert [p["prompt"] for p in state.data["scheduled"]] == ["a red fox", "a blue sea"]


async def test_invalid_utf8_gets_exactly_one_error(session: Session) -> None:
    replies = answers(session, b"\xff\xfe{")
    assert [r.type for r in replies] == ["error"] and replies[0].data["code"] == "bad_json"


async def test_a_lone_surrogate_id_gets_one_error_without_the_id(session: Session) -> None:
    replies = answers(session, '{"type":"get_state","id":"\\ud800"}')
    assert len(replies) == 1 and replies[0].data["code"] == "bad_message" and replies[0].id is None
    assert "id" not in json.loads(replies[0].to_json())


async def test_every_hostile_message_gets_exactly_one_answer(session: Session) -> None:
    wire = Wire()
    session.join(Role.CONTROLLER, wire)
    hostile: list[str | bytes] = [
        b"\xff\xfe{", b"\xc3\x28", b"\xed\xa0\x80", "\ud800", '"\\ud800"', SURROGATE_PROMPT,
        '{"type":"\\udfff"}', '{"type":"start","id":"\\ud800"}', '{"\\ud800":1}',
        '{"type":"schedule_prompt","data":{"new_prompt":"a\\u0000b","timestamp":0}}',
        '{"type":"schedule_prompt","data":{"new_prompt":"   ","timestamp":0}}',
        '{"type":"schedule_prompt","data":{"new_prompt":"\\u001b[31m red","timestamp":0}}',
        '{"type":"schedule_prompt","data":{"\\ud800":"x","new_prompt":"x","timestamp":0}}',
        "[" * 15_000, "[" * 100_000, "{" * 10, "\x00", "",
    ]  # fmt: skip
    for raw in hostile:
        replies = answers(session, raw)
        assert len(replies) == 1 and replies[0].type == "error", (raw, replies)
    assert prompts(session) == []
    assert [r.type for r in answers(session, cmd("schedule_prompt", new_prompt="ok", timestamp=0))] == ["ack"]
    assert [r.type for r in answers(session, cmd("start"))] == ["ack"]
    await drain(session, 9)
    await settle()
    assert wire.events[-1].type in {"state", "progress", "prompt_applied"}


async def test_a_prompt_the_generator_refuses_is_never_stored() -> None:
    generator = Picky(fails=set(), refuses=frozenset({"forbidden"}))
    session = Session("refuse", generator)
    try:
        replies = answers(session, cmd("schedule_prompt", new_prompt="forbidden", timestamp=0))
        assert replies[0].data["code"] == "invalid_field" and "refused" in replies[0].data["message"]
        assert "synthetic generator" in replies[0].data["message"]
        assert prompts(session) == []
        await asyncio.sleep(0.05)
        assert "forbidden" not in generator.encoded  # nor sent to the encoder
    finally:
        session.close()


async def test_a_prompt_that_fails_to_encode_is_removed_and_named() -> None:
    bad = "a prompt that the encoder chokes on, " * 5
    session = Session("fail", Picky(fails={bad.strip()}))
    try:
        log = Wire()
        session.join(Role.CONTROLLER, log)
        assert answers(session, cmd("schedule_prompt", new_prompt="fine", timestamp=0))[0].type == "ack"
        assert answers(session, cmd("schedule_prompt", new_prompt=bad, timestamp=12))[0].type == "ack"
        failure = await log.wait_for(lambda e: e.type == "error")
        message = failure.data["message"]
        assert failure.data["code"] == "generator_failed" and "frame 12" in message and "out of memory" in message
        assert "'a prompt that the encoder chokes on" in message and bad.strip() not in message  # cut to ~80
        await log.wait_for(lambda e: e.type == "schedule_changed" and e.data["changes"][-1]["op"] == "remove")
        assert prompts(session) == [(0, "fine")] and session.status is Status.IDLE
        assert answers(session, cmd("start"))[0].type == "ack"
        assert len(await drain(session, 21)) == 21
    finally:
        session.close()


async def test_a_running_stream_survives_a_prompt_that_fails_to_encode() -> None:
    session = Session("run", Picky(fails={"bad"}))
    try:
        log = Wire()
        session.join(Role.CONTROLLER, log)
        answers(session, cmd("schedule_prompt", new_prompt="good", timestamp=0))
        answers(session, cmd("start"))
        await drain(session, 9)
        answers(session, cmd("schedule_prompt", new_prompt="bad", timestamp=30))
        answers(session, cmd("schedule_prompt", new_prompt="later", timestamp=36))
        await log.wait_for(lambda e: e.type == "error" and "'bad'" in e.data["message"])
        await drain(session, 12 * 14)
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 42)
        assert session.status is Status.RUNNING
        applied = [e.data["prompt"] for e in log.of("prompt_applied")]
        assert applied == ["good", "later"]
        assert prompts(session) == [(0, "good"), (36, "later")]
    finally:
        session.close()


async def test_a_failing_first_prompt_leaves_the_session_idle_and_controllable() -> None:
    session = Session("first", Picky(fails={"bad"}))
    try:
        log = Wire()
        session.join(Role.CONTROLLER, log)
        answers(session, cmd("schedule_prompt", new_prompt="bad", timestamp=0))
        assert answers(session, cmd("start"))[0].type == "ack"  # in the same turn: not encoded yet
        await log.wait_for(lambda e: e.type == "error" and "'bad'" in e.data["message"])
        await log.wait_for(lambda e: e.type == "state" and e.data["status"] == "idle")
        removed = {"op": "remove", "timestamp": 0}
        await log.wait_for(lambda e: e.type == "schedule_changed" and removed in e.data["changes"])
        assert session.status is Status.IDLE and prompts(session) == []
        mark = log.mark()
        answers(session, cmd("schedule_prompt", new_prompt="good", timestamp=0))
        assert answers(session, cmd("start"))[0].type == "ack"
        assert len(await drain(session, 21)) == 21
        await log.wait_for(lambda e: e.type == "prompt_applied" and e.data["prompt"] == "good", since=mark)
    finally:
        session.close()


# --- the engine, when encoding fails at the block itself (the prompt left the cache) -----------------------


class EngineRun:
    def __init__(self, generator: Picky, schedule: PromptSchedule) -> None:
        self.events: list[EngineEvent] = []
        self.engine = Engine(generator, schedule, self.events.append, prompt_cache_size=1)

    async def wait(self, kind: type, predicate=lambda e: True, timeout: float = 10.0) -> EngineEvent:
        for _ in range(int(timeout / 0.005)):
            found = [e for e in self.events if isinstance(e, kind) and predicate(e)]
            if found:
                return found[0]
            self.engine.next_frame()  # play, so the generator is never held back by a full buffer
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no {kind.__name__}; got {self.events[-5:]}")


async def test_a_switch_that_fails_at_its_block_is_skipped() -> None:
    generator = Picky(fails={"bad"}, fail_after=1)  # encodes once (when prepared), then fails
    schedule = PromptSchedule(SMALL.frames_per_block)
    run = EngineRun(generator, schedule)
    try:
        for t, prompt in [(0, "good"), (6, "bad"), (12, "after")]:
            run.engine.prepare(schedule.put(t, prompt))  # a cache of one: "bad" is evicted before block 6
        run.engine.start(0)
        failed = await run.wait(PromptFailed)
        assert failed.entry.prompt == "bad" and not failed.ended_run
        await run.wait(BlockDone, lambda e: e.current_start_frame >= 15)
        applied = [(e.frame, e.entry.prompt) for e in run.events if isinstance(e, PromptApplied)]
        assert applied == [(0, "good"), (12, "after")]  # block 6 ran on "good"
        assert [e.prompt for e in schedule.snapshot()] == ["good", "after"]
    finally:
        run.engine.close()


async def test_a_first_prompt_that_fails_at_block_zero_ends_the_run() -> None:
    generator = Picky(fails={"bad"}, fail_after=1)
    schedule = PromptSchedule(SMALL.frames_per_block)
    run = EngineRun(generator, schedule)
    try:
        run.engine.prepare(schedule.put(0, "bad"))
        run.engine.prepare(schedule.put(3, "other"))  # evicts "bad"
        run.engine.start(0)
        failed = await run.wait(PromptFailed)
        assert failed.entry.prompt == "bad" and failed.ended_run
        assert generator._look is None  # begin() was never called
        await asyncio.sleep(0.05)
        assert not any(isinstance(e, BlockDone) for e in run.events)
        assert [e.prompt for e in schedule.snapshot()] == ["other"]
    finally:
        run.engine.close()
