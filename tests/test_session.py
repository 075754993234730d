"""The session state machine and the engine behind it, on the synthetic generator."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest

from longlive_rtc.engine import Playout
from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.generators.stamp import read_stamp
from longlive_rtc.protocol import Event
from longlive_rtc.schedule import MAX_SCHEDULED_PROMPTS
from longlive_rtc.session import Role, Session, Status

from .support import SMALL, EventLog


def cmd(kind: str, message_id: int | str | None = None, **data) -> str:
    message = {"type": kind, "data": data}
    if message_id is not None:
        message["id"] = message_id
    return json.dumps(message)


class Client:
    """A member of a session that sends commands and records replies and broadcasts."""

    def __init__(self, session: Session, role: Role = Role.CONTROLLER) -> None:
        self.session = session
        self.role = role
        self.log = EventLog()
        self.member = session.join(role, self.log)

    def send(self, kind: str, message_id: int | str | None = None, **data) -> Event:
        replies: list[Event] = []
        self.session.handle(cmd(kind, message_id, **data), self.role, replies.append)
        assert replies and replies[0].type in {"ack", "error"}
        return replies[0]

    def ok(self, kind: str, **data) -> None:
        reply = self.send(kind, **data)
        assert reply.type == "ack", reply

    def refused(self, kind: str, **data) -> str:
        reply = self.send(kind, **data)
        assert reply.type == "error", reply
        assert reply.data["command"] == kind
        return reply.data["code"]


class SlowSynthetic(SyntheticGenerator):
    """The synthetic generator taking a fixed time per block (a stand-in for a slower GPU)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(SMALL)
        self.seconds = seconds
        self.blocks = 0

    def next_block(self) -> np.ndarray:
        time.sleep(self.seconds)
        self.blocks += 1
        return super().next_block()


class FailingSynthetic(SyntheticGenerator):
    def __init__(self, fail_at_block: int) -> None:
        super().__init__(SMALL)
        self.fail_at_block = fail_at_block
        self.blocks = 0

    def next_block(self) -> np.ndarray:
        self.blocks += 1
        if self.blocks == self.fail_at_block:
            raise RuntimeError("CUDA error: out of memory (simulated)")
        return super().next_block()


async def settle() -> None:
    """Let the loop run the coalesced ``state`` broadcast that commands scheduled."""
    await asyncio.sleep(0)


