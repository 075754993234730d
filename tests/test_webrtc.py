"""Real aiortc peers against the real signaling server over the host interface."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder

from longlive_rtc.rtc.hub import HubConfig

from .rtc_client import Client, Server, wait_until

pytestmark = pytest.mark.timeout(120)


def record_rtp_timestamps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the RTP timestamp of every frame the client decodes (decoded pts are rounded by the decoder)."""
    timestamps: list[int] = []
    original = Vp8Decoder.decode

    def decode(self, encoded_frame):
        timestamps.append(encoded_frame.timestamp)
        return original(self, encoded_frame)

    monkeypatch.setattr(Vp8Decoder, "decode", decode)
    return timestamps


async def test_controller_schedules_starts_and_receives_paced_video(monkeypatch: pytest.MonkeyPatch) -> None:
    rtp_timestamps = record_rtp_timestamps(monkeypatch)
    async with Server() as server:
        client = Client()
        try:
            await client.connect(server.url)
            state = await client.wait_event(lambda e: e["type"] == "state")
            assert state["data"]["status"] == "idle" and state["data"]["session"] == client.session
            for i, (t, prompt) in enumerate([(0, "a red fox"), (6, "a blue lake"), (12, "green aurora")]):
                client.send("schedule_prompt", f"s{i}", new_prompt=prompt, timestamp=t)
                assert (await client.reply_to(f"s{i}"))["type"] == "ack"
            client.send("start", "go")
            assert (await client.reply_to("go"))["type"] == "ack"
            await client.wait_frames(1)
            # video keeps flowing: progress over a generous window (the rate itself is a benchmark's: paced_stream.py)
            await client.wait_frames(60, timeout=60)  # past video frame 45, where the third prompt airs
            steps = {(b - a) % 2**32 for a, b in zip(rtp_timestamps, rtp_timestamps[1:], strict=False)}
            assert steps == {6000}, "RTP timestamps step by exactly 90000 / 15"
            decoded_steps = {b.pts - a.pts for a, b in zip(client.frames, client.frames[1:], strict=False)}
            assert decoded_steps <= {5999, 6000, 6001}  # the decoder rounds through its own time base
            frame = client.frames[-1]
            assert (frame.width, frame.height) == (832, 480)
            stamped = [f.stamp for f in client.frames if f.stamp is not None]
            assert len(stamped) >= 50
            by_index = {s.frame: s.prompt for s in stamped}
            for index, prompt in by_index.items():
                assert prompt == (0 if index < 21 else 1 if index < 45 else 2), (index, prompt)
            assert {0, 1, 2} <= set(by_index.values())
            indices = [s.frame for s in stamped]
            assert indices == sorted(indices), "frames arrive in order"
            timeline = [e for e in client.events if e["type"] in ("progress", "prompt_applied")]
            starts = [e["data"]["current_start_frame"] for e in timeline if e["type"] == "progress"]
            assert starts[:6] == [3, 6, 9, 12, 15, 18]
            assert [e["data"]["video_frame"] for e in timeline if e["type"] == "progress"][:3] == [9, 21, 33]
            applied = [(e["data"]["frame"], e["data"]["prompt"]) for e in timeline if e["type"] == "prompt_applied"]
            assert applied == [(0, "a red fox"), (6, "a blue lake"), (12, "green aurora")]
            for i, event in enumerate(timeline):  # each prompt_applied comes right before its block's progress
                if event["type"] == "prompt_applied":
                    after = timeline[i + 1]
                    assert after["type"] == "progress"
                    assert after["data"]["current_start_frame"] == event["data"]["frame"] + 3
        finally:
            await client.close()


