"""GStreamer's webrtcbin from Debian (tests/gst_whep.py, run with Debian's python3-gi) pulling by WHEP.

webrtcbin is a DTLS server with an RSA certificate when it may choose; it completes DTLS because we answer
``a=setup:passive``. It offers exactly the codec it is asked for: each case is a client with one codec.
"""

from __future__ import annotations

import json

import pytest

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .browser_support import ARTIFACTS
from .interop_support import (
    API_KEY,
    GST_CLIENT,
    SYSTEM_PYTHON,
    WINDOW_FRAMES,
    WINDOW_SECONDS,
    create_session,
    missing_gstreamer,
    run_json,
)
from .rtc_client import Server

MISSING = missing_gstreamer()

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
]


@pytest.mark.parametrize(
    ("server_codec", "codec", "profile"),
    [
        ("vp8", "vp8", ""),
        ("vp8", "h264", "42e01f"),  # H.264 Constrained Baseline only, from a VP8 server
        ("h264", "h264", "64001f"),  # H.264 High only: our Constrained Baseline decodes as High
    ],
)
async def test_webrtcbin_plays_a_whep_stream(server_codec: str, codec: str, profile: str) -> None:
    config = HubConfig(codec=server_codec, max_sessions=2)
    async with Server(config, auth=Auth("token", api_key=API_KEY)) as server:
        created = await create_session(server, start=True)
        command = [str(SYSTEM_PYTHON), str(GST_CLIENT), "--url", f"{server.url}/whep/{created['session']}",
                   "--token", created["tokens"]["viewer"], "--codec", codec, "--seconds", str(WINDOW_SECONDS),
                   "--frames", str(WINDOW_FRAMES), "--timeout", "80"]  # fmt: skip
        if profile:
            command += ["--profile", profile]
        report, log = await run_json(command, timeout=90)
        (ARTIFACTS / "interop").mkdir(parents=True, exist_ok=True)
        name = f"gstreamer-{codec}{'-' + profile if profile else ''}-from-{server_codec}"
        (ARTIFACTS / "interop" / f"{name}.json").write_text(json.dumps(report, indent=1))
        assert report["ok"], f"{report.get('error')}\n{log[-3000:]}"
        assert report["answerSetup"] == "passive" and report["status"] == 201
        assert (report["width"], report["height"]) == (832, 480)
        assert report["framesInWindow"] >= WINDOW_FRAMES, report
        assert report["deleteStatus"] == 204 and not server.hub.get(created["session"]).peers
