"""State snapshots to a peer are coalesced (issue #19): a burst of commands costs a few snapshots, each
message still gets its ack at once, and the last snapshot is the latest state. Real aiortc peers."""

from __future__ import annotations

import asyncio
import time

import pytest

from longlive_rtc.generators import Geometry
from longlive_rtc.rtc.outbox import STATE_INTERVAL

from .rtc_client import Client, Server

pytestmark = pytest.mark.timeout(60)


async def test_a_burst_of_commands_costs_a_few_state_snapshots_and_ends_on_the_latest() -> None:
    async with Server(geometry=Geometry(width=320, height=192)) as server:
        controller, viewer = Client(), Client()
        try:
            await controller.connect(server.url)
            await viewer.connect(server.url, session=controller.session, role="viewer")
            await viewer.wait_event(lambda e: e["type"] == "state")
            mark = len(viewer.events)
            began = time.monotonic()
            for i in range(40):
                controller.send("schedule_prompt", f"c{i}", new_prompt=f"prompt {i}", timestamp=3 * i)
            for i in range(40):
                assert (await controller.reply_to(f"c{i}"))["type"] == "ack"
            latest = await viewer.wait_event(lambda e: e["type"] == "state" and len(e["data"]["scheduled"]) == 40)
            assert [p["prompt"] for p in latest["data"]["scheduled"]] == [f"prompt {i}" for i in range(40)]
            await asyncio.sleep(3 * STATE_INTERVAL)
            states = [e for e in viewer.events[mark:] if e["type"] == "state"]
            elapsed = time.monotonic() - began
            assert len(states) <= elapsed / STATE_INTERVAL + 2 and len(states) < 20, len(states)
            assert states[-1] == latest  # nothing older arrives after the latest
            mark = len(viewer.events)
            await asyncio.sleep(STATE_INTERVAL)
            controller.send("schedule_prompt", "one", new_prompt="one more", timestamp=999)
            await controller.reply_to("one")
            await viewer.wait_event(lambda e: e["type"] == "state" and len(e["data"]["scheduled"]) == 41, timeout=2)
        finally:
            await viewer.close()
            await controller.close()
