"""Recording, clips and live MPEG-TS over real HTTP on a token-mode server, read back by ffprobe/ffmpeg.

The recording's JSON is replayed with ``longlive-rtc generate``: the same prompts at the same frames
(the stamps of both files) and the same pictures. Bad requests get JSON errors and the stream plays on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from longlive_rtc.outputs.manager import OutputsConfig
from longlive_rtc.rtc.hub import HubConfig
from signaling.app import create_app
from signaling.auth import Auth
from signaling.outputs import OUTPUTS_KEY

from .outputs_support import GEOMETRY, ffprobe, needs_ffprobe, stamps
from .rtc_client import Server, wait_until

pytestmark = [pytest.mark.timeout(180), needs_ffprobe]

API_KEY = "outputs-api-key-0123456789"
PROMPTS = [{"timestamp": 0, "prompt": "a red fox in the snow"}, {"timestamp": 9, "prompt": "a blue ocean at night"}]


class OutputServer(Server):
    """The test server with the outputs mounted."""

    def __init__(self, outputs: OutputsConfig, **kwargs: Any) -> None:
        super().__init__(HubConfig(max_sessions=2), GEOMETRY, auth=Auth("token", api_key=API_KEY), **kwargs)
        self.outputs = outputs

    async def __aenter__(self) -> OutputServer:
        app = create_app(self.hub, self.auth, limiter=self.limiter, outputs=self.outputs)
        self.runner = web.AppRunner(app, **self.http_limits)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self


def outputs_config(tmp_path: Path, **overrides: Any) -> OutputsConfig:
    """The outputs of a test server: its WHIP ingests run beside it, on 127.0.0.1 (``--whip-private``)."""
    values = {"recordings_dir": tmp_path / "recordings", "quota": 100 << 20, "clip_seconds": 10.0,
              "bitrate": 1_000_000, "min_free": 0, "whip_private": True, **overrides}  # fmt: skip
    return OutputsConfig(**values)


async def call(server: Server, method: str, path: str, token: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, headers=headers,
                                                             **kwargs) as response:  # fmt: skip
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.read()


async def running_session(server: Server, schedule: list[dict] = PROMPTS, seed: int = 7) -> dict:
    status, created = await call(server, "POST", "/sessions", API_KEY,
                                 json={"schedule": schedule, "seed": seed, "start": True})  # fmt: skip
    assert status == 201, created
    return created


def live(server: Server, session: str):
    return server.hub.sessions[session]


async def frames_on_air(server: Server, session: str, count: int) -> None:
    target = live(server, session).clock.frames_sent + count
    await wait_until(lambda: live(server, session).clock.frames_sent >= target, 60, f"{count} more frames on air")


def replay(document_path: Path, out: Path) -> Path:
    """Render a recording's JSON with ``longlive-rtc generate``, as its ``replay`` line says."""
    document = json.loads(document_path.read_text())
    settings = document["settings"]
    command = [sys.executable, "-m", "longlive_rtc.cli", "generate", "--schedule", str(document_path),
               "--frames", str(document["frames"]), "--seed", str(document["seed"]),
               "--generator", settings["generator"], "--width", str(settings["width"]),
               "--height", str(settings["height"]), "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return out


def luma(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray").astype(np.int16) for frame in container.decode(video=0)]


async def test_a_recording_over_http_is_a_15_fps_mp4_whose_json_replays_the_same_prompts_at_the_same_frames(
    tmp_path: Path,
) -> None:
    async with OutputServer(outputs_config(tmp_path)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        await frames_on_air(server, session, 20)
        status, started = await call(server, "POST", f"/sessions/{session}/recording", controller)
        assert status == 201 and started["status"] == "recording", started
        await frames_on_air(server, session, 15)
        # a prompt scheduled late (its timestamp long past): it applies at the next block, and the JSON says where
        late = {"type": "schedule_prompt", "data": {"new_prompt": "a green forest in the rain", "timestamp": 3}}
        status, replies = await call(server, "POST", f"/sessions/{session}/commands", controller, json=late)
        assert status == 200, replies
        await frames_on_air(server, session, 45)
        status, stopped = await call(server, "DELETE", f"/sessions/{session}/recording", controller)
        assert status == 200 and stopped["status"] == "finished" and stopped["reason"] == "stopped", stopped
        assert live(server, session).running, "the stream plays on"

        status, listing = await call(server, "GET", f"/sessions/{session}/recordings", controller)
        assert status == 200 and [e["name"] for e in listing["recordings"]] == [stopped["name"]]
        entry = listing["recordings"][0]
        status, mp4 = await call(server, "GET", entry["url"], controller)
        assert status == 200 and len(mp4) == entry["bytes"]
        status, document = await call(server, "GET", entry["json"], controller)
        assert status == 200
    recording, sidecar = tmp_path / "r.mp4", tmp_path / "r.json"
    recording.write_bytes(mp4)
    sidecar.write_text(json.dumps(document))

    probe = ffprobe(recording)
    assert probe["codec_name"] == "h264" and (probe["width"], probe["height"]) == (GEOMETRY.width, GEOMETRY.height)
    assert probe["r_frame_rate"] == "15/1" and probe["nb_read_frames"] == stopped["frames"] >= 60
    assert abs(float(probe["duration"]) - stopped["frames"] / 15) < 0.01, "on-air timing: 1/15 s a frame"

    assert document["seed"] == 7 and document["schedule"][:2] == [PROMPTS[0], {**PROMPTS[1], "timestamp": 9}]
    late_entry = document["schedule"][2]
    assert late_entry["prompt"] == "a green forest in the rain" and late_entry["timestamp"] > 3
    assert late_entry["timestamp"] % GEOMETRY.frames_per_block == 0
    replayed = replay(sidecar, tmp_path / "replay.mp4")

    shown, rendered = stamps(recording), stamps(replayed)
    assert all(stamp is not None for stamp in shown) and all(stamp is not None for stamp in rendered)
    assert shown[-1].frame == document["video_frames"]["last"] < len(rendered)
    switches = {stamp.prompt for stamp in shown}
    assert len(switches) >= 2, "the recording spans a prompt switch"
    for stamp in shown:  # the same prompt at the same frame
        assert rendered[stamp.frame].prompt == stamp.prompt, f"video frame {stamp.frame}"
    recorded, replay_luma = luma(recording), luma(replayed)
    for picture, stamp in list(zip(recorded, shown, strict=True))[::10]:  # the same pictures, codec noise aside
        assert np.abs(picture - replay_luma[stamp.frame]).mean() < 6.0, f"video frame {stamp.frame}"


async def test_bad_output_requests_get_json_errors_and_the_stream_plays_on(tmp_path: Path) -> None:
    async with OutputServer(outputs_config(tmp_path, quota=400_000)) as server:
        created = await running_session(server)
        session, tokens = created["session"], created["tokens"]
        base = f"/sessions/{session}"
        before = live(server, session).clock.frames_sent

        async def refused(method: str, path: str, token: str | None, expect: int, **kwargs: Any) -> dict:
            status, body = await call(server, method, path, token, **kwargs)
            assert status == expect and isinstance(body, dict) and body["error"]["message"], (method, path, body)
            return body["error"]

        await refused("POST", "/sessions/nope-nope/recording", API_KEY, 404)
        await refused("POST", "/sessions/nope-nope/clips", API_KEY, 404, json={"seconds": 2})
        await refused("GET", "/sessions/nope-nope/stream.ts", API_KEY, 404)
        await refused("GET", "/sessions/nope-nope/recordings", API_KEY, 404)
        await refused("POST", f"{base}/recording", None, 401)
        await refused("GET", f"{base}/stream.ts", None, 401)
        await refused("GET", f"{base}/recordings", None, 401)
        await refused("POST", f"{base}/recording", tokens["viewer"], 403)
        await refused("POST", f"{base}/clips", tokens["viewer"], 403, json={"seconds": 2})
        await refused("GET", f"{base}/recordings", tokens["viewer"], 403)
        await refused("DELETE", f"{base}/recording", tokens["controller"], 409)
        for bad in (0, -1, 11, "3", True, None, [], 1e300):
            error = await refused("POST", f"{base}/clips", tokens["controller"], 400, json={"seconds": bad})
            assert "'seconds'" in error["message"]
        await refused("POST", f"{base}/clips", tokens["controller"], 400,
                      data="{\"seconds\": NaN}", headers={"Content-Type": "application/json"})  # fmt: skip
        await refused("POST", f"{base}/clips", tokens["controller"], 400, json={"seconds": 2, "x": 1})
        await refused("POST", f"{base}/clips", tokens["controller"], 415, data="seconds=2")
        await refused("GET", f"{base}/recordings/../../etc/passwd", tokens["controller"], 404)
        await refused("GET", f"{base}/recordings/rec-20260101T000000Z-abcdef.mp4", tokens["controller"], 404)

        status, started = await call(server, "POST", f"{base}/recording", tokens["controller"])
        assert status == 201
        await refused("POST", f"{base}/recording", tokens["controller"], 409)  # one at a time
        await wait_until(lambda: server.hub.sessions[session] and _ended(server, session), 60, "the quota to stop it")
        status, state = await call(server, "GET", f"{base}/recording", tokens["controller"])
        last = state["last_recording"]
        assert last["reason"] == "quota" and "quota" in last["message"], last
        full = await refused("POST", f"{base}/recording", tokens["controller"], 507)
        assert full["reason"] == "quota" and "delete recordings" in full["message"]
        status, mp4 = await call(server, "GET", last["url"], tokens["controller"])
        (tmp_path / "cut.mp4").write_bytes(mp4)
        assert ffprobe(tmp_path / "cut.mp4")["nb_read_frames"] == last["frames"] > 0, "the part written is valid"

        status, _ = await call(server, "DELETE", last["url"], tokens["controller"])
        assert status == 204
        status, listing = await call(server, "GET", f"{base}/recordings", tokens["controller"])
        assert listing["recordings"] == [] and listing["storage"]["used"] == 0
        status, again = await call(server, "POST", f"{base}/recording", tokens["controller"])
        assert status == 201, "room again once deleted"
        await refused("DELETE", again["url"], tokens["controller"], 409)  # not while it is being written
        assert live(server, session).running and live(server, session).clock.frames_sent > before


def _ended(server: Server, session: str) -> bool:
    app = server.runner.app
    recording = app[OUTPUTS_KEY].sessions[session].recording
    return recording is not None and recording.done


async def test_a_recording_starting_on_a_slow_disk_leaves_the_stream_on_air_and_a_second_start_waits_its_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating a recording's files takes the disk's time, not the event loop's (every stream's clock)."""
    from longlive_rtc.outputs.store import Store

    on_air: list[int] = []
    real_stem = Store.new_stem

    def slow_stem(store: Store, session_id: str, kind: str) -> Path:  # a disk taking 1.5 s to create a file
        on_air.append(live(server, session).clock.frames_sent)
        time.sleep(1.5)
        on_air.append(live(server, session).clock.frames_sent)
        return real_stem(store, session_id, kind)

    monkeypatch.setattr(Store, "new_stem", slow_stem)
    async with OutputServer(outputs_config(tmp_path)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        await frames_on_air(server, session, 5)
        path = f"/sessions/{session}/recording"
        first = asyncio.create_task(call(server, "POST", path, controller))
        await wait_until(lambda: len(on_air) >= 1, 30, "the first start to reach the disk")
        status, second = await call(server, "POST", path, controller)
        assert status == 409 and "already starting" in second["error"]["message"], second
        status, started = await first
        assert status == 201 and started["status"] == "recording", started
        assert on_air[1] - on_air[0] >= 3, f"frames went on air while the disk was busy: {on_air}"
        status, listing = await call(server, "GET", f"/sessions/{session}/recordings", controller)
        assert status == 200 and [e["name"] for e in listing["recordings"]] == [started["name"]], listing
        assert listing["recordings"][0]["status"] == "recording"
        await frames_on_air(server, session, 20)
        status, stopped = await call(server, "DELETE", path, controller)
        assert status == 200 and stopped["reason"] == "stopped" and stopped["frames"] > 0, stopped
        status, _ = await call(server, "DELETE", f"/sessions/{session}/recordings/{started['name']}", controller)
        assert status == 204
        status, listing = await call(server, "GET", f"/sessions/{session}/recordings", controller)
        assert listing["recordings"] == [] and listing["storage"]["used"] == 0, listing


async def test_the_last_stream_reader_leaving_while_a_recording_starts_keeps_the_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With clips off the encoder runs only while something needs it: a recording being created does."""
    from longlive_rtc.outputs.store import Store

    entered, leave = asyncio.Event(), asyncio.Event()
    real_stem = Store.new_stem
    loop = asyncio.get_running_loop()

    def slow_stem(store: Store, session_id: str, kind: str) -> Path:
        loop.call_soon_threadsafe(entered.set)
        time.sleep(1.0)  # the reader leaves meanwhile
        return real_stem(store, session_id, kind)

    monkeypatch.setattr(Store, "new_stem", slow_stem)
    async with OutputServer(outputs_config(tmp_path, clip_seconds=0)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]

        async def read_until_told() -> None:
            url = f"{server.url}/sessions/{session}/stream.ts?token={controller}"
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200
                await response.content.readany()
                await leave.wait()

        reader = asyncio.create_task(read_until_told())
        outputs = server.runner.app[OUTPUTS_KEY].sessions
        await wait_until(lambda: session in outputs and outputs[session].ts and outputs[session].ts.readers, 30,
                         "the reader connected")  # fmt: skip
        starting = asyncio.create_task(call(server, "POST", f"/sessions/{session}/recording", controller))
        await asyncio.wait_for(entered.wait(), 30)
        leave.set()
        await reader
        await wait_until(lambda: not outputs[session].ts or not outputs[session].ts.readers, 30, "the reader gone")
        status, started = await starting
        assert status == 201, started
        await frames_on_air(server, session, 30)
        status, stopped = await call(server, "DELETE", f"/sessions/{session}/recording", controller)
        assert status == 200 and stopped["reason"] == "stopped" and stopped["frames"] > 0, stopped


async def test_a_clip_is_the_last_seconds_asked_for(tmp_path: Path) -> None:
    async with OutputServer(outputs_config(tmp_path)) as server:
        created = await running_session(server)
        session, controller = created["session"], created["tokens"]["controller"]
        await frames_on_air(server, session, 60)
        status, clip = await call(server, "POST", f"/sessions/{session}/clips", controller, json={"seconds": 2})
        assert status == 201 and clip["kind"] == "clip", clip
        status, mp4 = await call(server, "GET", clip["url"], controller)
        (tmp_path / "clip.mp4").write_bytes(mp4)
    probe = ffprobe(tmp_path / "clip.mp4")
    assert probe["r_frame_rate"] == "15/1" and probe["nb_read_frames"] == clip["frames"]
    assert abs(float(probe["duration"]) - 2.0) <= 0.55, probe  # from the keyframe nearest 2 s back (one a second)


async def test_live_ts_keeps_arriving_for_many_readers_and_a_reader_that_stops_reading_is_dropped(
    tmp_path: Path,
) -> None:
    async with OutputServer(outputs_config(tmp_path, clip_seconds=0, ts_max_lag=1.0)) as server:
        created = await running_session(server)
        session, viewer = created["session"], created["tokens"]["viewer"]
        url = f"{server.url}/sessions/{session}/stream.ts?token={viewer}"
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = f"GET /sessions/{session}/stream.ts?token={viewer} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        stalled.sendall(request.encode())
        arrivals: list[list[float]] = [[], []]
        data: list[bytearray] = [bytearray(), bytearray()]

        async def read(i: int) -> None:
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                assert response.status == 200 and response.content_type == "video/mp2t"
                started = time.monotonic()
                async for chunk in response.content.iter_any():
                    data[i].extend(chunk)
                    arrivals[i].append(time.monotonic() - started)
                    if arrivals[i][-1] > 6.0:
                        return

        await asyncio.wait_for(asyncio.gather(read(0), read(1)), 60)
        outputs = server.runner.app[OUTPUTS_KEY].sessions[session]
        await wait_until(lambda: outputs.mpegts_dropped >= 1, 60, "the stalled reader dropped")
        status, report = await call(server, "GET", f"/sessions/{session}/recording", created["tokens"]["controller"])
        assert status == 200 and report["mpegts_dropped"] == 1, report
        assert outputs.encoder is None or outputs.encoder.sinks <= 1
        stalled.close()
        assert live(server, session).running
    for i in range(2):
        for start in (0, 2, 4):  # frames keep arriving: something in every 2 s of the 6
            assert any(start <= t < start + 2 for t in arrivals[i]), f"reader {i}: nothing in {start}..{start + 2} s"
        (tmp_path / f"{i}.ts").write_bytes(data[i])
        probe = ffprobe(tmp_path / f"{i}.ts")
        assert probe["codec_name"] == "h264" and probe["r_frame_rate"] == "15/1" and probe["nb_read_frames"] >= 30
        frames = [s.frame for s in stamps(tmp_path / f"{i}.ts") if s is not None]
        assert frames == sorted(frames) and frames[-1] - frames[0] >= 30
