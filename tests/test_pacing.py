"""Late binding: blocks start just in time, so a live prompt applies at the next block; the margin adapts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import numpy as np
import pytest

from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.pacing import Pacer
from longlive_rtc.rtc.hub import HubConfig
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
    shared = pacer.start_in(now=10.0, buffered=12, last_shown=10.0, period=PERIOD, ahead=0.25)
    assert shared == pytest.approx(dry - 0.3 - 0.1 - 0.25 - 10), "on a shared device: earlier by the others' blocks"
    assert pacer.start_in(now=10.0, buffered=12, last_shown=10.0, period=PERIOD, ahead=5.0) == 0.0
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


def simulate(pacer: Pacer, durations: list[float], frames: int = 12) -> tuple[int, list[float]]:
    """The engine's playout in frame ticks, no wall clock: each block starts when ``pacer`` says, takes its
    duration, and goes into a one-block buffer once it is empty; a tick with no frame is a stall. Returns the
    stalls and the margin after each block."""
    period, free, stalls, seen, margins = PERIOD, 1, 0, 0, []  # ``free``: the first tick with no frame yet
    ready = 0.0  # when the worker is free to start the next block

    def tick(t: float) -> int:  # the last tick at or before t
        return int(t / period + 1e-9)

    for number, duration in enumerate(durations):
        shown = tick(ready)  # the buffer holds the frames of ticks shown+1 .. free-1
        last_shown = min(shown, free - 1) * period if number > 1 else None
        start = ready + pacer.start_in(ready, max(0, free - 1 - shown), last_shown, period)
        finished = start + duration
        late = max(0, tick(finished) - free + 1) if number > 1 else 0  # ticks that found the buffer empty
        stalls += late
        done = tick(finished)
        slack = pacer.slack(finished, max(0, free - 1 - done), min(done, free - 1) * period, period)
        if number > 0:
            pacer.record(duration, slack if number > 1 else None, period, False, stalls > seen)
        seen = stalls
        put = max(finished, (free - 1) * period)  # room for a whole block: when the last frame went on air
        first = max(free, tick(put) + 1)
        free, ready = first + frames, put
        margins.append(pacer.margin)
    return stalls, margins


def test_the_margin_widens_to_the_measured_jitter_and_holds_so_a_jumping_block_time_never_stalls() -> None:
    """Blocks of 100 ms, then every 30th takes 180 ms (a load that comes and goes: the 8-block estimate forgets
    it in between). Shrinking alone, the margin decays below the 80 ms jump and blocks arrive late; held at the
    largest recent overshoot (plus headroom) it never does."""
    durations = [0.1] * 15 + [0.18 if i % 30 == 0 else 0.1 for i in range(240)]
    stalls, margins = simulate(Pacer(), durations)
    assert stalls == 0
    assert min(margins[16:]) >= 1.25 * 0.08 + PERIOD / 3 - 1e-9, "widened to the jump, and held there"
    assert margins[16] > margins[14], "the jump widened it"
    steady, steady_margins = simulate(Pacer(), [0.1] * 255)
    assert steady == 0 and steady_margins[-1] == pytest.approx(Pacer().min_margin), "no jitter: down to the floor"
    unadapted, _ = simulate(Pacer(jitter_headroom=0.0), durations)  # the margin of a near-stall only
    assert unadapted > 0, "the same blocks stall a pacer that does not hold its margin to the jitter"


async def test_the_engine_widens_its_margin_when_the_block_time_jumps_and_never_stalls() -> None:
    """A real engine and on-air clock: 60 ms blocks, then 160 ms ones. The first slow block overshoots the
    estimate by 0.1 s (inside the margin it started with); the margin widens to that and holds."""
    generator = SyntheticGenerator(SMALL, block_ms=60)
    session = Session("jump", generator)
    clock = OnAirClock(session.engine, on_shown=session.shown)
    clock.start()
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    pacer = session.engine.pacer
    try:
        command(session, "schedule_prompt", new_prompt="steady", timestamp=0)
        command(session, "start")
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 15)
        before = pacer.margin
        generator.block_ms = 160
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 45, timeout=30)
        assert max(pacer.overshoots) >= 0.09, "the first slow block overshot the estimate"
        assert pacer.margin >= 1.25 * max(pacer.overshoots) + PERIOD / 3 - 1e-9 > before, "widened, and held"
        assert session.engine.stalls == 0, "no tick found the buffer empty once playing"
    finally:
        clock.stop()
        session.close()


def command(session: Session, kind: str, **data) -> None:
    replies = []
    session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
    assert replies[0].type == "ack", replies[0]


async def send_live_prompts(session: Session, log: EventLog, count: int) -> list:
    """``count`` live prompts, each scheduled for the next block on a ``progress``; their ``on_air`` events."""
    on_air = []
    for number in range(count):
        progress = await log.wait_for(lambda e: e.type == "progress", since=log.mark())
        frame = progress.data["current_start_frame"]
        command(session, "schedule_prompt", new_prompt=f"live {number}", timestamp=frame)
        on_air.append(await log.wait_for(lambda e, t=frame: e.type == "on_air" and e.data["timestamp"] == t))
    return on_air


@contextlib.contextmanager
def streaming(generator: SyntheticGenerator, asap: bool = False, late_binding: bool = True, sink=None):
    """A session of ``generator`` started on a prompt at frame 0, on an on-air clock (with ``sink``); yields
    the session and its controller's event log."""
    session = Session("paced", generator)
    session.engine.pacer.asap, session.engine.pacer.enabled = asap, late_binding
    clock = OnAirClock(session.engine, on_shown=session.shown)
    if sink is not None:
        clock.add_sink(sink)
    clock.start()
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    try:
        command(session, "schedule_prompt", new_prompt="first", timestamp=0)
        command(session, "start")
        yield session, log
    finally:
        clock.stop()
        session.close()


