"""WHIP out over real HTTP: a session published to a WHIP ingest, stopped, retried when unreachable.

Ingests: a small aiortc WHIP endpoint in this process (always runs) and GStreamer's webrtcbin in Debian's
python3 (tests/gst_whip_ingest.py; skipped with a reason where it is not installed, CI installs it).
Bad requests get JSON errors and the stream plays on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from longlive_rtc.generators.stamp import read_stamp
from longlive_rtc.rtc.whip import BadWhipUrl, PublicOnlyResolver, WhipPublisher, backoff, check_url

from .rtc_client import Client, wait_until
from .test_outputs_http import OutputServer, call, outputs_config, running_session

pytestmark = pytest.mark.timeout(180)

GST_INGEST = Path(__file__).with_name("gst_whip_ingest.py")


class AiortcIngest:
    """A WHIP endpoint: answers an offer with an aiortc peer, counts the frames and the stamps it reads."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse  # answer the first N POSTs 503
        self.stamps: list[int] = []
        self.frames = 0
        self.posts: list[str | None] = []  # the Authorization header of each POST
        self.deletes: list[str] = []
        self.peers: list[RTCPeerConnection] = []

    async def post(self, request: web.Request) -> web.Response:
        self.posts.append(request.headers.get("Authorization"))
        if request.content_type != "application/sdp":
            return web.Response(status=415)
        if len(self.posts) <= self.refuse:
            return web.Response(status=503, text="busy")
        pc = RTCPeerConnection()
        self.peers.append(pc)
        pc.on("track", lambda track: asyncio.ensure_future(self._read(track)))
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        location = f"/whip/resource/{len(self.peers)}"
        return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                            headers={"Location": location})  # fmt: skip

    async def delete(self, request: web.Request) -> web.Response:
        self.deletes.append(request.path)
        return web.Response(status=200)

    async def _read(self, track) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames += 1
                stamp = read_stamp(frame.to_ndarray(format="yuv420p")[: frame.height])
                if stamp is not None:
                    self.stamps.append(stamp.frame)

    async def __aenter__(self) -> AiortcIngest:
        app = web.Application()
        app.router.add_post("/whip", self.post)
        app.router.add_delete("/whip/resource/{n}", self.delete)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/whip"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pc in self.peers:
            await pc.close()
        await self.runner.cleanup()


def free_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/whip"  # nothing listens there once closed


