"""ICE and DTLS as clients nobody here wrote do them, with real aiortc clients against the real server.

- offers whose host candidates are mDNS names (what browsers send by default), unresolvable or resolvable,
  with ``a=end-of-candidates``: they connect (peer-reflexive candidates, or the resolved address);
- trickle ICE over WHEP PATCH (``application/trickle-ice-sdpfrag``) and its refusals;
- the DTLS role of the answer for ``actpass``, ``passive`` and ``active`` offers.
"""

from __future__ import annotations

import re
import uuid

import aiohttp
import aioice.ice
import pytest

from longlive_rtc.rtc.hub import HubConfig
from longlive_rtc.rtc.ice import _ice_transports, accept_remote_candidates, resolve_mdns
from signaling.routes import ice_server_links

from .interop_support import Viewer, capabilities, started_session, whep
from .rtc_client import Server

pytestmark = pytest.mark.timeout(120)

CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( .*)$", re.MULTILINE)


def remote_candidate_types(server: Server, session: str) -> list[str]:
    """The types of the remote candidates the server's ICE agent holds for the session's (only) peer."""
    (peer,) = server.hub.get(session).peers.values()
    return [c.type for t in _ice_transports(peer.pc) for c in t.getRemoteCandidates()]


def hide_addresses(offer: str, name: str | None = None) -> str:
    """The offer as a browser hides it: each host candidate's address replaced by an mDNS name."""
    return CANDIDATE.sub(lambda m: m.group(1) + (name or f"{uuid.uuid4()}.local") + m.group(3), offer)


async def test_an_offer_of_unresolvable_mdns_candidates_and_end_of_candidates_connects_peer_reflexively() -> None:
    async with Server(HubConfig(max_sessions=1)) as server:
        session = await started_session(server)
        viewer = Viewer(capabilities("video/VP8"))
        try:
            offer = hide_addresses(await viewer.offer())
            assert "a=end-of-candidates" in offer and ".local " in offer
            assert all(m.group(2).endswith(".local") for m in CANDIDATE.finditer(offer)), "no address left"
            status, answer = await whep(server, session, offer)
            assert status == 201, answer
            await viewer.accept(answer)
            await viewer.wait_frames(10)
            assert "prflx" in remote_candidate_types(server, session), "learnt from the client's own checks"
        finally:
            await viewer.close()


async def test_a_resolvable_mdns_candidate_is_resolved() -> None:
    name = f"{uuid.uuid4()}.local"
    publisher = object()
    protocol = await aioice.ice.get_or_create_mdns_protocol(publisher)
    try:
        async with Server(HubConfig(max_sessions=1)) as server:
            session = await started_session(server)
            viewer = Viewer(capabilities("video/VP8"))
            try:
                offer = await viewer.offer()
                address = CANDIDATE.search(offer).group(2)
                await protocol.publish(name, address)
                if not await resolve_mdns({name}):
                    pytest.skip("this machine cannot send mDNS queries (no multicast route)")
                offer = hide_addresses(offer, name)
                rewritten = await accept_remote_candidates(offer)
                assert name not in rewritten and f" {address} " in rewritten
                assert "a=end-of-candidates" in rewritten, "nothing was dropped: the client's mark stays"
                status, answer = await whep(server, session, offer)
                assert status == 201, answer
                await viewer.accept(answer)
                await viewer.wait_frames(10)
                assert "host" in remote_candidate_types(server, session)
            finally:
                await viewer.close()
    finally:
        await aioice.ice.unref_mdns_protocol(publisher)


async def test_accept_remote_candidates_drops_what_it_cannot_resolve_and_keeps_ice_waiting() -> None:
    section = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    header = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    plain = header + section + "a=candidate:1 1 udp 2122252543 192.0.2.7 5000 typ host\r\na=end-of-candidates\r\n"
    assert await accept_remote_candidates(plain) == plain, "addresses: nothing to change"
    name = f"{uuid.uuid4()}.local"
    hidden = plain.replace("192.0.2.7", name) + f"a=rtcp:5001 IN IP4 {name}\r\n"  # Firefox's a=rtcp names it too
    rewritten = await accept_remote_candidates(hidden, timeout=0.2)
    assert "a=candidate" not in rewritten and "a=end-of-candidates" not in rewritten
    assert "a=rtcp:5001 IN IP4 0.0.0.0" in rewritten, "aiortc cannot print an offer with a name there"
    mixed = plain.replace("a=end-of-candidates", f"a=candidate:2 1 udp 2122252542 {uuid.uuid4()}.local 5001 typ host")
    mixed += "a=end-of-candidates\r\n"
    rewritten = await accept_remote_candidates(mixed, timeout=0.2)
    assert "192.0.2.7 5000" in rewritten and ".local" not in rewritten and "a=end-of-candidates" not in rewritten
    tcp_only = header + section + "a=candidate:1 1 tcp 2105524479 192.0.2.7 9 typ host tcptype active\r\n"
    tcp_only += "a=end-of-candidates\r\n"
    assert "a=end-of-candidates" not in await accept_remote_candidates(tcp_only), "no UDP candidate: keep waiting"


