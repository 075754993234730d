"""Sessions as HTTP resources, owned by tokens: real HTTP and real aiortc peers against a token-mode server."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from longlive_rtc.rtc.hub import HubConfig
from signaling.access import STORE_NAME
from signaling.auth import Auth
from signaling.limits import RateLimiter

from .rtc_client import Client, Server, real_offer, wait_until

pytestmark = pytest.mark.timeout(120)

API_KEY = "test-api-key-0123456789"
SCHEDULE = [{"timestamp": 0, "prompt": "a red fox in the snow"}, {"timestamp": 6, "prompt": "a blue lake"}]


def token_server(**config: Any) -> Server:
    limiter, state_dir = config.pop("limiter", None), config.pop("state_dir", None)
    ttl = config.pop("token_ttl", 0)
    config.setdefault("max_sessions", 4)
    auth = Auth("token", api_key=API_KEY, token_ttl=ttl)
    return Server(HubConfig(**config), auth=auth, limiter=limiter, state_dir=state_dir)


async def call(
    server: Server, method: str, path: str, token: str | None = None, json: Any = None, **kwargs: Any
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; (status, decoded JSON body or text, headers)."""
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=json, headers=headers, **kwargs) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body, dict(response.headers)


async def create(server: Server, **body: Any) -> dict:
    status, created, headers = await call(server, "POST", "/sessions", API_KEY, json=body)
    assert status == 201, created
    assert headers["Location"] == f"/sessions/{created['session']}"
    return created


async def command(server: Server, session: str, token: str | None, kind: str, **data: Any) -> tuple[int, Any]:
    status, replies, _ = await call(server, "POST", f"/sessions/{session}/commands", token,
                                    json={"type": kind, "data": data})  # fmt: skip
    return status, replies


async def test_a_session_created_over_http_with_start_streams_to_a_whep_viewer_with_no_controller() -> None:
    async with token_server() as server:
        created = await create(server, id="my-show", seed=7, schedule=SCHEDULE, start=True)
        assert created["session"] == "my-show" and created["state"]["status"] == "running"
        assert created["state"]["seed"] == 7
        assert [e["prompt"] for e in created["state"]["scheduled"]] == [e["prompt"] for e in SCHEDULE]
        tokens, urls = created["tokens"], created["urls"]
        assert tokens["controller"] != tokens["viewer"]
        assert urls["director"].endswith(f"/?session=my-show&token={tokens['controller']}")
        for name in ("viewer", "obs", "whep"):
            assert urls[name].endswith(f"?token={tokens['viewer']}"), name
            assert tokens["controller"] not in urls[name]
        viewer = Client()
        try:
            await viewer.connect(server.url, session="my-show", whep=True, data_channel=False, token=tokens["viewer"])
            await viewer.wait_frames(30)
            stamped = [f.stamp for f in viewer.frames if f.stamp is not None]
            assert stamped and stamped[-1].frame > stamped[0].frame, "the picture advances"
            assert server.hub.peer_count == 1, "nobody but the WHEP viewer ever connected"
        finally:
            await viewer.close()
        status, described, _ = await call(server, "GET", "/sessions/my-show", tokens["viewer"])
        assert status == 200 and described["state"]["status"] == "running"
        assert "director" not in described["urls"] and "tokens" not in described, "a viewer sees viewer links only"


