"""Hostile offers and connections (issue #19): SDP checked before aiortc, failed offers cleaned up at once,
half-open HTTP connections closed, guessed peer ids refused. Real HTTP and real aiortc peers."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time

import aiohttp
import pytest

from longlive_rtc.rtc.hub import HubConfig
from longlive_rtc.rtc.sdp import (
    CANDIDATE,
    MAX_MEDIA_SECTIONS,
    MAX_REMOTE_CANDIDATES,
    MAX_SDP_BYTES,
    OfferError,
    check_offer,
)
from signaling.auth import Auth

from .rtc_client import Client, Server, real_offer

pytestmark = pytest.mark.timeout(120)


def sections(sdp: str) -> tuple[list[str], list[str], list[str]]:
    """(lines before the video section, the video section, the lines after it)."""
    lines = sdp.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    end = next(i for i, line in enumerate(lines) if i > start and line.startswith("m="))
    return lines[:start], lines[start:end], lines[end:]


def with_video_sections(sdp: str, count: int) -> str:
    head, video, tail = sections(sdp)
    # small whatever this host's addresses and aiortc's codec table: no candidates, feedback or format lines
    video = [line for line in video if not line.startswith(("a=candidate", "a=rtcp-fb", "a=fmtp"))]
    copies = [line.replace("a=mid:0", f"a=mid:v{k}") for k in range(count) for line in video]
    return "\r\n".join(head + copies + tail)


def with_candidates(sdp: str, count: int) -> str:
    head, video, tail = sections(sdp)
    extra = [f"a=candidate:{k} 1 udp 2130706431 10.{k // 250}.{k % 250}.1 {1000 + k} typ host" for k in range(count)]
    return "\r\n".join(head + video + extra + tail)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text


async def post_offer(server: Server, sdp: object, **body: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(server.url + "/offer", json={"sdp": sdp, **body}) as r:
        return r.status, await r.json()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- the SDP check ------------------------------------------------------------------------------------------


async def test_check_offer_refuses_controls_oversize_and_too_many_sections_or_candidates() -> None:
    sdp = await real_offer()
    assert check_offer(sdp) == sdp
    assert check_offer(with_video_sections(sdp, MAX_MEDIA_SECTIONS - 1)) is not None
    own = len({m.groups() for m in map(CANDIDATE.match, sdp.split("\r\n")) if m})  # this host's candidates
    assert check_offer(with_candidates(sdp, MAX_REMOTE_CANDIDATES - own)) is not None
    refused = {
        "U+0000": sdp.replace("a=mid:0", "a=mid:0\x00", 1),
        "U+001B": sdp.replace("s=-", "s=\x1b[31m", 1),
        "U+000B": sdp.replace("s=-", "s=a\x0bm=video 9 UDP/TLS/RTP/SAVPF 96", 1),
        "U+0085": sdp.replace("s=-", "s=a\x85b", 1),
        "U+D800": sdp.replace("s=-", "s=\ud800", 1),
        "media sections": with_video_sections(sdp, MAX_MEDIA_SECTIONS + 1),
        f"{MAX_REMOTE_CANDIDATES + 1} remote ICE candidates": with_candidates(sdp, MAX_REMOTE_CANDIDATES + 1 - own),
        "over the limit": sdp + "a=x-pad:" + "x" * MAX_SDP_BYTES + "\r\n",
        "type 'offer'": None,
    }
    for needle, bad in refused.items():
        with pytest.raises(OfferError, match=needle.replace("+", r"\+")):
            check_offer(bad, "offer") if bad is not None else check_offer(sdp, "answer")
    assert "\x00" not in str(pytest.raises(OfferError, check_offer, refused["U+0000"]).value)


@pytest.mark.parametrize(
    ("name", "mangle", "message"),
    [
        ("NUL after a=mid", lambda sdp: sdp.replace("a=mid:0", "a=mid:0\x00", 1), "control character U+0000"),
        ("100 video m-lines", lambda sdp: with_video_sections(sdp, 100), "101 media sections; at most 8"),
        ("1000 candidates", lambda sdp: with_candidates(sdp, 1000), "remote ICE candidates; at most 32"),
    ],
)  # fmt: skip
async def test_a_hostile_offer_gets_a_clean_400_and_leaves_the_slot_free(
    caplog: pytest.LogCaptureFixture, name: str, mangle, message: str
) -> None:
    caplog.set_level(logging.INFO)
    async with Server(HubConfig(max_sessions=1)) as server:
        status, body = await post_offer(server, mangle(await real_offer()), type="offer")
        assert status == 400 and message in body["error"]["message"], (name, body)
        assert server.hub.sessions == {} and server.hub.peer_count == 0
        client = Client()
        try:
            await client.connect(server.url)  # the only slot is free at once
            await client.wait_frames(3)
        finally:
            await client.close()
    no_tracebacks(caplog)


async def test_an_offer_aiortc_fails_to_answer_is_cleaned_up_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A video mid outside the BUNDLE group passes the check but makes aiortc fail (then fail to close)."""
    caplog.set_level(logging.INFO)
    bad = (await real_offer()).replace("a=mid:0", "a=mid:0x")
    async with Server(HubConfig(max_sessions=1)) as server:
        status, body = await post_offer(server, bad, type="offer")
        assert status == 400 and "could not answer the offer" in body["error"]["message"], body
        assert server.hub.sessions == {}  # the session that offer created is gone at once
        await asyncio.sleep(0.5)
        fds = open_fds()
        for _ in range(10):
            assert (await post_offer(server, bad, type="offer"))[0] == 400
        await asyncio.sleep(0.5)
        assert open_fds() <= fds + 2, "failed offers leave sockets open"
        created = server.hub.create_session("keep-me")
        status, _ = await post_offer(server, bad, type="offer", session="keep-me")  # a failed join
        assert status == 400 and server.hub.get("keep-me") is created and not created.peers
        await server.hub.free_session("keep-me")
        client = Client()
        try:
            await client.connect(server.url)
            await client.wait_frames(3)
        finally:
            await client.close()
    no_tracebacks(caplog)