@pytest.mark.parametrize("late_binding", [True, False])
async def test_a_live_prompt_sent_on_progress_applies_at_the_next_block_only_with_late_binding(
    late_binding: bool,
) -> None:
    """100 ms blocks, 800 ms of playback each: just in time, the next block starts some 0.5 s after a
    ``progress``, so a prompt sent then applies there; as early as the buffer allows, it has already begun."""
    with streaming(SyntheticGenerator(SMALL, block_ms=100), late_binding=late_binding) as (session, log):
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


def test_block_ms_comes_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from longlive_rtc.cli import build_generator, build_parser

    args = build_parser().parse_args(["serve", "--block-ms", "310", "--late-binding", "off"])
    assert build_generator(args).block_ms == 310.0 and args.late_binding == "off"
    assert build_generator(build_parser().parse_args(["serve", "--switch-ms", "100"])).switch_ms == 100.0
    assert build_parser().parse_args(["serve"]).live_switch == "asap" == HubConfig().live_switch, "the default"
    assert build_parser().parse_args(["serve", "--live-switch", "block-end"]).live_switch == "block-end"
    monkeypatch.setenv("LONGLIVE_RTC_BLOCK_MS", "420")
    assert build_generator(build_parser().parse_args(["serve"])).block_ms == 420.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--block-ms", "-1"])


class SkipCounting(SyntheticGenerator):
    """Counts the frames the engine says will never be shown (``skip_frames``, as a shared GPU's session)."""

    skipped = 0

    def skip_frames(self, count: int) -> None:
        self.skipped += count


class SharedDevice(SyntheticGenerator):
    """As a session on a shared GPU: its first frame should wait ``lead`` seconds (``start_lead``)."""

    lead = 0.6
    first_block_at: float | None = None

    def start_lead(self) -> float:
        return self.lead

    def next_block(self) -> np.ndarray:
        frames = super().next_block()
        if self.first_block_at is None:
            self.first_block_at = time.monotonic()
        return frames


async def test_a_runs_first_frame_waits_for_the_generators_lead_and_the_wait_is_no_stall() -> None:
    generator = SharedDevice(SMALL, block_ms=50)
    shown: dict[int, float] = {}
    sink = type("Sink", (), {"on_air": lambda self, f: shown.setdefault(f.video_frame, time.monotonic())})()
    with streaming(generator, sink=sink) as (session, log):
        await log.wait_for(lambda e: e.type == "on_air" and e.data["video_frame"] == 0)
        assert generator.first_block_at is not None
        assert shown[0] - generator.first_block_at >= generator.lead, "held for the lead after its block"
        assert session.engine.stalls == 0, "the hold before the first frame is not a stall"