async def test_every_endpoint_refuses_a_missing_or_wrong_token_without_telling_whether_the_session_exists() -> None:
    async with token_server() as server:
        created = await create(server, id="real")
        other = await create(server, id="other")
        wrong_tokens = [None, "nonsense", API_KEY + "x", other["tokens"]["controller"]]
        answers: dict[str, list] = {}
        for session in ("real", "no-such-session"):
            endpoints = [
                ("GET", f"/sessions/{session}", None), ("DELETE", f"/sessions/{session}", None),
                ("POST", f"/sessions/{session}/tokens", None),
                ("POST", f"/sessions/{session}/commands", {"type": "get_state"}),
                ("DELETE", f"/sessions/{session}/peers/abc", None), ("DELETE", f"/whep/{session}/abc", None),
                ("POST", "/offer", {"sdp": "v=0", "type": "offer", "session": session}),
            ]  # fmt: skip
            for method, path, body in endpoints:
                for token in wrong_tokens:
                    status, answer, headers = await call(server, method, path, token, json=body)
                    assert status == 401, (method, path, token, status, answer)
                    assert answer == {"error": {"status": 401, "message": answer["error"]["message"]}}
                    assert "exist" not in answer["error"]["message"] and session not in answer["error"]["message"]
                    assert headers["WWW-Authenticate"].startswith("Bearer")
                    answers.setdefault(session, []).append((method, status, answer, headers["WWW-Authenticate"]))
            status, _, _ = await call(server, "POST", f"/whep/{session}", "nonsense", data="v=0",
                                      headers={"Content-Type": "application/sdp"})  # fmt: skip
            assert status == 401
        assert answers["real"] == answers["no-such-session"], "the same refusal whether the session exists or not"
        for method, path in [("GET", "/sessions"), ("POST", "/sessions"), ("GET", "/metrics"), ("GET", "/ice-servers")]:
            for token in wrong_tokens[:3]:
                status, _, _ = await call(server, method, path, token, json={} if method == "POST" else None)
                assert status == 401, (method, path, token)
        controller = created["tokens"]["controller"]
        for method, path in [("GET", "/sessions"), ("POST", "/sessions"), ("GET", "/metrics")]:
            status, _, _ = await call(server, method, path, controller, json={} if method == "POST" else None)
            assert status == 401, f"a session token is not the API key ({method} {path})"
        assert (await call(server, "GET", "/ice-servers", controller))[0] == 200
        assert (await call(server, "GET", "/health"))[0] == 200, "health stays open for load balancers"
        listed = (await call(server, "GET", "/sessions", API_KEY))[1]
        assert sorted(s["session"] for s in listed["sessions"]) == ["other", "real"]


async def test_a_viewer_token_watches_and_reads_events_but_never_commands() -> None:
    async with token_server() as server:
        created = await create(server, schedule=SCHEDULE)
        session, viewer_token = created["session"], created["tokens"]["viewer"]
        status, replies = await command(server, session, viewer_token, "start")
        assert status == 403 and replies[0]["data"]["code"] == "forbidden"
        for method, path in [("DELETE", f"/sessions/{session}"), ("POST", f"/sessions/{session}/tokens")]:
            status, answer, _ = await call(server, method, path, viewer_token)
            assert status == 403 and "not control" in answer["error"]["message"], (method, path)
        offer = {"sdp": await real_offer(), "type": "offer", "session": session, "role": "controller"}
        status, _, _ = await call(server, "POST", "/offer", viewer_token, json=offer)
        assert status == 403, "a viewer token cannot ask to be a controller"
        viewer = Client()
        try:
            await viewer.connect(server.url, session=session, token=viewer_token)
            state = await viewer.wait_event(lambda e: e["type"] == "state")
            assert len(state["data"]["scheduled"]) == 2, "viewers read the session's events"
            viewer.send("schedule_prompt", "v1", new_prompt="hijack", timestamp=0)
            viewer.send("reset", "v2")
            for message_id in ("v1", "v2"):
                assert (await viewer.reply_to(message_id))["data"]["code"] == "forbidden"
        finally:
            await viewer.close()
        status, described, _ = await call(server, "GET", f"/sessions/{session}", created["tokens"]["controller"])
        assert [e["prompt"] for e in described["state"]["scheduled"]] == [e["prompt"] for e in SCHEDULE]
        assert described["state"]["status"] == "idle"


async def test_cross_origin_requests_are_refused_unless_the_origin_is_allowed() -> None:
    async with Server(auth=Auth("token", api_key=API_KEY), cors_origins=("https://studio.example",)) as server:
        created = await create(server)
        session, controller = created["session"], created["tokens"]["controller"]
        path = f"/sessions/{session}/commands"
        foreign = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        status, answer, headers = await call(server, "POST", path, controller, data='{"type":"reset"}', headers=foreign)
        assert status == 403 and "cross-origin" in answer["error"]["message"]
        assert "Access-Control-Allow-Origin" not in headers
        same_site_text = {"Content-Type": "text/plain"}
        status, _, _ = await call(server, "POST", path, controller, data='{"type":"reset"}', headers=same_site_text)
        assert status == 415, "commands need application/json (a cross-site form cannot send it)"
        preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        assert (await call(server, "OPTIONS", path, headers=preflight))[0] == 403
        allowed = {"Origin": "https://studio.example", "Access-Control-Request-Method": "POST"}
        status, _, headers = await call(server, "OPTIONS", path, headers=allowed)
        assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://studio.example"
        status, replies, headers = await call(server, "POST", path, controller, json={"type": "get_state"},
                                              headers={"Origin": "https://studio.example"})  # fmt: skip
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://studio.example"
        assert "Authorization" in headers["Access-Control-Allow-Headers"]
        status, _, headers = await call(server, "GET", "/health", headers={"Origin": "https://evil.example"})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers, "no CORS for foreign origins"


