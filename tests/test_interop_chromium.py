"""Debian's Chromium on the third-party player page (tests/js/player.html), not on our own pages, with its
default mDNS host candidates: WHEP from another origin, one codec offered per case."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aioice.ice
import pytest
from playwright.async_api import Browser, async_playwright

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from .interop_support import API_KEY, WINDOW_FRAMES, WINDOW_SECONDS, PageServer, create_session
from .rtc_client import Server

pytestmark = [
    pytest.mark.interop,
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

#: Our browser tests' flags less the two that turn mDNS candidates off: Chromium as shipped hides its address.
ARGS = [
    a
    for a in CHROMIUM_ARGS
    if a not in ("--use-fake-ui-for-media-stream", "--disable-features=WebRtcHideLocalIpsWithMdns")
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield launched
        await launched.close()


@pytest.mark.parametrize(
    ("server_codec", "offered", "expected"), [("vp8", "", "video/VP8"), ("vp8", "video/H264", "video/H264")]
)
async def test_chromium_plays_whep_on_a_third_party_page(
    browser: Browser, server_codec: str, offered: str, expected: str
) -> None:
    addresses = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    host = addresses[0] if addresses else "127.0.0.1"
    async with PageServer() as pages:
        origin = f"http://{host}:{pages.port}"
        config = HubConfig(codec=server_codec, max_sessions=2)
        async with Server(config, auth=Auth("token", api_key=API_KEY), cors_origins=(origin,)) as server:
            created = await create_session(server, start=True)
            endpoint = f"http://{host}:{server.port}/whep/{created['session']}"
            params = {"mode": "whep", "endpoint": endpoint, "token": created["tokens"]["viewer"],
                      "seconds": WINDOW_SECONDS, "frames": WINDOW_FRAMES}  # fmt: skip
            if offered:
                params["codec"] = offered
            page = await browser.new_page()
            try:
                await page.goto(f"{origin}/player.html?{urlencode(params)}")
                await page.wait_for_function("window.report !== undefined", timeout=60_000)
                report = await page.evaluate("window.report")
            finally:
                await page.close()
            (ARTIFACTS / "interop").mkdir(parents=True, exist_ok=True)
            name = f"chromium-whep-{(offered or 'any').split('/')[-1].lower()}"
            (ARTIFACTS / "interop" / f"{name}.json").write_text(json.dumps(report, indent=1))
            assert report["ok"], report.get("error")
            assert report["codec"] == expected and (report["width"], report["height"]) == (832, 480)
            assert report["decodedInWindow"] >= WINDOW_FRAMES, report
            assert report["answerSetup"] == "passive" and report["deleteStatus"] == 204