async def test_fan_out_to_viewers_generates_each_block_once() -> None:
    async with Server() as server:
        controller, viewer, whep = Client(), Client(), Client()
        try:
            await controller.connect(server.url)
            await viewer.connect(server.url, session=controller.session, role="viewer")
            await whep.connect(server.url, session=controller.session, whep=True, data_channel=False)
            viewer.send("start", "v1")
            assert (await viewer.reply_to("v1"))["data"]["code"] == "forbidden"
            viewer.send("schedule_prompt", "v2", new_prompt="x", timestamp=0)
            assert (await viewer.reply_to("v2"))["data"]["code"] == "forbidden"
            controller.send("schedule_prompt", "c1", new_prompt="shared stream", timestamp=0)
            controller.send("start", "c2")
            assert (await controller.reply_to("c2"))["type"] == "ack"
            clients = (controller, viewer, whep)

            def seen() -> list[dict[int, np.ndarray]]:
                return [{f.stamp.frame: f.signature for f in c.frames if f.stamp} for c in clients]

            def common() -> range:  # the stamps every client's stream spans (not every one received)
                stamps = seen()
                return range(max(min(s, default=0) for s in stamps) + 1, min(max(s, default=0) for s in stamps) - 1)

            # progress, not a rate: frames keep coming however loaded the machine (generous timeout)
            await wait_until(lambda: all(seen()) and len(common()) >= 40, timeout=60, what="40 frames for all")
            assert len(server.generators) == 1, "one generator for the whole session"
            progress = [e for e in viewer.events if e["type"] == "progress"]
            assert progress, "viewers receive the session's events"
            # the server's own count, read after the generator's (no event delivery lag): each block made once
            blocks_made = server.generators[0].blocks
            blocks_reported = server.hub.get(controller.session).session.current_start_frame // 3
            assert blocks_made <= blocks_reported + 2  # + the block in flight and one buffered
            stamps, span = seen(), set(common())
            for received in stamps:
                # a viewer track skips the frames its encoder cannot take (more on a loaded machine); frames split
                # between viewers would leave each at most half of them and no two consecutive ones
                assert len(span & set(received)) >= 0.5 * len(span), (len(span & set(received)), len(span))
                assert sum(i + 1 in received for i in span & set(received)) >= 10, "consecutive frames, each viewer"
            for index in span & set(stamps[0]) & set(stamps[1]) & set(stamps[2]):
                for other in stamps[1:]:  # the same picture under each stamp, up to codec noise
                    assert np.abs(stamps[0][index] - other[index]).mean() < 6.0, index
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{server.url}/sessions") as r:
                    summary = (await r.json())["sessions"][0]
                assert (summary["controllers"], summary["viewers"]) == (1, 2)
                async with http.delete(server.url + whep.location) as r:
                    assert r.status == 204
                async with http.delete(server.url + whep.location) as r:
                    assert r.status == 404
            assert len(server.hub.get(controller.session).peers) == 2
        finally:
            for client in (controller, viewer, whep):
                await client.close()


@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_both_codecs_negotiate_and_decode(codec: str) -> None:
    async with Server(HubConfig(codec=codec)) as server:
        client = Client()
        try:
            await client.connect(server.url)
            assert client.codec_used == {"vp8": "video/VP8", "h264": "video/H264"}[codec]
            client.send("schedule_prompt", new_prompt="codec check", timestamp=0)
            client.send("start")
            deadline = time.monotonic() + 15
            while sum(1 for f in client.frames if f.stamp) < 15 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stamped = [f.stamp for f in client.frames if f.stamp]
            assert len(stamped) >= 15, "stamps survive the codec"
            assert all(s.prompt == 0 for s in stamped)
        finally:
            await client.close()