async def offer_and_vanish(server: Server) -> None:
    """An offer whose client never sets the answer: its ICE never completes."""
    status, answer, _ = await call(server, "POST", "/offer", API_KEY, json={"sdp": await real_offer(), "type": "offer"})
    assert status == 200, answer


async def test_twenty_offers_that_never_connect_leave_a_legitimate_user_able_to_start_at_once() -> None:
    async with token_server(max_sessions=1, connect_timeout=2.0) as server:
        for _ in range(20):
            await offer_and_vanish(server)
        assert len(server.hub.sessions) == 1, "each pending offer's session gave its slot to the next one"
        user = Client()
        try:
            await user.connect(server.url, token=API_KEY)
            assert user.tokens and user.tokens["controller"], "an offer that creates a session hands out its tokens"
            user.send("schedule_prompt", "p", new_prompt="a lighthouse", timestamp=0)
            user.send("start", "go")
            assert (await user.reply_to("go"))["type"] == "ack"
            await user.wait_frames(10)
            await wait_until(lambda: server.hub.peer_count == 1)  # the pending peers are closed after 2 s
            assert list(server.hub.sessions) == [user.session]
        finally:
            await user.close()


async def test_limits_answer_429_and_503_with_retry_after() -> None:
    limiter = RateLimiter(per_minute=6, burst=4)
    async with token_server(max_sessions=1, max_peers_per_session=1, limiter=limiter) as server:
        created = await create(server, schedule=SCHEDULE, start=True)
        status, answer, headers = await call(server, "POST", "/sessions", API_KEY, json={})
        assert status == 503 and "generation slots are busy" in answer["error"]["message"]
        assert int(headers["Retry-After"]) >= 1
        viewer_token = created["tokens"]["viewer"]
        first = Client()
        try:
            session = created["session"]
            await first.connect(server.url, session=session, whep=True, data_channel=False, token=viewer_token)
            status, answer, headers = await call(server, "POST", f"/whep/{session}", viewer_token,
                                                 data=await real_offer(data_channel=False),
                                                 headers={"Content-Type": "application/sdp"})  # fmt: skip
            assert status == 503 and "too many viewers" in answer["error"]["message"]
            assert int(headers["Retry-After"]) >= 1
        finally:
            await first.close()
        status, answer, headers = await call(server, "POST", "/sessions", API_KEY, json={})
        assert status == 429 and "too many" in answer["error"]["message"], answer  # the 5th request of a burst of 4
        assert int(headers["Retry-After"]) >= 1
        assert (await call(server, "GET", "/health"))[0] == 200, "health is never rate limited"


async def test_stop_keeps_the_schedule_and_seed_so_start_replays_it() -> None:
    async with token_server() as server:
        created = await create(server, seed=42, schedule=SCHEDULE, start=True)
        session, controller = created["session"], created["tokens"]["controller"]
        client = Client()
        try:
            await client.connect(server.url, session=session, token=created["tokens"]["viewer"])
            await client.wait_event(lambda e: e["type"] == "progress" and e["data"]["current_start_frame"] >= 9)
            status, replies = await command(server, session, controller, "stop")
            assert status == 200 and replies[0]["type"] == "ack"
            _, described, _ = await call(server, "GET", f"/sessions/{session}", controller)
            state = described["state"]
            assert state["status"] == "idle" and state["current_start_frame"] == 0 and state["seed"] == 42
            assert [e["prompt"] for e in state["scheduled"]] == [e["prompt"] for e in SCHEDULE]
            assert (await command(server, session, controller, "stop"))[0] == 409, "stopping twice: not_running"
            client.events.clear()
            assert (await command(server, session, controller, "start"))[0] == 200
            applied = await client.wait_event(lambda e: e["type"] == "prompt_applied" and e["data"]["frame"] == 6)
            assert applied["data"]["prompt"] == "a blue lake"
            first = next(e for e in client.events if e["type"] == "prompt_applied")
            assert first["data"] == {"timestamp": 0, "frame": 0, "prompt": "a red fox in the snow", "mode": "recache"}
        finally:
            await client.close()


async def test_rotating_tokens_retires_the_old_ones_at_once() -> None:
    async with token_server() as server:
        created = await create(server)
        session, old = created["session"], created["tokens"]
        status, rotated, _ = await call(server, "POST", f"/sessions/{session}/tokens", old["controller"])
        assert status == 200 and rotated["tokens"]["controller"] != old["controller"]
        for token in old.values():
            assert (await call(server, "GET", f"/sessions/{session}", token))[0] == 401
        for token in rotated["tokens"].values():
            assert (await call(server, "GET", f"/sessions/{session}", token))[0] == 200
        assert rotated["urls"]["viewer"].endswith(rotated["tokens"]["viewer"])


