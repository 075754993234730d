"""The Reactor local-mode routes over real HTTP with real aiortc peers that call them as the JS SDK does.

The browser test runs the published SDK end to end; these cover what it cannot reach: the descriptor's
shape, versions, errors and status codes, one Reactor session at a time, reconnecting with ``PUT``,
access in token mode, CORS and capacity.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from longlive_rtc import protocol
from longlive_rtc.cli import main
from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth
from signaling.reactor import REACTOR_KEY

from .rtc_client import Server, wait_until

#: What the SDK sends on every coordinator request, and on every transport request.
API_HEADERS = {"Reactor-API-Version": "1", "Reactor-API-Accept-Version": "1"}
WEBRTC_HEADERS = {"Authorization": "Bearer local", "Reactor-WebRTC-Version": "1.0"}
ORIGIN = "http://localhost:5173"


class SdkPeer:
    """An aiortc peer doing what the SDK's WebRTCTransportClient does: recvonly video, a ``data`` channel."""

    def __init__(self, http: aiohttp.ClientSession, base: str, session_id: str) -> None:
        self.http, self.session_id = http, session_id
        self.transport = f"{base}/sessions/{session_id}/transport/webrtc"
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.messages: list[dict] = []

    async def connect(self, method: str = "POST") -> None:
        async with self.http.get(f"{self.transport}/ice_servers", headers=WEBRTC_HEADERS) as r:
            assert r.status == 200 and await r.json() == {"ice_servers": []}
        video = self.pc.addTransceiver("video", direction="recvonly")
        self.channel = self.pc.createDataChannel("data")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", lambda text: self.messages.append(json.loads(text)))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {
            "sdp_offer": self.pc.localDescription.sdp,
            "client_info": {"sdk_version": "2.9.0", "sdk_type": "js"},
            "track_mapping": [{"name": "main_video", "kind": "video", "direction": "recvonly", "mid": video.mid}],
        }
        async with self.http.request(method, f"{self.transport}/sdp_params", json=body, headers=WEBRTC_HEADERS) as r:
            assert r.status == 202, await r.text()
        for _ in range(6):
            async with self.http.get(f"{self.transport}/sdp_params", headers=WEBRTC_HEADERS) as r:
                if r.status == 200:
                    answer = (await r.json())["sdp_answer"]
                    break
                assert r.status == 202, await r.text()
            await asyncio.sleep(0.2)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(opened.wait(), 10)

    def send(self, kind: str, data: dict | None = None, scope: str = "application") -> None:
        self.channel.send(json.dumps({"scope": scope, "data": {"type": kind, "data": data or {}}}))

    async def wait(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if predicate(message):
                    return message
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no matching message in {self.messages[-4:]}")


async def start(http: aiohttp.ClientSession, server: Server, body: object = None, status: int = 200) -> dict:
    async with http.post(f"{server.url}/start_session", json=body or {}, headers=API_HEADERS) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def test_start_session_answers_the_sdks_session_response() -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        described = await start(http, server, {"extra_args": {"seed": 42}})
        assert set(described) >= {"session_id", "state", "cluster", "model", "server_info", "selected_transport"}
        assert isinstance(described["state"], str) and described["state"] not in ("CLOSED", "INACTIVE")
        assert described["model"]["name"] == "longlive" and isinstance(described["server_info"]["server_version"], str)
        assert described["selected_transport"] == {"protocol": "webrtc", "version": "1.0"}
        capabilities = described["capabilities"]
        assert capabilities["tracks"] == [{"name": "main_video", "kind": "video", "direction": "recvonly"}]
        assert capabilities["emission_fps"] == 15 and isinstance(capabilities["protocol_version"], str)
        assert [c["name"] for c in capabilities["commands"]] == list(protocol.COMMANDS)
        assert all(
            isinstance(c["description"], str) and isinstance(c["schema"], dict) for c in capabilities["commands"]
        )
        live = server.hub.get(described["session_id"])
        assert live.session.seed == 42 and described["urls"]["viewer"].endswith(f"/view/{live.id}")
        async with http.get(f"{server.url}/session", headers=API_HEADERS) as r:
            assert r.status == 200 and (await r.json())["session_id"] == live.id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"extra_args": {"prompt": "x"}}, "unknown extra_args"),
        ({"extra_args": {"seed": -1}}, "'seed' must be in"),
        ({"extra_args": {"codec": "av1"}}, "'codec' must be one of"),
        ({"extra_args": []}, "'extra_args' must be an object"),
    ],
)
async def test_start_session_refuses_bad_extra_args(body: dict, message: str) -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        refused = await start(http, server, body, status=400)
        assert message in refused["error"]["message"] and not server.hub.sessions