@pytest.mark.parametrize(
    ("offered", "answered"), [("actpass", "passive"), ("passive", "active"), ("active", "passive")]
)
async def test_the_answer_takes_the_dtls_role_the_offer_leaves_and_connects(offered: str, answered: str) -> None:
    async with Server(HubConfig(max_sessions=1)) as server:
        session = await started_session(server)
        viewer = Viewer(capabilities("video/VP8"))
        try:
            offer = (await viewer.offer()).replace("a=setup:actpass", f"a=setup:{offered}")
            status, answer = await whep(server, session, offer)
            assert status == 201, answer
            assert set(re.findall(r"a=setup:(\w+)", answer)) == {answered}
            await viewer.accept(answer)
            await viewer.wait_frames(5)
        finally:
            await viewer.close()


def fragment(offer: str, candidates: list[str], ufrag: str | None = None) -> str:
    """An RFC 8840 fragment as a trickling WHEP player sends it (ICE credentials, the first m-line, its mid)."""
    ours = re.search(r"a=ice-ufrag:(\S+)", offer).group(1)
    password = re.search(r"a=ice-pwd:(\S+)", offer).group(1)
    mid = re.search(r"a=mid:(\S+)", offer).group(1)
    lines = [f"a=ice-ufrag:{ufrag or ours}", f"a=ice-pwd:{password}", "m=video 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{mid}"]
    return "\r\n".join([*lines, *candidates, "a=end-of-candidates"]) + "\r\n"


async def test_trickle_ice_over_whep_patch() -> None:
    async with Server(HubConfig(max_sessions=1)) as server:
        session = await started_session(server)
        viewer = Viewer(capabilities("video/VP8"))
        try:
            full = await viewer.offer()
            candidates = [line for line in full.splitlines() if line.startswith("a=candidate:")]
            bare = "".join(
                f"{line}\r\n" for line in full.splitlines() if not line.startswith(("a=candidate:", "a=end-"))
            )
            status, answer = await whep(server, session, bare)  # the offer before any candidate
            assert status == 201, answer
            (peer,) = server.hub.get(session).peers.values()
            resource = f"{server.url}/whep/{session}/{peer.id}"
            sdpfrag = {"Content-Type": "application/trickle-ice-sdpfrag"}
            async with aiohttp.ClientSession() as http:
                async with http.options(resource) as r:
                    assert "PATCH" in r.headers["Allow"] and r.headers["Accept-Patch"] == sdpfrag["Content-Type"]
                unresolvable = [f"a=candidate:9 1 udp 2122252543 {uuid.uuid4()}.local 5000 typ host"]
                async with http.patch(resource, data=fragment(full, unresolvable), headers=sdpfrag) as r:
                    assert r.status == 204, await r.text()  # silently discarded, as the draft says
                assert remote_candidate_types(server, session) == []
                async with http.patch(resource, data=fragment(full, candidates), headers=sdpfrag) as r:
                    assert r.status == 204, await r.text()
                assert set(remote_candidate_types(server, session)) == {"host"}
                async with http.patch(resource, data=fragment(full, candidates, ufrag="new1"), headers=sdpfrag) as r:
                    assert r.status == 422 and "ICE restart" in (await r.json())["error"]["message"]
                async with http.patch(resource, data=fragment(full, candidates)) as r:
                    assert r.status == 415
                async with http.patch(resource, data="hello\r\nworld", headers=sdpfrag) as r:
                    assert r.status == 400
                many = [f"a=candidate:{i} 1 udp 1 192.0.2.{i} 5000 typ host" for i in range(1, 40)]
                async with http.patch(resource, data=fragment(full, many), headers=sdpfrag) as r:
                    assert r.status == 400 and "limit" in (await r.json())["error"]["message"]
                async with http.patch(resource + "x", data=fragment(full, candidates), headers=sdpfrag) as r:
                    assert r.status == 404
            await viewer.accept(answer)
            await viewer.wait_frames(5)
        finally:
            await viewer.close()


def test_ice_server_links_carry_turn_credentials_quoted() -> None:
    servers = [{"urls": "stun:stun.example.net"},
               {"urls": ["turn:t.example.net?transport=udp", "turns:t.example.net"], "username": "1700:u",
                "credential": 'pa"ss\\word'}]  # fmt: skip
    assert ice_server_links(servers) == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:t.example.net?transport=udp>; rel="ice-server"; username="1700:u"; credential="pa\\"ss\\\\word"; '
        'credential-type="password"',
        '<turns:t.example.net>; rel="ice-server"; username="1700:u"; credential="pa\\"ss\\\\word"; '
        'credential-type="password"',
    ]