async def test_a_rotated_token_cannot_recreate_its_session_once_it_is_gone() -> None:
    async with token_server(session_idle=1.0) as server:
        created = await create(server, id="rotated-show")
        old = created["tokens"]["controller"]
        _, rotated, _ = await call(server, "POST", "/sessions/rotated-show/tokens", old)
        new = rotated["tokens"]["controller"]
        await wait_until(lambda: "rotated-show" not in server.hub.sessions, timeout=10)  # freed: idle
        offer = {"sdp": await real_offer(), "type": "offer", "session": "rotated-show", "create": True}
        status, _, _ = await call(server, "POST", "/offer", old, json=offer)
        assert status == 401, "a retired token stays retired after its session was freed"
        assert "rotated-show" not in server.hub.sessions
        assert (await call(server, "GET", "/sessions/rotated-show", old))[0] == 401
        assert await recreates(server, "rotated-show", new), "the current token recreates it"


async def recreates(server: Server, session: str, token: str) -> bool:
    """Whether a controller with ``token`` gets the gone ``session`` created again under its id (a real peer)."""
    client = Client()
    try:
        await client.connect(server.url, session=session, create=True, token=token)
        return client.session == session
    finally:
        await client.close()


async def test_session_tokens_expire_when_the_operator_sets_a_lifetime() -> None:
    async with token_server(token_ttl=1) as server:
        created = await create(server)
        viewer = created["tokens"]["viewer"]
        status, described, _ = await call(server, "GET", f"/sessions/{created['session']}", viewer)
        assert status == 200 and described["urls"]["viewer"].endswith(f"token={viewer}"), "read back, not renewed"
        await asyncio.sleep(2.1)
        assert (await call(server, "GET", f"/sessions/{created['session']}", created["tokens"]["viewer"]))[0] == 401
        assert (await call(server, "GET", f"/sessions/{created['session']}", API_KEY))[0] == 200


async def test_a_controller_token_recreates_its_session_on_a_restarted_server_with_the_same_key() -> None:
    async with token_server() as first:
        created = await create(first, id="persistent")
    async with token_server() as restarted:
        controller = created["tokens"]["controller"]
        status, _, _ = await call(restarted, "GET", "/sessions/persistent", controller)
        assert status == 404, "the token is genuine, the session is gone"
        client = Client()
        try:
            await client.connect(restarted.url, session="persistent", create=True, token=controller)
            assert client.session == "persistent"
            client.send("schedule_prompt", "p", new_prompt="back again", timestamp=0)
            assert (await client.reply_to("p"))["type"] == "ack", "the old controller token still commands"
            status, _, _ = await call(restarted, "GET", "/sessions/persistent", created["tokens"]["viewer"])
            assert status == 200, "and the old viewer token still watches"
        finally:
            await client.close()


async def test_with_a_state_dir_a_restart_remembers_which_tokens_were_retired(tmp_path: Path) -> None:
    async with token_server(state_dir=tmp_path) as first:
        kept = await create(first, id="kept")
        old = kept["tokens"]["controller"]
        _, rotated, _ = await call(first, "POST", "/sessions/kept/tokens", old)
        gone = await create(first, id="gone")
        assert (await call(first, "DELETE", "/sessions/gone", gone["tokens"]["controller"]))[0] == 204
    assert oct((tmp_path / STORE_NAME).stat().st_mode & 0o777) == "0o600"
    async with token_server(state_dir=tmp_path) as restarted:
        for token in (old, kept["tokens"]["viewer"], *gone["tokens"].values()):
            for session in ("kept", "gone"):
                assert (await call(restarted, "GET", f"/sessions/{session}", token))[0] == 401, (token, session)
        offer = {"sdp": await real_offer(), "type": "offer", "session": "kept", "create": True}
        assert (await call(restarted, "POST", "/offer", old, json=offer))[0] == 401, "rotated away: stays so"
        new = rotated["tokens"]["controller"]
        assert (await call(restarted, "GET", "/sessions/kept", new))[0] == 404, "current: genuine, session gone"
        assert await recreates(restarted, "kept", new), "its current token recreates it"


async def test_an_unreadable_state_file_is_reported_and_the_server_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STORE_NAME).write_text("{not json")
    async with token_server(state_dir=tmp_path) as server:
        assert (await create(server))["tokens"]
    assert "not read" in caplog.text
    assert json.loads((tmp_path / STORE_NAME).read_text())["live"] == {}, "rewritten as the sessions changed"