async def test_an_sdk_peer_streams_commands_and_reconnects_with_put() -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        session_id = (await start(http, server))["session_id"]
        first = SdkPeer(http, server.url, session_id)
        await first.connect()
        first.send("schedule_prompt", {"new_prompt": "a fox", "timestamp": 0})
        first.send("start")
        progress = await first.wait(lambda m: m["data"]["type"] == "progress")
        assert progress["scope"] == "application" and progress["data"]["data"]["current_start_frame"] == 3
        # reconnect as the SDK's reconnect() does: a fresh peer, its offer PUT; the old peer is closed
        second = SdkPeer(http, server.url, session_id)
        await second.connect("PUT")
        live = server.hub.get(session_id)
        await wait_until(lambda: len(live.peers) == 1)
        second.send("get_state")
        state = await second.wait(lambda m: m["data"]["type"] == "state" and m["data"]["data"]["status"] == "running")
        assert state["data"]["data"]["current_start_frame"] >= 3  # the same stream went on
        await first.pc.close()
        await second.pc.close()


async def test_a_new_start_ends_the_previous_reactor_session_and_stop_frees_it() -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        other = server.hub.create_session("not-reactor").id  # sessions of our own API are left alone
        old = (await start(http, server))["session_id"]
        peer = SdkPeer(http, server.url, old)
        await peer.connect()
        new = (await start(http, server))["session_id"]
        assert new != old and set(server.hub.sessions) == {other, new}
        await wait_until(lambda: peer.pc.connectionState == "closed" or peer.channel.readyState == "closed")
        async with http.get(f"{server.url}/sessions/{old}/transport/webrtc/sdp_params", headers=WEBRTC_HEADERS) as r:
            assert r.status == 404
        async with http.post(f"{server.url}/stop_session", headers=API_HEADERS) as r:
            assert r.status == 200 and (await r.json()) == {"stopped": new}
        assert set(server.hub.sessions) == {other}
        async with http.post(f"{server.url}/stop_session", headers=API_HEADERS) as r:
            assert r.status == 409
        async with http.get(f"{server.url}/session", headers=API_HEADERS) as r:
            assert r.status == 404
        await peer.pc.close()


async def test_transport_errors_and_versions() -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        session_id = (await start(http, server))["session_id"]
        transport = f"{server.url}/sessions/{session_id}/transport/webrtc"
        async with http.get(f"{transport}/sdp_params", headers=WEBRTC_HEADERS) as r:
            assert r.status == 404 and "POST sdp_params first" in (await r.json())["error"]["message"]
        async with http.get(f"{transport}/ice_servers", headers={"Reactor-WebRTC-Version": "2.0"}) as r:
            assert r.status == 501
        async with http.post(f"{server.url}/start_session", json={}, headers={"Reactor-API-Version": "2"}) as r:
            assert r.status == 501
        async with http.get(f"{server.url}/sessions/nope-nope/transport/webrtc/ice_servers") as r:
            assert r.status == 404
        bad_offers = [
            ({"track_mapping": []}, 400, "'sdp_offer' must be"),
            ({"sdp_offer": "v=0\r\nbogus"}, 400, "malformed SDP"),
            ({"sdp_offer": "v=0", "track_mapping": [{"name": "webcam"}]}, 400, "unknown tracks"),
            ({"sdp_offer": "v=0", "track_mapping": "main_video"}, 400, "must be a list"),
        ]
        for body, status, message in bad_offers:
            async with http.post(f"{transport}/sdp_params", json=body, headers=WEBRTC_HEADERS) as r:
                assert r.status == status and message in (await r.json())["error"]["message"], (body, await r.text())
        assert not server.hub.get(session_id).peers


async def test_token_mode_keeps_the_routes_closed_to_the_sdk() -> None:
    """The SDK's local mode sends no credential: with tokens on, it gets 401 (the CLI refuses the pair)."""
    async with Server(reactor_local=True, auth=Auth("token")) as server, aiohttp.ClientSession() as http:
        await start(http, server, status=401)
        async with http.post(f"{server.url}/start_session", json={}, headers={"Authorization": "Bearer local"}) as r:
            assert r.status == 401
        async with http.post(
            f"{server.url}/start_session", json={}, headers={"Authorization": f"Bearer {server.api_key}"}
        ) as r:
            assert r.status == 200  # the API key still works, as on every route
    with pytest.raises(SystemExit, match="--reactor-local needs --auth none"):
        main(["serve", "--reactor-local", "--port", "1"])