async def test_asap_a_live_prompts_block_replaces_the_frames_queued_and_airs_at_once() -> None:
    generator = SkipCounting(SMALL, block_ms=100)
    session = Session("asap", generator)
    session.engine.pacer.asap = True
    clock = OnAirClock(session.engine, on_shown=session.shown)
    shown: list[int | None] = []
    clock.add_sink(type("Sink", (), {"on_air": lambda self, frame: shown.append(frame.video_frame)})())
    clock.start()
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    try:
        command(session, "schedule_prompt", new_prompt="first", timestamp=0)
        command(session, "schedule_prompt", new_prompt="planned", timestamp=9, transition={"mode": "cut"})
        command(session, "start")  # the prompt at 9 is not live: it airs at its block, nothing skipped
        planned = await log.wait_for(lambda e: e.type == "on_air" and e.data["timestamp"] == 9)
        assert (planned.data["mode"], planned.data["skipped"]) == ("cut", 0)
        assert log.of("prompt_applied")[-1].data["mode"] == "cut"
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] >= 15)
        assert session.engine.frames_skipped == 0, "a prompt scheduled ahead airs at its block, nothing skipped"
        on_air = await send_live_prompts(session, log, 3)
        await asyncio.sleep(0.3)
        assert session.engine.frames_skipped > 0 and session.engine.stalls == 0
        assert all(e.data["mode"] == "recache" and e.data["skipped"] > 0 for e in on_air), "each cut in"
        assert sum(e.data["skipped"] for e in log.of("on_air")) == session.engine.frames_skipped
        assert session.state_data()["frames_skipped"] == session.engine.frames_skipped
        assert generator.skipped == session.engine.frames_skipped, "the generator heard of every skipped frame"
        frames = [f for f in shown if f is not None]
        assert frames == sorted(frames) and len(set(frames)) == len(frames), "in order, each frame once"
        for event in on_air:  # each live block cut in: the frame before it on screen is not its predecessor
            index = frames.index(event.data["video_frame"])
            assert frames[index - 1] < event.data["video_frame"] - 1, "the rest of the block on air was skipped"
    finally:
        clock.stop()
        session.close()


class OnASharedDevice(SkipCounting):
    """As a session on a GPU that other streams use at the same time."""

    def shares_device(self) -> bool:
        return True


async def test_asap_on_a_shared_device_a_live_prompt_airs_at_its_block_and_skips_nothing() -> None:
    generator = OnASharedDevice(SMALL, block_ms=100)
    with streaming(generator, asap=True) as (session, log):
        on_air = await send_live_prompts(session, log, 2)
        assert all(e.data["skipped"] == 0 for e in on_air), "the frames queued before it all aired"
        assert session.engine.frames_skipped == 0 and generator.skipped == 0


async def test_asap_a_live_prompt_does_not_wait_for_room_behind_a_block_made_before_it() -> None:
    """Nothing plays here, so the block after block 0 waits for room in the buffer for good; a live prompt
    scheduled meanwhile starts its block at once all the same (its block replaces the queue anyway)."""
    session = Session("room", SyntheticGenerator(SMALL, block_ms=20))
    session.engine.pacer.asap = True
    log = EventLog()
    session.join(Role.CONTROLLER, log)
    engine = session.engine
    try:
        command(session, "schedule_prompt", new_prompt="first", timestamp=0)
        command(session, "start")
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] == 3)
        for _ in range(200):  # the second block is generated and waits for room behind block 0's frames
            if engine.blocks_generated == 2:
                break
            await asyncio.sleep(0.01)
        assert engine.blocks_generated == 2 and len(engine.buffer) == engine.buffer.high_water > 0
        queued = len(engine.buffer)
        command(session, "schedule_prompt", new_prompt="live", timestamp=6)
        applied = await log.wait_for(lambda e: e.type == "prompt_applied" and e.data["prompt"] == "live", timeout=10)
        assert applied.data["frame"] == 6, "the block right after the one that waited"
        await log.wait_for(lambda e: e.type == "progress" and e.data["current_start_frame"] == 9, timeout=10)
        assert engine.frames_skipped == queued + SMALL.max_video_frames_in_block, "block 0's and the next one's"
        assert len(engine.buffer) == SMALL.max_video_frames_in_block, "only the live block's frames queued"
    finally:
        session.close()


def test_switch_ms_makes_each_recache_take_at_least_that_long() -> None:
    """A lower bound only (load makes it longer, never shorter)."""
    import time

    generator = SyntheticGenerator(SMALL, switch_ms=80)
    generator.begin(0, generator.encode_prompt("first"))
    started = time.monotonic()
    generator.switch_prompt(generator.encode_prompt("second"))
    assert time.monotonic() - started >= 0.08