def test_urls_and_backoff() -> None:
    assert check_url("https://ingest.example/whip/x") == "https://ingest.example/whip/x"
    for bad in ("ftp://x/whip", "/whip", "http://", 3, None, "rtmp://x"):
        with pytest.raises(ValueError):
            check_url(bad)
    delays = [backoff(n) for n in range(1, 9)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4 and all(24 <= d <= 36 for d in delays[5:])


PRIVATE_INGESTS = ("http://127.0.0.1:8889/live/whip", "http://[::1]/whip", "http://10.1.2.3/whip",
                   "http://169.254.169.254/latest/meta-data", "http://localhost:8889/x/whip", "http://LOCALHOST./w",
                   "http://[::ffff:127.0.0.1]/whip", "http://192.168.1.20/whip", "http://100.64.0.1/whip")  # fmt: skip


def test_ingests_on_the_servers_own_network_need_the_operators_leave() -> None:
    for url in PRIVATE_INGESTS:
        with pytest.raises(BadWhipUrl, match="--whip-private"):
            check_url(url)
        assert check_url(url, allow_private=True) == url
    assert check_url("http://8.8.8.8/whip") == "http://8.8.8.8/whip"  # a public address literal
    assert check_url("https://live.example.com/whip") == "https://live.example.com/whip"  # names: at connect time


async def test_names_that_resolve_into_the_servers_network_are_refused_at_connect_time() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(OSError, match="--whip-private"):
            await resolver.resolve("localhost", 8889)  # what any name pointing inside would meet
        assert [entry["host"] for entry in await resolver.resolve("8.8.8.8", 443)] == ["8.8.8.8"]
    finally:
        await resolver.close()


async def test_a_server_without_whip_private_refuses_a_local_ingest(tmp_path: Path) -> None:
    async with OutputServer(outputs_config(tmp_path, clip_seconds=0, whip_private=False)) as server:
        created = await running_session(server)
        path = f"/sessions/{created['session']}/outputs"
        status, answer = await call(server, "POST", path, created["tokens"]["controller"],
                                    json={"whip": "http://127.0.0.1:8889/live/whip"})  # fmt: skip
        assert status == 400 and "--whip-private" in answer["error"]["message"], answer


async def test_a_session_published_over_whip_reaches_the_ingest_and_its_resource_is_deleted_on_stop(
    tmp_path: Path,
) -> None:
    async with AiortcIngest() as ingest, OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        assert created["urls"]["outputs"].endswith(f"/sessions/{session}/outputs?token={controller}")
        status, output = await call(server, "POST", f"/sessions/{session}/outputs", controller,
                                    json={"whip": ingest.url, "token": "ingest-secret-42"})  # fmt: skip
        assert status == 201 and output["state"] == "connecting" and output["id"], output
        assert "ingest-secret-42" not in json.dumps(output)

        async def state() -> dict[str, Any]:
            status, listing = await call(server, "GET", f"/sessions/{session}/outputs", controller)
            assert status == 200
            return listing["outputs"][0]

        await wait_until(lambda: len(ingest.stamps) >= 45, 60, "45 stamped frames at the ingest")
        assert (await state())["state"] == "live"
        assert ingest.posts == ["Bearer ingest-secret-42"]
        assert ingest.stamps == sorted(ingest.stamps) and ingest.stamps[-1] - ingest.stamps[0] >= 30
        status, recording = await call(server, "GET", f"/sessions/{session}/recording", controller)
        assert status == 200 and recording["whip_outputs"][0]["id"] == output["id"]

        status, stopped = await call(server, "DELETE", f"/sessions/{session}/outputs/{output['id']}", controller)
        assert status == 200 and stopped["state"] == "stopped", stopped
        assert ingest.deletes == ["/whip/resource/1"]
        status, listing = await call(server, "GET", f"/sessions/{session}/outputs", controller)
        assert status == 200 and listing["outputs"] == []
        status, again = await call(server, "DELETE", f"/sessions/{session}/outputs/{output['id']}", controller)
        assert status == 404 and "error" in again


async def test_an_unreachable_ingest_retries_with_an_error_while_a_viewer_keeps_getting_frames(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        status, output = await call(server, "POST", f"/sessions/{session}/outputs", controller,
                                    json={"whip": free_port_url(), "token": "never-logged-token"})  # fmt: skip
        assert status == 201, output
        viewer = Client()
        try:
            await viewer.connect(server.url, session=session, role="viewer", token=created["tokens"]["viewer"])

            async def listed() -> dict[str, Any]:
                return (await call(server, "GET", f"/sessions/{session}/outputs", controller))[1]["outputs"][0]

            entry: dict[str, Any] = {}
            for _ in range(100):
                entry = await listed()
                if entry["state"] == "retrying" and entry["attempts"] >= 2:
                    break
                await asyncio.sleep(0.1)
            assert entry["state"] == "retrying" and entry["error"] and "Connect" in entry["error"], entry
            await viewer.wait_frames(30, timeout=60)
            assert server.hub.sessions[session].running
        finally:
            await viewer.close()
        assert "never-logged-token" not in caplog.text
        status, _ = await call(server, "DELETE", f"/sessions/{session}/outputs/{output['id']}", controller)
        assert status == 200


async def test_a_refused_post_is_retried_with_backoff_until_the_ingest_answers(tmp_path: Path) -> None:
    async with AiortcIngest(refuse=1) as ingest, OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        status, output = await call(server, "POST", f"/sessions/{session}/outputs", controller,
                                    json={"whip": ingest.url})  # fmt: skip
        assert status == 201, output
        seen: list[dict[str, Any]] = []
        for _ in range(200):
            entry = (await call(server, "GET", f"/sessions/{session}/outputs", controller))[1]["outputs"][0]
            seen.append(entry)
            if entry["state"] == "live":
                break
            await asyncio.sleep(0.05)
        retrying = [e for e in seen if e["state"] == "retrying"]
        assert retrying and "503" in retrying[0]["error"], seen[-3:]
        assert seen[-1]["state"] == "live" and seen[-1]["attempts"] == 2 and seen[-1]["error"] is None, seen[-1]
        assert ingest.posts == [None, None], "no token given: no Authorization header"
        await wait_until(lambda: ingest.frames >= 15, 60, "15 frames after the retry")


async def test_bad_requests_get_json_errors(tmp_path: Path) -> None:
    async with AiortcIngest() as ingest, OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        path = f"/sessions/{session}/outputs"
        for body in ({"whip": "rtmp://x/live"}, {"whip": "/relative"}, {}, {"whip": ingest.url, "token": 5},
                     {"whip": ingest.url, "extra": 1}):  # fmt: skip
            status, answer = await call(server, "POST", path, controller, json=body)
            assert status == 400 and answer["error"]["message"], (body, answer)
        status, answer = await call(server, "POST", path, None, json={"whip": ingest.url})
        assert status == 401 and "error" in answer
        status, answer = await call(server, "POST", path, created["tokens"]["viewer"], json={"whip": ingest.url})
        assert status == 403 and "error" in answer
        status, answer = await call(server, "POST", "/sessions/nosuchsession/outputs", controller,
                                    json={"whip": ingest.url})  # fmt: skip
        assert status in (401, 404) and "error" in answer
        status, answer = await call(server, "GET", "/sessions/nosuchsession/outputs", server.api_key)
        assert status == 404 and "error" in answer
        for _ in range(4):
            status, answer = await call(server, "POST", path, controller, json={"whip": ingest.url})
            assert status == 201, answer
        status, answer = await call(server, "POST", path, controller, json={"whip": ingest.url})
        assert status == 409 and "4" in answer["error"]["message"]
        assert server.hub.sessions[session].running, "the stream plays on"


class SwallowsOneCancel(WhipPublisher):
    """A connection attempt that swallows the first cancel, as asyncio.wait_for on Python 3.11 (and libraries
    built on it) can when the cancel races the wait it guards; that left ``stop`` waiting for good."""

    async def _publish(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)


async def test_stop_ends_a_publisher_even_when_its_connection_swallowed_the_cancel() -> None:
    publisher = SwallowsOneCancel("whip-test", "http://127.0.0.1:9/whip", None, lambda: None, allow_private=True)
    publisher.start()
    await asyncio.sleep(0.05)  # under way
    stopping = asyncio.ensure_future(publisher.stop())  # awaited apart: a timeout's cancel would reach the attempt
    done, _ = await asyncio.wait([stopping], timeout=20)
    if not done:
        stopping.cancel()
    assert done and publisher.state == "stopped", "stop() waited for good on an attempt that swallowed its cancel"


def gst_ready() -> str | None:
    """Why the GStreamer ingest cannot run here, or None."""
    if not Path("/usr/bin/python3").exists():
        return "no Debian python3"
    check = subprocess.run(["/usr/bin/python3", str(GST_INGEST), "--check"], capture_output=True, text=True)
    return None if check.returncode == 0 else (check.stdout + check.stderr).strip()[-200:] or "not installed"


async def test_gstreamer_webrtcbin_ingest_receives_15_fps_and_sees_the_delete(tmp_path: Path) -> None:
    reason = gst_ready()
    if reason:
        pytest.skip(f"needs Debian's GStreamer webrtcbin and python3-gi: {reason}")
    process = await asyncio.create_subprocess_exec(
        "/usr/bin/python3", str(GST_INGEST), "--frames", "40", "--seconds", "60", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
    async with OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        status, output = await call(server, "POST", f"/sessions/{session}/outputs", controller,
                                    json={"whip": ready["url"], "token": "gst-token"})  # fmt: skip
        assert status == 201, output
        report = json.loads(await asyncio.wait_for(process.stdout.readline(), 90))  # after its window
        status, stopped = await call(server, "DELETE", f"/sessions/{session}/outputs/{output['id']}", controller)
        assert status == 200 and stopped["state"] == "stopped"
        final = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
    await asyncio.wait_for(process.wait(), 30)
    print(f"GStreamer ingest: {report} {final}")
    assert report["authorization"] == "Bearer gst-token"
    assert report["frames"] >= 40, report  # the window ends at 40 frames, or at 60 s if the stream stopped
    assert report["pts_increasing"], report
    assert final["deleted"], final


async def test_a_connection_the_ingest_closes_is_published_again(tmp_path: Path) -> None:
    async with AiortcIngest() as ingest, OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        status, output = await call(server, "POST", f"/sessions/{session}/outputs", controller,
                                    json={"whip": ingest.url})  # fmt: skip
        assert status == 201, output
        await wait_until(lambda: ingest.frames >= 15, 60, "15 frames at the ingest")
        await ingest.peers[0].close()  # the ingest drops the publisher
        await wait_until(lambda: len(ingest.peers) >= 2, 60, "a second POST after the connection closed")
        before = ingest.frames
        await wait_until(lambda: ingest.frames >= before + 15, 60, "frames over the new connection")
        entry = (await call(server, "GET", f"/sessions/{session}/outputs", controller))[1]["outputs"][0]
        assert entry["state"] == "live" and entry["connections"] == 2, entry
        assert ingest.deletes == ["/whip/resource/1"], "the old resource is deleted before publishing again"