async def test_routes_are_absent_without_the_flag_and_capacity_is_respected() -> None:
    async with Server() as server, aiohttp.ClientSession() as http, http.post(f"{server.url}/start_session") as r:
        assert r.status in (404, 405)
    async with Server(HubConfig(max_sessions=1), reactor_local=True) as server, aiohttp.ClientSession() as http:
        server.hub.create_session("busy-slot")
        refused = await start(http, server, status=503)
        assert "slots are busy" in refused["error"]["message"]


async def test_cors_lets_the_apps_origin_send_the_sdks_headers() -> None:
    async with Server(reactor_local=True, cors_origins=(ORIGIN,)) as server, aiohttp.ClientSession() as http:
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
                     "Access-Control-Request-Headers": "content-type,reactor-webrtc-version,authorization"}  # fmt: skip
        async with http.options(f"{server.url}/sessions/x/transport/webrtc/sdp_params", headers=preflight) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "PUT" in r.headers["Access-Control-Allow-Methods"]
            allowed = r.headers["Access-Control-Allow-Headers"].lower()
            assert all(h in allowed for h in ("reactor-webrtc-version", "reactor-api-version", "authorization"))
        async with http.post(f"{server.url}/start_session", json={}, headers={"Origin": "http://evil.test"}) as r:
            assert r.status == 403 and not server.hub.sessions


def test_the_docs_show_the_app_the_browser_test_runs() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "reactor-sdk.md").read_text()
    app = Path(__file__).resolve().parent / "js" / "reactor-app"
    for name, fence in (("index.html", "html"), ("app.js", "js")):
        assert f"`{name}`:\n\n```{fence}\n{(app / name).read_text()}```" in docs, f"docs/reactor-sdk.md: update {name}"


async def test_a_session_whose_sdk_client_vanished_is_freed_after_the_grace() -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        server.runner.app[REACTOR_KEY].grace = 0.6
        session_id = (await start(http, server))["session_id"]
        peer = SdkPeer(http, server.url, session_id)
        await peer.connect()
        peer.send("schedule_prompt", {"new_prompt": "a fox", "timestamp": 0})
        peer.send("start")
        await peer.wait(lambda m: m["data"]["type"] == "progress")
        await asyncio.sleep(1.5)
        assert session_id in server.hub.sessions  # a connected client keeps it, however long
        await peer.pc.close()  # the tab is gone, and no stop_session came
        await wait_until(lambda: session_id not in server.hub.sessions, timeout=10)
        async with http.get(f"{server.url}/session", headers=API_HEADERS) as r:
            assert r.status == 404


async def test_a_malformed_offer_leaves_the_working_sdk_peer_connected() -> None:
    async with Server(reactor_local=True) as server, aiohttp.ClientSession() as http:
        session_id = (await start(http, server))["session_id"]
        peer = SdkPeer(http, server.url, session_id)
        await peer.connect()
        live = server.hub.get(session_id)
        url = f"{server.url}/sessions/{session_id}/transport/webrtc/sdp_params"
        for bad in ("not sdp", "v=0\r\n"):
            async with http.put(url, json={"sdp_offer": bad}, headers=WEBRTC_HEADERS) as r:
                assert r.status == 400, await r.text()
        await asyncio.sleep(0.3)
        assert len(live.peers) == 1 and peer.pc.connectionState == "connected", "the old peer is kept"
        peer.send("get_state")
        await peer.wait(lambda m: m["data"]["type"] == "state")
        await peer.pc.close()


async def test_concurrent_starts_leave_one_reactor_session() -> None:
    async with Server(HubConfig(max_sessions=4), reactor_local=True) as server, aiohttp.ClientSession() as http:
        started = await asyncio.gather(*(start(http, server) for _ in range(3)))
        assert len({s["session_id"] for s in started}) == 3  # each replaced the one before it
        tracked = server.runner.app[REACTOR_KEY].session_id
        assert set(server.hub.sessions) == {tracked}, "one session left: the one the Reactor API knows"
        async with http.post(f"{server.url}/stop_session", headers=API_HEADERS) as r:
            assert r.status == 200
        assert server.hub.sessions == {}, "no orphan holds a slot"
