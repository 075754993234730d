"""What a peer is sent is bounded (issue #19): a burst of schedule changes costs a few small
``schedule_changed`` events (never the whole schedule), each message still gets its ack at once, and
snapshots asked with ``get_state`` are coalesced, the last one the latest. Real aiortc peers."""

from __future__ import annotations

import asyncio
import time

import pytest

from longlive_rtc.generators import Geometry
from longlive_rtc.rtc.outbox import STATE_INTERVAL

from .rtc_client import Client, Server
from .schedule_mirror import ScheduleMirror

pytestmark = pytest.mark.timeout(60)


def mirror_of(events: list[dict]) -> ScheduleMirror:
    mirror = ScheduleMirror()
    for event in events:
        mirror.feed(event["type"], event["data"])
    return mirror


async def test_a_burst_of_changes_costs_a_few_small_events_and_the_viewer_follows_it() -> None:
    async with Server(geometry=Geometry(width=320, height=192)) as server:
        controller, viewer = Client(), Client()
        try:
            await controller.connect(server.url)
            await viewer.connect(server.url, session=controller.session, role="viewer")
            await viewer.wait_event(lambda e: e["type"] == "state")
            mark = len(viewer.events)
            for i in range(40):
                controller.send("schedule_prompt", f"c{i}", new_prompt=f"prompt {i}", timestamp=3 * i)
            for i in range(40):
                assert (await controller.reply_to(f"c{i}"))["type"] == "ack"
            controller.send("remove_prompt", "r", timestamp=0)
            assert (await controller.reply_to("r"))["type"] == "ack"
            await viewer.wait_event(lambda e: e["type"] == "schedule_changed" and e["data"]["changes"][-1]["op"] ==
                                    "remove")  # fmt: skip
            after = viewer.events[mark:]
            assert all(e["type"] == "schedule_changed" for e in after) and len(after) <= 41
            assert sum(len(e["data"]["changes"]) for e in after) == 41
            mirror = mirror_of(viewer.events)
            assert [p["prompt"] for p in mirror.scheduled] == [f"prompt {i}" for i in range(1, 40)]
            assert mirror.asked == 0
        finally:
            await viewer.close()
            await controller.close()


async def test_snapshots_asked_in_a_burst_are_coalesced_and_end_on_the_latest() -> None:
    async with Server(geometry=Geometry(width=320, height=192)) as server:
        controller = Client()
        try:
            await controller.connect(server.url)
            await controller.wait_event(lambda e: e["type"] == "state")
            mark = len(controller.events)
            began = time.monotonic()
            for i in range(30):
                controller.send("get_state", f"g{i}")
            controller.send("set_seed", "seed", seed=77)  # a change while snapshots wait: they say so too
            for i in range(30):
                assert (await controller.reply_to(f"g{i}"))["type"] == "ack"
            assert (await controller.reply_to("seed"))["type"] == "ack"
            await asyncio.sleep(3 * STATE_INTERVAL)
            snapshots = [e for e in controller.events[mark:] if e["type"] == "state" and "scheduled" in e["data"]]
            elapsed = time.monotonic() - began
            assert 1 <= len(snapshots) <= elapsed / STATE_INTERVAL + 2 and len(snapshots) < 10, len(snapshots)
            assert snapshots[-1]["data"]["seed"] == 77  # nothing older arrives after the latest
        finally:
            await controller.close()
