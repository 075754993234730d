"""The on-air clock: a session advances with no viewer, sinks get every frame, a raising sink is dropped."""

from __future__ import annotations

import json

import pytest

from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.generators.stamp import read_stamp
from longlive_rtc.outputs import OnAirFrame
from longlive_rtc.rtc.hub import Hub, HubConfig
from longlive_rtc.session import Role

from .rtc_client import wait_until
from .support import SMALL

pytestmark = pytest.mark.timeout(60)


class Collect:
    """A sink keeping every frame it is fed."""

    def __init__(self) -> None:
        self.frames: list[OnAirFrame] = []

    def on_air(self, frame: OnAirFrame) -> None:
        self.frames.append(frame)


class Broken:
    """A sink that raises on its second frame."""

    calls = 0

    def on_air(self, frame: OnAirFrame) -> None:
        self.calls += 1
        if self.calls >= 2:
            raise RuntimeError("disk full")


def command(session, kind: str, **data) -> None:
    replies = []
    session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
    assert replies[0].type == "ack", replies[0]


async def test_a_session_with_no_viewer_advances_and_feeds_its_sinks() -> None:
    hub = Hub(lambda: SyntheticGenerator(SMALL), HubConfig(max_sessions=1))
    try:
        live = hub.create_session("no-viewer")
        sink, broken = Collect(), Broken()
        live.add_sink(sink)
        live.add_sink(broken)
        await wait_until(lambda: len(sink.frames) >= 3, what="idle card frames")
        assert all(f.video_frame is None for f in sink.frames), "the idle card before start"
        assert not sink.frames[0].repeat and all(f.repeat for f in sink.frames[1:])
        command(live.session, "schedule_prompt", new_prompt="nobody watches", timestamp=0)
        command(live.session, "start")
        await wait_until(lambda: live.session.current_start_frame >= 12, what="generation with no viewer")
        await wait_until(lambda: any((f.video_frame or 0) >= 30 for f in sink.frames), what="frames on air")
        assert not live.peers
        assert broken not in live.clock.sinks and broken.calls == 2, "the raising sink was removed"
        assert live.clock.running, "the clock survived it"
        steps = {b.pts - a.pts for a, b in zip(sink.frames, sink.frames[1:], strict=False)}
        assert steps == {6000}, "one frame per tick, 90000 / 15 apart"
        shown = [f for f in sink.frames if f.video_frame is not None and not f.repeat]
        indices = [f.video_frame for f in shown]
        assert indices == list(range(indices[0], indices[0] + len(indices))), "every generated frame, in order"
        for f in shown:
            assert f.planes.shape == (SMALL.height * 3 // 2, SMALL.width)
            stamp = read_stamp(f.planes[: SMALL.height])
            assert stamp is not None and stamp.frame == f.video_frame
        live.remove_sink(sink)
        count = len(sink.frames)
        await wait_until(lambda: live.clock.frames_sent >= shown[-1].pts // 6000 + 3, what="more ticks")
        assert len(sink.frames) == count, "a removed sink is fed no more"
        live.remove_sink(sink)  # removing twice is harmless
    finally:
        await hub.close()
    assert not live.clock.running
