"""Memory given back when peers leave (issue #19): a left peer's connection is released by the hub's
reclaimer, not held until some later full collection or by a timer; large blocks are mapped."""

from __future__ import annotations

import asyncio
import gc
import platform
import time
import weakref

import pytest

from longlive_rtc.generators import Geometry
from longlive_rtc.rtc.memory import Reclaimer, map_large_blocks

from .rtc_client import Client, Server

pytestmark = pytest.mark.timeout(60)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_large_blocks_are_mapped_on_glibc() -> None:
    assert map_large_blocks() is True


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_the_reclaimer_collects_cycles_once_for_a_burst_of_departures() -> None:
    reclaimer = Reclaimer(delay=0.05)
    gc.disable()
    try:
        garbage = Cycle()
        ref = weakref.ref(garbage)
        del garbage
        for _ in range(5):
            reclaimer.soon()
        await asyncio.sleep(0.3)
        assert ref() is None and reclaimer.runs == 1
    finally:
        gc.enable()


async def test_a_viewer_that_left_has_its_connection_released_within_seconds() -> None:
    async with Server(geometry=Geometry(width=320, height=192)) as server:
        server.hub.reclaimer.delay = 0.2
        controller, viewer = Client(), Client()
        try:
            await controller.connect(server.url)
            await viewer.connect(server.url, session=controller.session, role="viewer")
            await viewer.wait_frames(3)
            live = server.hub.get(controller.session)
            peer = live.peers[viewer.peer_id]
            refs = [weakref.ref(peer), weakref.ref(peer.pc)]
            del peer
            gc.disable()  # only the hub's own collection may free it
            await viewer.close()
            deadline = time.monotonic() + 10
            while any(ref() is not None for ref in refs):
                assert time.monotonic() < deadline, "the left viewer's peer connection is still alive"
                await asyncio.sleep(0.05)
            assert viewer.peer_id not in live.peers and server.hub.reclaimer.runs >= 1
        finally:
            gc.enable()
            await controller.close()