async def test_http_errors_leave_the_server_serving() -> None:
    async with Server(HubConfig(max_sessions=1)) as server, aiohttp.ClientSession() as http:
        url = server.url

        async def status_of(method: str, path: str, **kwargs) -> tuple[int, dict]:
            async with http.request(method, url + path, **kwargs) as r:
                body = await r.json() if r.content_type == "application/json" else {}
                return r.status, body

        as_json = {"Content-Type": "application/json"}
        status, body = await status_of("POST", "/offer", data="{nope", headers=as_json)
        assert status == 400 and "JSON" in body["error"]["message"]
        status, body = await status_of("POST", "/offer", data="[" * 10_000, headers=as_json)
        assert status == 400 and "JSON" in body["error"]["message"]
        status, body = await status_of("POST", "/offer", data='{"sdp": "v=0"}')  # text/plain: a cross-site form
        assert status == 415
        status, body = await status_of("POST", "/offer", json={"sdp": "v=0\r\nthis is not sdp", "type": "offer"})
        assert status == 400 and "SDP" in body["error"]["message"]
        status, body = await status_of("POST", "/offer", json={"sdp": "v=0\r\n", "type": "answer"})
        assert status == 400
        status, body = await status_of("POST", "/offer", json=[1, 2])
        assert status == 400
        status, body = await status_of("POST", "/offer", json={"sdp": "v=0", "session": "nope"})
        assert status == 404
        status, _ = await status_of("POST", "/whep/nope", data="v=0", headers={"Content-Type": "application/sdp"})
        assert status == 404
        status, _ = await status_of("POST", "/whep/nope", data="v=0", headers={"Content-Type": "text/plain"})
        assert status == 415
        status, _ = await status_of("GET", "/sessions/nope")
        assert status == 404
        status, _ = await status_of("POST", "/sessions/nope/commands", json={"type": "start"})
        assert status == 404
        status, body = await status_of("POST", "/offer", data="x" * (300 * 1024), headers=as_json)
        assert status == 413 and "limit" in body["error"]["message"]
        async with http.options(url + "/whep/any") as r:
            assert r.status == 204 and r.headers["Accept-Post"] == "application/sdp"

        client = Client()
        try:
            await client.connect(url)  # takes the only slot
            second = Client()
            async with http.post(url + "/offer", json={"sdp": (await _offer(second)), "type": "offer"}) as r:
                assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
            await second.pc.close()
            cmd = f"/sessions/{client.session}/commands"
            status, body = await status_of("POST", cmd, json={"type": "start", "id": 1})
            assert status == 409 and body[0]["data"]["code"] == "no_initial_prompt" and body[0]["id"] == 1
            status, body = await status_of("POST", cmd, data="{bad", headers=as_json)
            assert status == 400 and body[0]["data"]["code"] == "bad_json"
            status, body = await status_of("POST", cmd, json={"type": "schedule_prompt", "data": {"new_prompt": "x"}})
            assert status == 400 and body[0]["data"]["code"] == "invalid_field"
            status, body = await status_of("POST", cmd, json={"type": "dance"})
            assert status == 400 and body[0]["data"]["code"] == "unknown_command"
            status, body = await status_of(
                "POST", cmd, json={"type": "schedule_prompt", "data": {"new_prompt": "via http", "timestamp": 0}}
            )
            assert status == 200 and body[0]["type"] == "ack"
            status, body = await status_of("POST", cmd, json={"type": "get_state"})
            assert [e["type"] for e in body] == ["ack", "state"]
            assert body[1]["data"]["scheduled"][0]["prompt"] == "via http"
            await client.wait_event(lambda e: e["type"] == "schedule_changed")  # the broadcast reached the peer
            status, body = await status_of("GET", f"/sessions/{client.session}")
            assert status == 200 and body["status"] == "idle" and body["frames_skipped"] == 0
            status, body = await status_of("GET", "/health")
            assert body["status"] == "ok" and body["peers"] == 1
            status, body = await status_of("GET", "/ice-servers")
            assert body == {"iceServers": []}
            async with http.get(url + "/metrics") as r:
                text = await r.text()
                assert "longlive_peers 1" in text
                assert f'longlive_frames_skipped_total{{session="{client.session}"}} 0' in text
            client.send("get_state", "still-alive")
            assert (await client.reply_to("still-alive"))["type"] == "ack"
        finally:
            await client.close()


async def _offer(client: Client) -> str:
    client.pc.addTransceiver("video", direction="recvonly")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    return client.pc.localDescription.sdp


async def test_a_session_outlives_its_peers_until_it_has_been_idle_long_enough() -> None:
    async with Server(HubConfig(max_sessions=2, session_idle=1.5)) as server:
        client = Client()
        await client.connect(server.url)
        session_id = client.session
        assert server.hub.peer_count == 1
        await client.close()
        deadline = time.monotonic() + 10
        while server.hub.peer_count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.hub.peer_count == 0
        assert session_id in server.hub.sessions, "the session outlives its controller"
        rejoin = Client()
        await rejoin.connect(server.url, session=session_id)  # a reload reconnects to the same stream
        state = await rejoin.wait_event(lambda e: e["type"] == "state")
        assert state["data"]["session"] == session_id
        await rejoin.close()
        while session_id in server.hub.sessions and time.monotonic() < deadline + 5:
            await asyncio.sleep(0.1)
        assert session_id not in server.hub.sessions, "an idle session with no peer is freed"
        assert server.hub.peer_count == 0


