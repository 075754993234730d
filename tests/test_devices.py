"""Sessions over several devices (a DevicePool of cpu devices): placement by free slots, a failed device isolated."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest

from longlive_rtc.generators import Geometry, SyntheticGenerator
from longlive_rtc.generators.devices import DeviceFailed, DevicePool, NoFreeSlot, parse_devices
from longlive_rtc.rtc.hub import Hub, HubConfig
from longlive_rtc.session import Role, Session
from signaling.auth import Auth

from .support import EventLog

GEOMETRY = Geometry(width=160, height=96)


class Breaking(SyntheticGenerator):
    """A device whose blocks fail once ``broken`` is set (as a CUDA error would)."""

    broken = False

    def next_block(self) -> np.ndarray:
        if Breaking.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return super().next_block()


def opener(name: str):
    return lambda: (Breaking if name == "cpu-bad" else SyntheticGenerator)(GEOMETRY)


def test_parse_devices() -> None:
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("all", cuda_count=lambda: 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    for bad in ("cuda:0,cuda:0", "gpu0", "", "cpu:1"):
        with pytest.raises(ValueError):
            parse_devices(bad)
    with pytest.raises(ValueError, match="no CUDA"):
        parse_devices("all", cuda_count=lambda: 0)


def test_sessions_go_where_most_slots_are_free() -> None:
    pool = DevicePool(["cpu", "cpu", "cpu"], slots=2, opener=lambda _n: lambda: SyntheticGenerator(GEOMETRY))
    placed = [pool.device_of(pool()) for _ in range(4)]
    assert placed == ["cpu#0", "cpu#1", "cpu#2", "cpu#0"]
    freed = pool()  # cpu#1's second slot
    assert pool.device_of(freed) == "cpu#1"
    pool.release(freed)
    assert [d["sessions"] for d in pool.report()] == [2, 1, 1]
    assert pool.device_of(pool()) == "cpu#1" and pool.device_of(pool()) == "cpu#2"
    with pytest.raises(NoFreeSlot):
        pool()


async def test_a_failed_device_fails_its_sessions_only() -> None:
    Breaking.broken = False
    pool = DevicePool(["cpu-bad", "cpu"], slots=1, opener=opener)
    sessions = [Session(f"s{i}", pool()) for i in range(2)]
    logs = [EventLog() for _ in sessions]
    try:
        for session, log in zip(sessions, logs, strict=True):
            session.join(Role.CONTROLLER, log)
            message = {"type": "schedule_prompt", "data": {"new_prompt": "p", "timestamp": 0}}
            session.handle(json.dumps(message), Role.CONTROLLER, lambda _e: None)
            session.handle('{"type": "start"}', Role.CONTROLLER, lambda _e: None)
        for log in logs:
            await log.wait_for(lambda e: e.type == "progress")
        Breaking.broken = True
        bad, good = sessions
        for _ in range(400):  # keep the buffers draining so both engines keep generating
            for session in sessions:
                session.engine.next_frame()
            if logs[0].of("error"):
                break
            await asyncio.sleep(0.01)
        failure = logs[0].of("error")
        assert failure and failure[0].data["code"] == "generator_failed"
        assert [d["state"] for d in pool.report()] == ["failed", "ok"]
        before = good.engine.blocks_generated
        for _ in range(300):
            good.engine.next_frame()
            if good.engine.blocks_generated >= before + 2:
                break
            await asyncio.sleep(0.01)
        assert good.engine.blocks_generated >= before + 2, "the healthy device's session streams on"
        assert not logs[1].of("error")
        with pytest.raises(DeviceFailed):
            bad.engine.generator.begin(0, None)
        pool.release(bad.engine.generator)
        with pytest.raises(NoFreeSlot):  # the free slot is on the failed device: new sessions avoid it
            pool()
    finally:
        for session in sessions:
            session.close()
        Breaking.broken = False


@contextlib.asynccontextmanager
async def serving(hub: Hub, auth: Auth) -> AsyncIterator[str]:
    """The signaling app over ``hub`` on a free local port: its base URL; the hub closed after."""
    from aiohttp import web

    from signaling.app import create_app

    runner = web.AppRunner(create_app(hub, auth))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await hub.close()
        await runner.cleanup()


async def test_serve_devices_flag_health_and_metrics_per_device() -> None:
    import aiohttp

    from longlive_rtc.cli import build_parser, device_pool

    args = build_parser().parse_args(["serve", "--devices", "cpu,cpu", "--max-sessions", "2", "--width", "160",
                                      "--height", "96"])  # fmt: skip
    config = HubConfig()
    pool = device_pool(args, config)
    assert config.max_sessions == 4
    hub = Hub(pool, config, release=pool.release, report=pool.report)
    async with serving(hub, Auth("none")) as url, aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(url + "/sessions", json={}) as r:
                assert r.status == 201, await r.text()
        async with http.get(url + "/health") as r:
            health = await r.json()
        assert health["status"] == "ok" and health["capacity"] == 4
        assert [(d["device"], d["sessions"]) for d in health["devices"]] == [("cpu#0", 2), ("cpu#1", 1)]
        async with http.get(url + "/metrics") as r:
            text = await r.text()
        assert 'longlive_device_sessions{device="cpu#1"} 1' in text and "longlive_session_device{" in text


@pytest.mark.parametrize("mode", ["peer", "host"])
def test_decoder_on_its_own_device_gives_the_same_frames(mode: str) -> None:
    from longlive_rtc.generators.handover import place_decoder

    from .test_gpu_worker import PLANS, play
    from .test_longlive_generator import tiny_longlive

    want = play(tiny_longlive("tae"), *PLANS["b"])
    moved = tiny_longlive("tae")
    place_decoder(moved, "cpu", mode)
    got = play(moved, *PLANS["b"])
    assert moved.handover is not None and moved.handover.blocks == len(want)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


async def test_health_names_a_failed_devices_error_only_to_the_api_key() -> None:
    import aiohttp


    pool = DevicePool(["cpu-bad", "cpu"], slots=1, opener=opener)
    Breaking.broken = True
    try:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            pool().next_block()  # the first error of a generator on the device fails it
    finally:
        Breaking.broken = False
    hub = Hub(pool, HubConfig(max_sessions=2), release=pool.release, report=pool.report)
    auth = Auth("token", api_key="health-test-key-0123456789")
    async with serving(hub, auth) as url, aiohttp.ClientSession() as http:
        async with http.get(url + "/health") as r:
            public = await r.json()
        async with http.get(url + "/health", headers={"Authorization": f"Bearer {auth.api_key}"}) as r:
            operator = await r.json()
    assert public["status"] == operator["status"] == "degraded"
    assert [d["state"] for d in public["devices"]] == ["failed", "not loaded"]
    assert all("error" not in d for d in public["devices"]), "an open route shows states and counts only"
    assert "illegal memory access" in operator["devices"][0]["error"]


async def test_one_session_out_of_memory_fails_its_run_not_its_device() -> None:
    import torch

    class Tight(SyntheticGenerator):
        """The third session's stream does not fit on the device (its KV cache, say)."""

        def begin(self, seed: int, prompt: object) -> None:
            if seed == 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.20 GiB")
            super().begin(seed, prompt)

    pool = DevicePool(["cpu"], slots=2, opener=lambda _n: lambda: Tight(GEOMETRY))
    first, second = pool(), pool()
    first.begin(1, first.encode_prompt("p"))
    with pytest.raises(torch.OutOfMemoryError):
        second.begin(3, second.encode_prompt("p"))
    assert [d["state"] for d in pool.report()] == ["ok"], "the device is fine"
    assert first.next_block().shape[0] == 9, "and its other session streams on"
    second.begin(4, second.encode_prompt("p"))  # the failed one starts again
    assert second.next_block().shape[0] == 9
