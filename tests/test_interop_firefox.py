"""Debian's Firefox ESR, default prefs, on a third-party player page (tests/js/player.html), via puppeteer-core
over WebDriver BiDi (no browser downloaded).

Firefox hides its address behind mDNS names and marks end-of-candidates; it does no loopback ICE. It runs
in a network namespace of its own (a veth pair to this host), so its names cannot be resolved here and the
server learns its address from its checks. The page comes from another origin than the server (CORS).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlencode

import aioice.ice
import pytest
from aiortc import RTCIceServer

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .browser_support import ARTIFACTS
from .interop_support import (
    API_KEY,
    WINDOW_FRAMES,
    WINDOW_SECONDS,
    NetNamespace,
    PageServer,
    StunServer,
    create_session,
    firefox,
    missing_firefox,
    namespaces_allowed,
)
from .rtc_client import Server

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(180),
    pytest.mark.skipif(missing_firefox() is not None, reason=missing_firefox() or ""),
]



@pytest.fixture(scope="module")
def space() -> Iterator[NetNamespace | None]:
    """Firefox's own network when we may make one (root), else this host's (it needs a non-loopback address)."""
    made = None
    if namespaces_allowed():
        try:
            made = NetNamespace.create()
        except (subprocess.SubprocessError, OSError):  # root without the right to make networks (a container)
            made = None
    if made is not None:
        yield made
        made.destroy()
        return
    if not aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False):
        pytest.skip("Firefox does no loopback ICE: it needs root (a network namespace) or a non-loopback address")
    yield None


def host_address(space: NetNamespace | None) -> str:
    return space.host_ip if space else aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)[0]


@pytest.fixture
async def pages() -> AsyncIterator[PageServer]:
    async with PageServer() as served:
        yield served


def player_url(host: str, pages: PageServer, **params: str) -> str:
    window = {"seconds": str(WINDOW_SECONDS), "frames": str(WINDOW_FRAMES)}
    return f"http://{host}:{pages.port}/player.html?" + urlencode({**window, **params})


def keep(name: str, report: dict) -> None:
    """The page's measurements, for docs/interop.md (observations, not assertions)."""
    (ARTIFACTS / "interop").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "interop" / f"{name}.json").write_text(json.dumps(report, indent=1))


def assert_played(report: dict, log: str) -> None:
    assert report["ok"], f"{report.get('error')}\n{log[-3000:]}"
    assert (report["width"], report["height"]) == (832, 480)
    assert report["decodedInWindow"] >= WINDOW_FRAMES, report
    hidden = [c.split()[4] for c in report["offerCandidates"]]
    assert hidden and all(h.endswith(".local") for h in hidden), "default prefs: only mDNS names are offered"
    assert report["offerEndOfCandidates"] and report["answerSetup"] == "passive"


async def test_firefox_plays_a_whep_stream_with_its_default_mdns_candidates(
    space: NetNamespace | None, pages: PageServer
) -> None:
    host = host_address(space)
    origin = f"http://{host}:{pages.port}"
    async with StunServer() as stun:
        config = HubConfig(max_sessions=2, ice_servers=[RTCIceServer(f"stun:{host}:{stun.port}")])
        async with Server(config, auth=Auth("token", api_key=API_KEY), cors_origins=(origin,)) as server:
            created = await create_session(server, start=True)
            endpoint = f"http://{host}:{server.port}/whep/{created['session']}"
            url = player_url(host, pages, mode="whep", endpoint=endpoint, token=created["tokens"]["viewer"])
            report, log = await firefox(url, space)
            keep("firefox-whep-vp8", report)
            assert_played(report, log)
            assert report["codec"] == "video/VP8"
            assert report["location"].startswith(f"/whep/{created['session']}/"), "Location readable cross-origin"
            assert report["link"] == f'<stun:{host}:{stun.port}>; rel="ice-server"', "Link readable cross-origin"
            assert report["deleteStatus"] == 204 and not server.hub.get(created["session"]).peers


async def test_firefox_directs_a_session_over_its_data_channel_and_gets_vp8_from_an_h264_server(
    space: NetNamespace | None, pages: PageServer
) -> None:
    host = host_address(space)
    origin = f"http://{host}:{pages.port}"
    config = HubConfig(codec="h264", max_sessions=2)  # Firefox without OpenH264 offers VP8 and VP9 only
    async with Server(config, auth=Auth("token", api_key=API_KEY), cors_origins=(origin,)) as server:
        created = await create_session(server, start=False)
        endpoint = f"http://{host}:{server.port}/offer"
        params = {"mode": "offer", "endpoint": endpoint, "session": created["session"]}
        report, log = await firefox(player_url(host, pages, token=created["tokens"]["controller"], **params), space)
        keep("firefox-offer-datachannel", report)
        assert_played(report, log)
        assert report["codec"] == "video/VP8"
        assert report["events"].get("ack", 0) >= 2 and report["events"].get("progress", 0) >= 1, report["events"]
        assert "error" not in report["events"], report["events"]
        assert server.hub.get(created["session"]).session.current_start_frame > 0


async def test_firefox_offering_only_vp9_is_told_which_codecs_the_server_sends(
    space: NetNamespace | None, pages: PageServer
) -> None:
    host = host_address(space)
    origin = f"http://{host}:{pages.port}"
    async with Server(HubConfig(max_sessions=2), auth=Auth("none"), cors_origins=(origin,)) as server:
        created = await create_session(server, start=True)
        endpoint = f"http://{host}:{server.port}/whep/{created['session']}"
        report, _ = await firefox(player_url(host, pages, mode="whep", endpoint=endpoint, codec="video/VP9"), space)
        assert not report["ok"] and report["status"] == 400, report
        assert "VP9" in report["error"] and "VP8" in report["error"] and "H264" in report["error"], report["error"]