async def test_a_controller_recreates_a_gone_session_under_its_id() -> None:
    async with Server(HubConfig(max_sessions=2)) as server, aiohttp.ClientSession() as http:
        client = Client()
        try:
            await client.connect(server.url, session="after-a-restart", create=True)
            assert client.session == "after-a-restart" and "after-a-restart" in server.hub.sessions
            state = await client.wait_event(lambda e: e["type"] == "state")
            assert state["data"]["session"] == "after-a-restart"
            for body, status in [
                ({"session": "after-a-restart", "create": True, "role": "viewer"}, 200),  # exists: a plain join
                ({"session": "gone-again", "create": True, "role": "viewer"}, 400),  # viewers cannot create
                ({"session": "no", "create": True}, 400),  # not a valid id
                ({"session": "bad id!", "create": True}, 400),
                ({"session": "gone-again", "create": "yes"}, 400),
            ]:
                offer = Client()
                sdp = await _offer(offer)
                async with http.post(server.url + "/offer", json={"sdp": sdp, "type": "offer", **body}) as r:
                    assert r.status == status, (body, await r.text())
                await offer.pc.close()
            assert set(server.hub.sessions) == {"after-a-restart"}
        finally:
            await client.close()


async def test_a_client_that_never_connects_is_closed_and_its_session_freed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="longlive_rtc.rtc.hub")
    async with Server(HubConfig(connect_timeout=1.0)) as server, aiohttp.ClientSession() as http:
        vanished = Client()
        async with http.post(server.url + "/offer", json={"sdp": await _offer(vanished), "type": "offer"}) as r:
            assert r.status == 200  # ... and the client never applies the answer
            session = (await r.json())["session"]
        await vanished.pc.close()
        assert server.hub.peer_count == 1
        deadline = time.monotonic() + 10
        while (server.hub.peer_count or session in server.hub.sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.hub.peer_count == 0 and session not in server.hub.sessions
    said = [r.getMessage() for r in caplog.records if "did not connect" in r.getMessage()]
    assert len(said) == 1 and session in said[0] and "TURN server" in said[0]  # what happened, and what to do


async def test_a_peer_deleted_before_it_connected_is_not_reported_as_unconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="longlive_rtc.rtc.hub")
    async with Server(HubConfig(connect_timeout=0.5)) as server, aiohttp.ClientSession() as http:
        offer = Client()
        async with http.post(server.url + "/offer", json={"sdp": await _offer(offer), "type": "offer"}) as r:
            answered = await r.json()
        kept = server.hub.peer(answered["session"], answered["peer"])  # held: the timer still finds it
        await kept.close()  # as a DELETE of its resource does
        await offer.pc.close()
        await asyncio.sleep(1.5)  # past connect_timeout
        assert kept.closed and server.hub.peer_count == 0
    assert not [r for r in caplog.records if "did not connect" in r.getMessage()]


def test_a_state_too_large_for_one_message_is_truncated_and_flagged() -> None:
    from longlive_rtc.protocol import Event
    from longlive_rtc.rtc.outbox import MAX_EVENT_BYTES

    scheduled = [{"timestamp": t, "prompt": "é" * 2000, "frame": t} for t in range(300)]
    text = Event("state", {"status": "idle", "scheduled": scheduled}).fit_json(MAX_EVENT_BYTES)
    assert len(text.encode()) <= MAX_EVENT_BYTES
    data = json.loads(text)["data"]
    assert data["scheduled_truncated"] is True
    assert 0 < len(data["scheduled"]) < 300 and data["scheduled"] == scheduled[: len(data["scheduled"])]
    small = Event("state", {"status": "idle", "scheduled": scheduled[:3]})
    assert small.fit_json(MAX_EVENT_BYTES) == small.to_json()  # events that fit go out unchanged
