"""Encode once: H.264 WebRTC viewers (real aiortc peers) get the session's shared encoder's packets;
a viewer joining or sending PLI gets a keyframe at once (rate-limited per session)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from longlive_rtc.rtc.packet_track import KEYFRAME_GAP, PacketTrack
from signaling.outputs import OUTPUTS_KEY

from .rtc_client import Client, Received, wait_until
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


@dataclass
class KeyframeClient(Client):
    """A viewer that notes when each picture arrives and which are keyframes (IDR pictures)."""

    keyframes: list[float] = field(default_factory=list)  # time.monotonic() of each keyframe

    async def _read_frames(self, track) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if frame.key_frame:
                    self.keyframes.append(now)
                self.frames.append(Received(frame.pts, frame.width, frame.height, None, now, np.zeros((6, 8))))

    async def send_pli(self) -> None:
        """Send one RTCP PLI for the video, as a receiver does on picture loss (aiortc's own method)."""
        receiver = self.pc.getTransceivers()[0].receiver
        video = next(m for m in SessionDescription.parse(self.pc.remoteDescription.sdp).media if m.kind == "video")
        await receiver._send_rtcp_pli(video.ssrc[0].ssrc)  # what aiortc's receiver calls on a decoder error


LONG_GOP = 60.0  # seconds between the encoder's own keyframes in these tests: every other one is forced


async def test_a_viewer_joining_mid_gop_starts_at_a_keyframe_made_for_it_at_once(tmp_path: Path) -> None:
    config = outputs_config(tmp_path, clip_seconds=0, encode_once=True, keyframe_seconds=LONG_GOP)
    async with OutputServer(config) as server:
        created = await running_session(server)
        session, viewer = created["session"], created["tokens"]["viewer"]
        first, second = KeyframeClient(codec="h264"), KeyframeClient(codec="h264")
        try:
            await first.connect(server.url, session=session, role="viewer", token=viewer)
            await first.wait_frames(30, timeout=60)  # two seconds into the encoder's 60-s GOP
            joined = time.monotonic()
            await second.connect(server.url, session=session, role="viewer", token=viewer)
            await second.wait_frames(15, timeout=LONG_GOP / 2)
            fan_out = server.runner.app[OUTPUTS_KEY].viewers[session]
            assert fan_out.keyframes_forced >= 2
        finally:
            for client in (first, second):
                await client.close()
    assert second.keyframes and second.frames[0].at == second.keyframes[0], "the first picture is a keyframe"
    waited = second.frames[0].at - joined
    assert waited < 10, f"the first picture came {waited:.1f} s after joining (GOP {LONG_GOP:.0f} s)"
    assert len(first.keyframes) >= 2, "the viewer already watching got the joiner's keyframe too"


async def test_a_pli_from_a_viewer_forces_a_keyframe_and_a_flood_of_them_is_rate_limited(tmp_path: Path) -> None:
    config = outputs_config(tmp_path, clip_seconds=0, encode_once=True, keyframe_seconds=LONG_GOP)
    async with OutputServer(config) as server:
        created = await running_session(server)
        session, viewer = created["session"], created["tokens"]["viewer"]
        client = KeyframeClient(codec="h264")
        try:
            await client.connect(server.url, session=session, role="viewer", token=viewer)
            await client.wait_frames(30, timeout=60)
            assert len(client.keyframes) == 1, "one keyframe to start with; the next is a GOP away"
            await client.send_pli()
            await wait_until(lambda: len(client.keyframes) >= 2, 10, "a keyframe after the PLI")
            fan_out = server.runner.app[OUTPUTS_KEY].viewers[session]
            forced = fan_out.keyframes_forced
            flood_started = time.monotonic()
            for _ in range(40):  # 20 PLIs a second for 2 s
                await client.send_pli()
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            flood = time.monotonic() - flood_started
            requests, forced_in_flood = fan_out.keyframe_requests, fan_out.keyframes_forced - forced
            status, state = await call(server, "GET", f"/sessions/{session}/recording", created["tokens"]["controller"])
            assert status == 200 and state["webrtc_viewers"]["keyframes_forced"] == fan_out.keyframes_forced
        finally:
            await client.close()
    assert requests >= 40, f"every PLI reached the shared encoder's fan-out ({requests} requests)"
    most = flood / KEYFRAME_GAP + 1
    assert 2 <= forced_in_flood <= most, f"{forced_in_flood} keyframes forced in {flood:.1f} s of PLIs"
    assert len(client.keyframes) <= 2 + most, f"{len(client.keyframes)} keyframes received"
