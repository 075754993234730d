"""Late binding: blocks start just in time, so a live prompt applies at the next block; the margin adapts."""

from __future__ import annotations

import asyncio
import json

import pytest

from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.pacing import Pacer
from longlive_rtc.rtc.track import OnAirClock
from longlive_rtc.session import Role, Session

from .support import SMALL, EventLog

pytestmark = pytest.mark.timeout(60)
PERIOD = 1 / 15


def test_the_next_block_starts_its_estimate_and_margin_before_the_buffer_runs_dry() -> None:
    pacer = Pacer(margin=0.1)
    assert pacer.start_in(now=10.0, buffered=12, last_shown=10.0, period=PERIOD) == 0.0, "no estimate yet: at once"
    pacer.record(0.3, slack=None, period=PERIOD, switched=False, stalled=False)
    pacer.record(0.2, slack=None, period=PERIOD, switched=False, stalled=False)
    dry = 10.0 + 13 * PERIOD  # the first tick that would find the 12 frames gone
    assert pacer.start_in(now=10.0, buffered=12, last_shown=10.0, period=PERIOD) == pytest.approx(dry - 0.3 - 0.1 - 10)
    assert pacer.start_in(now=10.0, buffered=0, last_shown=10.0, period=PERIOD) == 0.0, "empty: at once"
    assert pacer.start_in(now=10.0, buffered=12, last_shown=None, period=PERIOD) == 0.0, "not playing: at once"
    pacer.record(0.5, slack=None, period=PERIOD, switched=True, stalled=False)
    assert pacer.estimate() == 0.5, "a prompt switch's cost counts"
    pacer.enabled = False
    assert pacer.start_in(now=10.0, buffered=12, last_shown=10.0, period=PERIOD) == 0.0


def test_the_margin_grows_after_a_near_stall_and_shrinks_slowly() -> None:
    pacer = Pacer(margin=0.1, min_margin=0.04)
    pacer.record(0.3, slack=0.01, period=PERIOD, switched=False, stalled=False)  # ready 10 ms early: too close
    assert pacer.margin == pytest.approx(0.2) and pacer.near_stalls == 1
    pacer.record(0.3, slack=0.5, period=PERIOD, switched=False, stalled=True)  # a stall, however early this one
    assert pacer.margin == pytest.approx(0.4)
    for _ in range(10):
        pacer.record(0.3, slack=0.3, period=PERIOD, switched=False, stalled=False)
    assert 0.3 < pacer.margin < 0.4, "on time: it shrinks, slowly"
    for _ in range(500):
        pacer.record(0.3, slack=0.3, period=PERIOD, switched=False, stalled=False)
    assert pacer.margin == pytest.approx(0.04), "never below its floor"
    pacer.record(0.3, slack=-0.2, period=PERIOD, switched=False, stalled=False)  # late: grows by the deficit
    assert pacer.margin >= 0.04 + 0.2


def command(session: Session, kind: str, **data) -> None:
    replies = []
    session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
    assert replies[0].type == "ack", replies[0]


@pytest.mark.parametrize("late_binding", [True, False])
async def test_a_live_prompt_sent_on_progress_applies_at_the_next_block_only_with_late_binding(
    late_binding: bool,
) -> None:
    """100 ms blocks, 800 ms of playback each: just in time, the next block starts some 0.5 s after a
    ``progress``, so a prompt sent then applies there; as early as the buffer allows, it has already begun."""
    session = Session("pace", SyntheticGenerator(SMALL, block_ms=100))
    session.engine.pacer.enabled = late_binding
    clock = OnAirClock(session.engine, on_shown=session.shown)
    clock.start()
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    try:
        command(session, "schedule_prompt", new_prompt="first", timestamp=0)
        command(session, "start")
        applied_at = []
        for number in range(3):
            mark = log.mark()
            await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 12, since=mark)
            progress = await log.wait_for(lambda e: e.type == "progress", since=log.mark())
            frame = progress.data["current_start_frame"]
            command(session, "schedule_prompt", new_prompt=f"live {number}", timestamp=frame)
            applied = await log.wait_for(lambda e, t=frame: e.type == "prompt_applied" and e.data["timestamp"] == t)
            applied_at.append(applied.data["frame"] - frame)
        if late_binding:
            assert applied_at == [0, 0, 0], "read when its block starts, after the prompt came"
            assert session.engine.stalls == 0
        else:
            assert any(delta >= 3 for delta in applied_at), "the next block had begun already"
    finally:
        clock.stop()
        session.close()


def test_block_ms_comes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from longlive_rtc.cli import build_generator, build_parser

    args = build_parser().parse_args(["serve", "--block-ms", "310", "--late-binding", "off"])
    assert build_generator(args).block_ms == 310.0 and args.late_binding == "off"
    monkeypatch.setenv("LONGLIVE_RTC_BLOCK_MS", "420")
    assert build_generator(build_parser().parse_args(["serve"])).block_ms == 420.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--block-ms", "-1"])


async def test_asap_a_live_prompts_block_replaces_the_frames_queued_and_airs_at_once() -> None:
    session = Session("asap", SyntheticGenerator(SMALL, block_ms=100))
    session.engine.pacer.asap = True
    clock = OnAirClock(session.engine, on_shown=session.shown)
    shown: list[int | None] = []
    clock.add_sink(type("Sink", (), {"on_air": lambda self, frame: shown.append(frame.video_frame)})())
    clock.start()
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    try:
        command(session, "schedule_prompt", new_prompt="first", timestamp=0)
        command(session, "schedule_prompt", new_prompt="planned", timestamp=9)  # not live: no skipping
        command(session, "start")
        await log.wait_for(lambda e: e.type == "on_air" and e.data["timestamp"] == 9)
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 15)
        assert session.engine.frames_skipped == 0, "a prompt scheduled ahead airs at its block, nothing skipped"
        on_air = []
        for number in range(3):
            progress = await log.wait_for(lambda e: e.type == "progress", since=log.mark())
            frame = progress.data["current_start_frame"]
            command(session, "schedule_prompt", new_prompt=f"live {number}", timestamp=frame)
            on_air.append(await log.wait_for(lambda e, t=frame: e.type == "on_air" and e.data["timestamp"] == t))
        await asyncio.sleep(0.3)
        assert session.engine.frames_skipped > 0 and session.engine.stalls == 0
        frames = [f for f in shown if f is not None]
        assert frames == sorted(frames) and len(set(frames)) == len(frames), "in order, each frame once"
        for event in on_air:  # each live block cut in: the frame before it on screen is not its predecessor
            index = frames.index(event.data["video_frame"])
            assert frames[index - 1] < event.data["video_frame"] - 1, "the rest of the block on air was skipped"
    finally:
        clock.stop()
        session.close()