async def test_a_hostile_whep_offer_gets_a_clean_400(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Server(HubConfig(max_sessions=1)) as server, aiohttp.ClientSession() as http:
        live = server.hub.create_session("whep-show")
        sdp = await real_offer()
        for bad in (sdp.replace("a=mid:0", "a=mid:0\x00", 1), with_candidates(sdp, 200), "v=0\r\n\x01"):
            async with http.post(
                server.url + "/whep/whep-show", data=bad.encode(), headers={"Content-Type": "application/sdp"}
            ) as r:
                assert r.status == 400 and r.content_type == "application/json", await r.text()
        assert not live.peers
    no_tracebacks(caplog)


# --- half-open HTTP connections -----------------------------------------------------------------------------


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (or ``limit``)."""
    began, data = time.monotonic(), b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(4096):
                data += chunk
    except TimeoutError:
        return data, limit
    except ConnectionResetError:
        pass
    return data, time.monotonic() - began


async def test_connections_that_never_finish_their_headers_or_body_are_closed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr("signaling.app.BODY_TIMEOUT", 1.0)
    async with Server(http_limits={"keepalive_timeout": 1.0}) as server:
        stalled = [
            b"",  # connects and says nothing
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # headers never finished
            b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # ... in the middle of a field
        ]
        opened = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(60)]
        for i, (_, writer) in enumerate(opened):
            writer.write(stalled[i % len(stalled)])
        body_writers = []
        for _ in range(5):  # headers done, a body promised and never sent in full
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"sdp\": ")  # fmt: skip
            body_writers.append((reader, writer))
        closed = await asyncio.gather(*(read_until_closed(r, 8.0) for r, _ in opened))
        assert all(data == b"" and after < 8.0 for data, after in closed), closed
        answered = await asyncio.gather(*(read_until_closed(r, 15.0) for r, _ in body_writers))
        for data, after in answered:
            assert data.startswith(b"HTTP/1.1 408") and b"did not arrive" in data and after < 15.0, data
        for _, writer in opened + body_writers:
            writer.close()
        async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as r:
            assert r.status == 200  # still serving
    no_tracebacks(caplog)


async def test_a_client_that_leaves_mid_body_causes_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Server() as server:
        for _ in range(5):
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /offer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as http, http.get(server.url + "/health") as r:
            assert r.status == 200
    no_tracebacks(caplog)


# --- guessed peer ids ---------------------------------------------------------------------------------------


async def status_of(server: Server, method: str, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, headers=headers) as r:
        assert r.content_type == "application/json" or r.status == 204
        return r.status


async def test_guessed_peer_ids_cannot_disconnect_anyone() -> None:
    async with Server() as server:
        owner = Client()
        try:
            await owner.connect(server.url)
            session = owner.session
            assert len(owner.peer_id) >= 22  # 128 random bits, URL-safe
            guesses = ["p1", "p2", "p33", "1", owner.peer_id[:-1], owner.peer_id.upper()]
            guesses += [secrets.token_urlsafe(16) for _ in range(20)]
            for guess in guesses:
                if guess == owner.peer_id:
                    continue
                assert await status_of(server, "DELETE", f"/whep/{session}/{guess}") == 404
                assert await status_of(server, "DELETE", f"/sessions/{session}/peers/{guess}") == 404
            owner.send("get_state", "still-here")
            assert (await owner.reply_to("still-here"))["type"] == "ack"
            assert len(server.hub.get(session).peers) == 1
            assert await status_of(server, "DELETE", f"/whep/{session}/{owner.peer_id}") == 204
            assert server.hub.peer_count == 0
        finally:
            await owner.close()


async def test_with_tokens_a_delete_without_one_is_401_and_a_guess_with_one_is_404() -> None:
    async with Server(auth=Auth("token", api_key="hostile-offers-key-0123")) as server:
        owner = Client()
        try:
            await owner.connect(server.url, token="hostile-offers-key-0123")
            session, viewer = owner.session, owner.tokens["viewer"]
            for path in (f"/whep/{session}/p1", f"/whep/{session}/{owner.peer_id}",
                         f"/sessions/{session}/peers/{owner.peer_id}"):  # fmt: skip
                assert await status_of(server, "DELETE", path) == 401
                assert await status_of(server, "DELETE", path, token="not-a-token") == 401
            for guess in ["p1", "p2", secrets.token_urlsafe(16)]:
                assert await status_of(server, "DELETE", f"/whep/{session}/{guess}", viewer) == 404
            assert len(server.hub.get(session).peers) == 1
        finally:
            await owner.close()