async def drain(session: Session, frames: int, timeout: float = 10.0) -> list:
    """Play frames out of the engine as fast as they come."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < frames:
        item = session.engine.next_frame()
        if item.kind is Playout.FRAME:
            out.append(item)
        elif time.monotonic() > deadline:
            raise TimeoutError(f"only {len(out)} frames")
        else:
            await asyncio.sleep(0.002)
    return out


@pytest.fixture
async def session(small_generator: SyntheticGenerator):
    s = Session("s1", small_generator, buffer_blocks=1)
    yield s
    s.close()


async def test_join_sends_state_and_commands_ack_with_id(session: Session) -> None:
    client = Client(session)
    assert client.log.events[0].type == "state"
    assert client.log.events[0].data["status"] == "idle"
    reply = client.send("set_seed", message_id="m-1", seed=7)
    assert reply.to_dict() == {"type": "ack", "data": {"command": "set_seed"}, "id": "m-1"}
    await settle()
    assert client.log.events[-1].type == "state" and client.log.events[-1].data["seed"] == 7
    replies: list[Event] = []
    session.handle(cmd("get_state", 5), Role.CONTROLLER, replies.append)
    assert [r.type for r in replies] == ["ack", "state"] and replies[0].id == 5


async def test_error_codes_of_the_state_machine(session: Session) -> None:
    client = Client(session)
    assert client.refused("start") == "no_initial_prompt"
    client.ok("schedule_prompt", new_prompt="not at zero", timestamp=1)
    assert client.refused("start") == "no_initial_prompt"
    assert client.refused("pause") == "not_running"
    assert client.refused("resume") == "not_running"
    assert client.refused("remove_prompt", timestamp=99) == "not_found"
    client.ok("schedule_prompt", new_prompt="a red fox", timestamp=0)
    client.ok("start")
    assert session.status is Status.RUNNING
    assert client.refused("start") == "already_running"
    assert client.refused("resume") == "already_running"
    client.ok("pause")
    assert client.refused("pause") == "not_running"
    assert client.refused("start") == "already_running"
    client.ok("resume")
    client.ok("reset")
    assert session.status is Status.IDLE and session.schedule.snapshot() == []
    bad: list[Event] = []
    session.handle("{oops", Role.CONTROLLER, bad.append)
    assert bad[0].data["code"] == "bad_json"


async def test_viewer_commands_are_forbidden(session: Session) -> None:
    controller, viewer = Client(session), Client(session, Role.VIEWER)
    assert viewer.refused("schedule_prompt", new_prompt="x", timestamp=0) == "forbidden"
    assert viewer.refused("start") == "forbidden"
    assert viewer.refused("reset") == "forbidden"
    assert viewer.send("get_state").type == "ack"
    controller.ok("schedule_prompt", new_prompt="x", timestamp=0)
    await settle()
    change = viewer.log.events[-1]  # viewers still receive every change
    assert change.type == "schedule_changed" and change.data["changes"][0]["prompt"] == "x"


async def test_schedule_limit_is_limit_exceeded(small_generator: SyntheticGenerator) -> None:
    session = Session("lim", small_generator, max_prompts=5)
    try:
        client = Client(session)
        for t in range(5):
            client.ok("schedule_prompt", new_prompt=f"p{t}", timestamp=t)
        assert client.refused("schedule_prompt", new_prompt="too many", timestamp=50) == "limit_exceeded"
        client.ok("schedule_prompt", new_prompt="overwriting is fine", timestamp=4)
        assert len(session.schedule) == 5
    finally:
        session.close()


def test_the_default_prompt_limit_is_a_thousand() -> None:
    assert MAX_SCHEDULED_PROMPTS == 1000


async def test_progress_sequence_and_prompt_applied(session: Session) -> None:
    client = Client(session)
    client.ok("schedule_prompt", new_prompt="first", timestamp=0)
    client.ok("schedule_prompt", new_prompt="second", timestamp=4)
    client.ok("schedule_prompt", new_prompt="third", timestamp=9)
    client.ok("start")
    frames = await drain(session, 9 + 12 * 5)
    await client.log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 18)
    progress = [e.data for e in client.log.of("progress")]
    assert [p["current_start_frame"] for p in progress[:6]] == [3, 6, 9, 12, 15, 18]
    assert [p["video_frame"] for p in progress[:6]] == [9, 21, 33, 45, 57, 69]
    assert progress[1]["seconds"] == pytest.approx(21 / 16)
    applied = [(e.data["timestamp"], e.data["frame"], e.data["prompt"]) for e in client.log.of("prompt_applied")]
    assert applied == [(0, 0, "first"), (4, 6, "second"), (9, 9, "third")]
    kinds = [e.type for e in client.log.events if e.type in {"progress", "prompt_applied"}]
    assert kinds[:6] == ["prompt_applied", "progress", "progress", "prompt_applied", "progress", "prompt_applied"]
    stamps = [read_stamp(f.image) for f in frames]
    assert [s.frame for s in stamps] == [f.index for f in frames] == list(range(len(frames)))
    # block 0-1 (video 0..20) prompt 0, block 2 (video 21..32) prompt 1, block 3 on prompt 2
    assert {s.prompt for s in stamps[:21]} == {0} and {s.prompt for s in stamps[21:33]} == {1}
    assert {s.prompt for s in stamps[33:]} == {2}
    assert session.active_prompt == "third"


async def test_backpressure_bounds_the_buffer_when_playback_is_slow() -> None:
    generator = SyntheticGenerator(SMALL)
    session = Session("bp", generator, buffer_blocks=1)
    try:
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="x", timestamp=0)
        client.ok("start")
        await asyncio.sleep(0.5)  # nobody plays: the generator must stop after filling the buffer
        generated = session.engine.blocks_generated
        assert generated <= 2, generated  # one block in the buffer, at most one waiting for room
        assert len(session.engine.buffer) <= session.engine.buffer.capacity == 12
        for _ in range(40):  # a slow consumer: one frame every 5 ms
            session.engine.next_frame()
            await asyncio.sleep(0.005)
        assert session.engine.buffer.high_water <= 12
        assert session.engine.blocks_generated <= generated + 5
    finally:
        session.close()


async def test_pause_stops_generation_within_one_block() -> None:
    generator = SlowSynthetic(seconds=0.1)
    session = Session("p", generator, buffer_blocks=10)
    try:
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="x", timestamp=0)
        client.ok("start")
        await client.log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] == 6)
        client.ok("pause")
        paused_at = generator.blocks
        assert session.engine.next_frame().kind is Playout.PAUSED
        await asyncio.sleep(0.5)  # five block-times
        assert generator.blocks <= paused_at + 1
        frame_before = session.current_start_frame
        client.ok("resume")
        await client.log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= frame_before + 6)
        assert generator.blocks > paused_at + 1
    finally:
        session.close()


async def test_reset_is_prompt_and_drops_generator_state() -> None:
    generator = SlowSynthetic(seconds=0.2)
    session = Session("r", generator)
    try:
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="x", timestamp=0)
        client.ok("start")
        await client.log.wait_for(lambda e: e.type == "progress")
        began = time.monotonic()
        client.ok("reset")
        assert session.status is Status.IDLE and session.current_start_frame == 0
        assert session.engine.next_frame().kind is Playout.IDLE
        blocks = generator.blocks
        await asyncio.sleep(0.5)
        assert generator.blocks <= blocks + 1  # at most the block in flight finishes
        assert generator._look is None  # reset() reached the generator
        assert time.monotonic() - began < 1.0
        progress_after = [e for e in client.log.of("progress")][-1]
        late = [e for e in client.log.events if e.type == "progress" and e is not progress_after]
        assert all(e.data["current_start_frame"] <= progress_after.data["current_start_frame"] for e in late)
        # a fresh start begins at frame 0 with the new schedule
        mark = client.log.mark()
        client.ok("schedule_prompt", new_prompt="y", timestamp=0)
        client.ok("start")
        first = await client.log.wait_for(lambda e: e.type == "progress", since=mark)
        assert first.data["current_start_frame"] == 3
    finally:
        session.close()


async def test_seed_applies_at_next_start(session: Session) -> None:
    client = Client(session)
    client.ok("schedule_prompt", new_prompt="same prompt", timestamp=0)
    client.ok("start")
    a = (await drain(session, 9))[-1].image.copy()
    client.ok("reset")
    client.ok("schedule_prompt", new_prompt="same prompt", timestamp=0)
    client.ok("set_seed", seed=12345)
    client.ok("start")
    b = (await drain(session, 9))[-1].image
    assert not np.array_equal(a, b)
    client.ok("reset")
    client.ok("schedule_prompt", new_prompt="same prompt", timestamp=0)
    client.ok("set_seed", seed=0)
    client.ok("start")
    c = (await drain(session, 9))[-1].image
    assert np.array_equal(a, c)


async def test_generator_failure_is_reported_and_the_session_survives() -> None:
    session = Session("f", FailingSynthetic(fail_at_block=2))
    try:
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="x", timestamp=0)
        client.ok("start")
        failure = await client.log.wait_for(lambda e: e.type == "error")
        assert failure.data["code"] == "generator_failed" and "out of memory" in failure.data["message"]
        assert session.status is Status.IDLE
        await client.log.wait_for(lambda e: e.type == "state" and e.data["status"] == "idle")
        client.ok("start")  # the same session can run again
        frames = await drain(session, 21)
        assert [f.index for f in frames] == list(range(21))
    finally:
        session.close()


async def test_idle_card_and_stalls(small_generator: SyntheticGenerator) -> None:
    session = Session("i", SlowSynthetic(seconds=0.15))
    try:
        item = session.engine.next_frame()
        assert item.kind is Playout.IDLE and item.image.shape == (SMALL.height, SMALL.width, 3)
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="x", timestamp=0)
        client.ok("start")
        assert session.engine.next_frame().kind is Playout.STALL
        assert session.engine.stalls == 0  # waiting for the first frame is not a stall
        await drain(session, 9)
        while session.engine.next_frame().kind is Playout.FRAME:
            pass
        assert session.engine.stalls == 1  # a generator slower than playback underruns
    finally:
        session.close()


async def test_prompts_are_encoded_when_scheduled() -> None:
    class Counting(SyntheticGenerator):
        encoded: list[str] = []

        def encode_prompt(self, prompt: str):
            self.encoded.append(prompt)
            return super().encode_prompt(prompt)

    generator = Counting(SMALL)
    session = Session("e", generator)
    try:
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="ahead of time", timestamp=300)
        for _ in range(100):
            if generator.encoded:
                break
            await asyncio.sleep(0.01)
        assert generator.encoded == ["ahead of time"]
    finally:
        session.close()


# --- stop ----------------------------------------------------------------------------------------------


async def test_stop_keeps_the_schedule_and_seed_and_rewinds(session: Session) -> None:
    client = Client(session)
    assert client.refused("stop") == "not_running"
    client.ok("schedule_prompt", new_prompt="first", timestamp=0)
    client.ok("schedule_prompt", new_prompt="second", timestamp=4)
    client.ok("set_seed", seed=99)
    client.ok("start")
    await drain(session, 9 + 12 * 3)
    await client.log.wait_for(lambda e: e.type == "prompt_applied" and e.data["prompt"] == "second")
    client.ok("stop")
    assert session.status is Status.IDLE and session.current_start_frame == session.video_frame == 0
    assert session.active_prompt is None and session.seed == 99
    kept = [(e.timestamp, e.prompt, e.frame) for e in session.schedule.snapshot()]
    assert kept == [(0, "first", 0), (4, "second", 6)]
    assert session.engine.next_frame().kind is Playout.IDLE
    await settle()
    state, changed = client.log.of("state")[-1], client.log.of("schedule_changed")[-1]
    assert state.data["status"] == "idle" and "scheduled" not in state.data  # the schedule is not resent
    assert changed.data["changes"][-1] == {"op": "rewind"} and state.data["schedule_version"] == changed.data["version"]
    assert client.refused("stop") == "not_running"


async def test_stop_then_start_replays_the_same_stream(session: Session) -> None:
    client = Client(session)
    client.ok("schedule_prompt", new_prompt="a red fox", timestamp=0)
    client.ok("schedule_prompt", new_prompt="a blue sea", timestamp=4)
    client.ok("schedule_prompt", new_prompt="a green forest", timestamp=9)

    async def one_run() -> tuple[list, list[np.ndarray]]:
        mark = client.log.mark()
        client.ok("start")
        frames = await drain(session, 9 + 12 * 4)
        await client.log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 15, since=mark)
        applied = [
            (e.data["timestamp"], e.data["frame"], e.data["prompt"])
            for e in client.log.events[mark:]
            if e.type == "prompt_applied"
        ]
        return applied, [f.image.copy() for f in frames]

    applied, frames = await one_run()
    client.ok("stop")
    again, frames_again = await one_run()
    assert applied == again == [(0, 0, "a red fox"), (4, 6, "a blue sea"), (9, 9, "a green forest")]
    assert len(frames) == len(frames_again)
    assert all(np.array_equal(a, b) for a, b in zip(frames, frames_again, strict=True))


async def test_stop_while_paused(session: Session) -> None:
    client = Client(session)
    client.ok("schedule_prompt", new_prompt="x", timestamp=0)
    client.ok("start")
    client.ok("pause")
    client.ok("stop")
    assert session.status is Status.IDLE and len(session.schedule) == 1
    assert client.refused("resume") == "not_running"
    client.ok("start")
    assert session.status is Status.RUNNING


# --- bounded costs -------------------------------------------------------------------------------------


class Counting:
    """A member's send that encodes every event, as a data channel does, and counts them."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        event.to_json().encode("utf-8")
        self.events.append(event)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


