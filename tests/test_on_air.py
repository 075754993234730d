"""The on-air clock: a session advances with no viewer, sinks get every frame, a raising sink is dropped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.generators.stamp import read_stamp
from longlive_rtc.outputs import OnAirFrame
from longlive_rtc.rtc.hub import Hub, HubConfig
from longlive_rtc.session import Role

from .rtc_client import Client, Server, wait_until
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


async def test_on_air_follows_prompt_applied_and_matches_the_received_stamps() -> None:
    async with Server() as server:
        client = Client()
        try:
            await client.connect(server.url)
            for i, (t, prompt) in enumerate([(0, "a red fox"), (6, "a blue lake"), (12, "green aurora")]):
                client.send("schedule_prompt", f"s{i}", new_prompt=prompt, timestamp=t)
            client.send("start", "go")
            assert (await client.reply_to("go"))["type"] == "ack"
            await client.wait_event(lambda e: e["type"] == "progress" and e["data"]["current_start_frame"] >= 18)
            client.send("schedule_prompt", "live", new_prompt="a live prompt", timestamp=18)  # the next block or so
            assert (await client.reply_to("live"))["type"] == "ack"
            live = await client.wait_event(lambda e: e["type"] == "prompt_applied" and e["data"]["timestamp"] == 18)
            last = (await client.wait_event(lambda e: e["type"] == "on_air" and e["data"]["timestamp"] == 18))["data"]
            client.send("get_state", "st")
            await client.reply_to("st")
            # the frames of the last switch reach the client: progress, however loaded the machine
            await wait_until(lambda: any(f.stamp and f.stamp.frame >= last["video_frame"] + 6 for f in client.frames),
                             timeout=30, what="the frames after the last switch")  # fmt: skip
            events = client.events
            applied = [e for e in events if e["type"] == "prompt_applied"]
            on_air = [e for e in events if e["type"] == "on_air"]
            assert [e["data"]["timestamp"] for e in applied] == [0, 6, 12, 18]
            assert [e["data"]["timestamp"] for e in on_air] == [0, 6, 12, 18]
            for a, o in zip(applied, on_air, strict=True):
                assert events.index(a) < events.index(o), "on_air comes after its prompt_applied"
                assert o["data"]["frame"] == a["data"]["frame"]
                assert o["data"]["video_frame"] == server.geometry.video_frames_before(a["data"]["frame"])
            starts = [o["data"]["video_frame"] for o in on_air]
            stamps = {f.stamp.frame: f.stamp.prompt for f in client.frames if f.stamp is not None}
            for index, prompt in stamps.items():  # every frame received shows the prompt on_air said was on screen
                assert prompt == sum(start <= index for start in starts) - 1, (index, prompt, starts)
            # a busy encoder skips frames, so each switch is bracketed within 6 frames (of those on air: with
            # --live-switch asap a live prompt's block replaces the last ``skipped`` frames of the one before)
            brackets = [(o["data"]["video_frame"] - o["data"]["skipped"], o["data"]["video_frame"]) for o in on_air]
            for before, start in brackets[1:]:
                assert any(before - 6 <= i < before for i in stamps) and any(start <= i < start + 6 for i in stamps)
            assert any(before - 1 in stamps and start in stamps for before, start in brackets[1:]), "one frame-exact"
            assert all(o["data"]["skipped"] == 0 for o in on_air[:3]), "prompts scheduled ahead skip nothing"
            assert live["data"]["frame"] >= 18
            state = next(e for e in reversed(events) if e["type"] == "state")
            assert state["data"]["playback_frame"] >= on_air[-1]["data"]["video_frame"]
        finally:
            await client.close()


class Flat:
    """A generator of grey frames with no stamp of its own."""

    name = "flat"
    geometry = SMALL

    def encode_prompt(self, prompt: str) -> str:
        return prompt

    def begin(self, seed: int, prompt: str) -> None:
        self.start = 0

    def switch_prompt(self, prompt: str) -> None:
        pass

    def next_block(self):
        count = self.geometry.video_frames_in_block(self.start)
        self.start += self.geometry.frames_per_block
        return np.full((count, self.geometry.height, self.geometry.width, 3), 128, dtype=np.uint8)

    def reset(self) -> None:
        self.start = 0


async def test_the_clock_stamps_frames_of_any_generator_when_asked() -> None:
    hub = Hub(Flat, HubConfig(max_sessions=1, stamp_frames=True))
    try:
        live = hub.create_session("stamped")
        sink = Collect()
        live.add_sink(sink)
        for t, prompt in [(0, "one"), (6, "two"), (12, "three")]:
            command(live.session, "schedule_prompt", new_prompt=prompt, timestamp=t)
        command(live.session, "start")
        await wait_until(lambda: any((f.video_frame or 0) >= 50 for f in sink.frames), what="frames on air")
        shown = [f for f in sink.frames if f.video_frame is not None and not f.repeat]
        for f in shown:
            stamp = read_stamp(f.planes[: SMALL.height])
            assert stamp is not None and stamp.frame == f.video_frame
            assert stamp.prompt == (0 if f.video_frame < 21 else 1 if f.video_frame < 45 else 2), stamp
    finally:
        await hub.close()
