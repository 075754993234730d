"""Encode once: H.264 WebRTC viewers (real aiortc peers) get the session's shared encoder's packets."""

from __future__ import annotations

from pathlib import Path

import pytest

from longlive_rtc.rtc.packet_track import PacketTrack
from signaling.outputs import OUTPUTS_KEY

from .rtc_client import Client
from .test_outputs_http import OutputServer, call, outputs_config, running_session

pytestmark = pytest.mark.timeout(120)


async def test_h264_viewers_share_one_encode_and_see_every_picture_in_order(tmp_path: Path) -> None:
    async with OutputServer(outputs_config(tmp_path, clip_seconds=0, encode_once=True)) as server:
        created = await running_session(server)
        session, viewer = created["session"], created["tokens"]["viewer"]
        clients = [Client(codec="h264") for _ in range(3)]
        try:
            for client in clients:
                await client.connect(server.url, session=session, role="viewer", token=viewer)
            for client in clients:
                await client.wait_frames(45, timeout=60)
            outputs = server.runner.app[OUTPUTS_KEY].sessions[session]
            fan_out = server.runner.app[OUTPUTS_KEY].viewers[session]
            tracks = list(fan_out.tracks)
            assert len(tracks) == 3 and all(isinstance(t, PacketTrack) for t in tracks)
            assert all(t.packets_sent >= 45 for t in tracks)
            assert outputs.encoder.profile == "baseline" and outputs.encoder.frames_encoded >= 45
            status, state = await call(server, "GET", f"/sessions/{session}/recording", created["tokens"]["controller"])
            assert status == 200 and state["encoder"]["frames_encoded"] == outputs.encoder.frames_encoded
        finally:
            for client in clients:
                await client.close()
    for client in clients:
        assert client.codec_used == "video/H264"
        shown = [frame.stamp.frame for frame in client.frames if frame.stamp is not None]
        assert len(shown) >= 40 and shown == sorted(shown), "every viewer sees the pictures in order"
        assert shown[-1] - shown[0] >= 30
        steps = {b.pts - a.pts for a, b in zip(client.frames, client.frames[1:], strict=False)}
        assert steps <= {6000, 12000, 18000}, f"pts on the 15 FPS clock: {sorted(steps)[:5]}"