async def test_a_burst_of_commands_costs_one_small_broadcast(session: Session) -> None:
    members = [Counting() for _ in range(3)]
    for send in members:
        session.join(Role.VIEWER, send)
    controller = Client(session)
    joined = controller.log.mark()
    replies: list[Event] = []
    for t in range(40):
        session.handle(cmd("schedule_prompt", t, new_prompt=f"p{t}", timestamp=t), Role.CONTROLLER, replies.append)
    assert [r.type for r in replies] == ["ack"] * 40 and [r.id for r in replies] == list(range(40))  # at once
    assert all(len(m.events) == 1 for m in members)  # the join's state only
    await settle()
    assert all([e.type for e in m.events] == ["state", "schedule_changed"] for m in members)  # no state resent
    changed = controller.log.events[joined:]
    assert len(changed) == 1 and [c["timestamp"] for c in changed[0].data["changes"]] == list(range(40))
    assert len({id(m.events[-1]) for m in members}) == 1  # one event (one serialisation) for everyone
    answers: list[Event] = []
    session.handle(cmd("get_state", "q"), Role.VIEWER, answers.append)
    assert [a.type for a in answers] == ["ack", "state"]  # get_state is answered directly
    assert len(answers[1].data["scheduled"]) == 40
    await settle()
    assert all(len(m.events) == 2 for m in members)  # and broadcasts nothing