async def test_deleting_a_session_frees_its_slot_and_its_tokens_stop_working() -> None:
    async with token_server(max_sessions=1) as server:
        created = await create(server, schedule=SCHEDULE, start=True)
        session, controller = created["session"], created["tokens"]["controller"]
        assert (await call(server, "DELETE", f"/sessions/{session}", controller))[0] == 204
        assert session not in server.hub.sessions
        for token in created["tokens"].values():
            assert (await call(server, "GET", f"/sessions/{session}", token))[0] == 401
        offer = {"sdp": await real_offer(), "type": "offer", "session": session, "create": True}
        assert (await call(server, "POST", "/offer", controller, json=offer))[0] == 401, "no token recreates it"
        assert session not in server.hub.sessions
        again = await create(server, id=session)  # the API key may; the slot is free at once
        assert (await call(server, "GET", f"/sessions/{session}", again["tokens"]["viewer"]))[0] == 200


async def test_an_idle_session_created_over_http_is_freed_but_a_running_one_keeps_streaming() -> None:
    async with token_server(max_sessions=2, session_idle=1.0) as server:
        idle = await create(server)
        running = await create(server, schedule=SCHEDULE, start=True)
        await wait_until(lambda: idle["session"] not in server.hub.sessions, timeout=10)
        await asyncio.sleep(1.5)
        assert running["session"] in server.hub.sessions, "a running session is never idle"
        status, _ = await command(server, running["session"], running["tokens"]["controller"], "stop")
        assert status == 200
        await wait_until(lambda: running["session"] not in server.hub.sessions, timeout=10)


async def test_without_tokens_only_ip_literals_localhost_and_allowed_names_are_answered() -> None:
    """DNS rebinding: a page whose own name resolves to this server sends that name in Host."""
    async with Server(HubConfig(max_sessions=2), allowed_hosts=("studio.lan",)) as server:
        for host in ("attacker.example", "attacker.example:8080", "localhost.attacker.example", "studio.lan.evil"):
            status, body, _ = await call(server, "GET", "/sessions", headers={"Host": host})
            assert status == 421, (host, status, body)
            assert "--allowed-host" in body["error"]["message"]
            status, _, _ = await call(server, "POST", "/sessions", json={}, headers={"Host": host})
            assert status == 421
        for host in ("127.0.0.1", "localhost:8080", "app.localhost", "[::1]:8080", "10.0.0.7:8080", "STUDIO.lan"):
            status, body, _ = await call(server, "GET", "/sessions", headers={"Host": host})
            assert status == 200, (host, status, body)
    async with token_server() as server:  # with tokens the name does not matter: the token does
        status, _, _ = await call(server, "GET", "/sessions", API_KEY, headers={"Host": "studio.example"})
        assert status == 200


async def test_the_access_log_never_writes_a_token(caplog: pytest.LogCaptureFixture) -> None:
    """``--log-level debug`` turns aiohttp's access log on; links carry tokens in their query."""
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with token_server() as server:
        created = await create(server)
        viewer = created["tokens"]["viewer"]
        status, _, _ = await call(server, "GET", f"/sessions/{created['session']}?x=1&token={viewer}")
        assert status == 200
        assert (await call(server, "GET", f"/sessions?token={API_KEY}"))[0] == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(f'"GET /sessions/{created["session"]}?x=1&token=*** HTTP/1.1" 200' in line for line in lines), lines
    assert any('"GET /sessions?token=*** HTTP/1.1" 200' in line for line in lines), lines
    assert not any(viewer in line or API_KEY in line for line in lines)


async def test_viewer_links_cannot_fill_a_session_and_lock_its_controller_out() -> None:
    async with token_server(max_peers_per_session=4) as server:
        created = await create(server, schedule=SCHEDULE, start=True)
        session, tokens = created["session"], created["tokens"]

        async def whep() -> int:
            status, _, _ = await call(server, "POST", f"/whep/{session}", tokens["viewer"],
                                      data=await real_offer(data_channel=False),
                                      headers={"Content-Type": "application/sdp"})  # fmt: skip
            return status

        assert [await whep(), await whep()] == [201, 201]  # offers that never connect hold their slots
        assert await whep() == 503, "the last 2 of 4 slots are the controllers'"
        director = Client()
        try:
            await director.connect(server.url, session=session, token=tokens["controller"])
            await director.wait_frames(3)
        finally:
            await director.close()