async def test_a_broadcast_serialises_each_event_once(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from longlive_rtc import protocol

    encoded: list[str] = []
    real = protocol.encode_json

    def counting(message: dict, what: str = "message") -> str:
        encoded.append(what)
        return real(message, what)

    monkeypatch.setattr(protocol, "encode_json", counting)
    for _ in range(10):
        session.join(Role.VIEWER, Counting())
    client = Client(session)
    encoded.clear()
    client.ok("set_seed", seed=3)
    await settle()
    assert encoded == ["state"]  # ten members encode the broadcast: one serialisation


async def test_the_state_after_a_burst_is_the_latest(session: Session) -> None:
    client = Client(session)
    for seed in range(5):
        client.ok("set_seed", seed=seed)
    await settle()
    assert [e.data["seed"] for e in client.log.of("state")] == [0, 4]


async def test_each_member_has_a_command_budget(small_generator: SyntheticGenerator) -> None:
    now = [0.0]
    session = Session("rl", small_generator, command_burst=5, command_rate=2.0, clock=lambda: now[0])
    try:
        alice, bob = Client(session), Client(session, Role.VIEWER)

        def send(client: Client, raw: str) -> list[Event]:
            replies: list[Event] = []
            session.handle(raw, client.role, replies.append, member=client.member)
            assert len(replies) in (1, 2) and replies[0].type in {"ack", "error"}
            return replies

        for i in range(5):
            assert send(alice, cmd("set_seed", i, seed=i))[0].type == "ack"
        limited = send(alice, cmd("set_seed", "over", seed=9))
        assert limited[0].data["code"] == "limit_exceeded" and limited[0].id == "over"
        assert limited[0].data["command"] == "set_seed" and session.seed == 4
        assert limited[0].data["retry_after"] == pytest.approx(0.5)
        assert send(alice, cmd("get_state"))[0].data["code"] == "limit_exceeded"  # get_state counts
        assert send(alice, "{bad json")[0].data["code"] == "limit_exceeded"  # so does garbage
        assert send(bob, cmd("get_state"))[0].type == "ack"  # another member's budget is its own
        now[0] += 0.5  # one token back at 2 a second
        assert send(alice, cmd("set_seed", seed=7))[0].type == "ack"
        assert send(alice, cmd("set_seed", seed=8))[0].data["code"] == "limit_exceeded"
        now[0] += 100.0  # refills up to the burst, not beyond
        assert [send(alice, cmd("get_state"))[0].type for _ in range(6)] == ["ack"] * 5 + ["error"]
        replies: list[Event] = []
        for _ in range(20):  # without a member (HTTP): not limited here
            session.handle(cmd("get_state"), Role.CONTROLLER, replies.append)
        assert [r.type for r in replies] == ["ack", "state"] * 20
    finally:
        session.close()


async def test_a_member_is_found_by_its_reply_function(small_generator: SyntheticGenerator) -> None:
    session = Session("rl2", small_generator, command_burst=3, command_rate=1.0, clock=lambda: 0.0)
    try:
        sent: list[Event] = []
        session.join(Role.CONTROLLER, sent.append)
        for _ in range(4):
            session.handle(cmd("get_state"), Role.CONTROLLER, sent.append)  # as a data-channel binding does
        answers = [e for e in sent if e.type in {"ack", "error"}]
        assert [a.type for a in answers] == ["ack"] * 3 + ["error"]
        assert answers[-1].data["code"] == "limit_exceeded"
    finally:
        session.close()


async def test_the_limit_can_be_lifted(small_generator: SyntheticGenerator) -> None:
    session = Session("nolimit", small_generator, command_rate=None)
    try:
        client = Client(session)
        for _ in range(200):
            replies: list[Event] = []
            session.handle(cmd("get_state"), Role.CONTROLLER, replies.append, member=client.member)
            assert replies[0].type == "ack"
    finally:
        session.close()


class SlowEncoding(SyntheticGenerator):
    """Prompt encodes that take a while (a text encoder on a busy device), counted."""

    def __init__(self, seconds: float) -> None:
        super().__init__(SMALL)
        self.seconds = seconds
        self.encoded: list[str] = []

    def encode_prompt(self, prompt: str):
        time.sleep(self.seconds)
        self.encoded.append(prompt)
        return super().encode_prompt(prompt)


async def test_a_reset_stops_encoding_the_prompts_it_removed() -> None:
    generator = SlowEncoding(0.02)
    session = Session("enc", generator, command_burst=500)
    try:
        client = Client(session)
        for i in range(200):  # 4 s of encodes queued
            client.ok("schedule_prompt", new_prompt=f"prompt {i}", timestamp=3 * i)
        client.ok("reset")
        await asyncio.sleep(0.5)
        settled = len(generator.encoded)
        await asyncio.sleep(0.3)
        assert len(generator.encoded) == settled < 100, "the removed prompts are not encoded"
        client.ok("schedule_prompt", new_prompt="after the reset", timestamp=0)
        client.ok("start")
        assert len(await drain(session, 9)) == 9
        assert generator.encoded[-1] == "after the reset"
    finally:
        session.close()


async def test_a_prompt_overwritten_or_removed_before_its_encode_is_never_encoded() -> None:
    """A controller rewriting one timestamp 20 times costs one encode, not 20 (the device is shared)."""
    generator = SlowEncoding(0.2)
    session = Session("over", generator, command_burst=500)
    try:
        client = Client(session)
        client.ok("schedule_prompt", new_prompt="first", timestamp=300)
        await asyncio.sleep(0.05)  # the worker is (most likely) inside first's encode meanwhile
        for i in range(20):
            client.ok("schedule_prompt", new_prompt=f"version {i}", timestamp=600)
        client.ok("schedule_prompt", new_prompt="gone", timestamp=900)
        client.ok("remove_prompt", timestamp=900)
        for _ in range(300):
            if "version 19" in generator.encoded:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert generator.encoded == ["first", "version 19"]
    finally:
        session.close()


async def test_a_session_closed_while_its_prompt_encodes_starts_no_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing more reaches the generator of a session closed mid-encode (on a shared GPU, others' time)."""
    from longlive_rtc import engine

    monkeypatch.setattr(engine, "CLOSE_WAIT", 0.05)
    inside, finish = threading.Event(), threading.Event()
    calls: list[str] = []

    class Watched(SyntheticGenerator):
        def encode_prompt(self, prompt: str):
            inside.set()
            finish.wait(10)
            return super().encode_prompt(prompt)

        def begin(self, seed: int, prompt) -> None:
            calls.append("begin")
            super().begin(seed, prompt)

        def next_block(self) -> np.ndarray:
            calls.append("block")
            return super().next_block()

    session = Session("mid", Watched(SMALL))
    client = Client(session)
    client.ok("schedule_prompt", new_prompt="p", timestamp=0)
    client.ok("start")
    assert await asyncio.to_thread(inside.wait, 10)
    session.close()
    finish.set()
    await asyncio.wait_for(asyncio.to_thread(session.engine.wait_closed), 10)
    assert calls == [], calls


async def test_a_closing_session_gives_its_generator_back_only_once_its_engine_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine inside a long generator call outlives ``close``'s wait: the hub must not reuse its generator."""
    from longlive_rtc import engine
    from longlive_rtc.rtc.hub import Hub, HubConfig

    monkeypatch.setattr(engine, "CLOSE_WAIT", 0.05)
    inside, finish = threading.Event(), threading.Event()

    class Stuck(SyntheticGenerator):
        def next_block(self) -> np.ndarray:
            inside.set()
            finish.wait(10)
            return super().next_block()

    released: list[bool] = []
    hub = Hub(lambda: Stuck(SMALL), HubConfig(max_sessions=1),
              release=lambda g: released.append(live.session.engine._thread.is_alive()))  # fmt: skip
    live = hub.create_session("busy")
    client = Client(live.session)
    client.ok("schedule_prompt", new_prompt="p", timestamp=0)
    client.ok("start")
    assert await asyncio.to_thread(inside.wait, 10)
    await asyncio.wait_for(hub.free_session("busy"), 10)  # the slot is free at once
    assert "busy" not in hub.sessions
    await asyncio.sleep(0.3)
    assert released == [], "the generator is still in use: not given back"
    await asyncio.wait_for(hub.close(), 10)  # a shutdown does not wait for the busy call either
    finish.set()
    for _ in range(500):
        if released:
            break
        await asyncio.sleep(0.01)
    assert released == [False], "given back once its engine thread ended"
