"""Codecs negotiated per viewer: real aiortc clients offering one codec each, against the real server.

Each viewer gets the session's codec when its offer has it, else the best one we send that it can decode;
an offer with none gets a 400 that names the offered and the sent codecs.
"""

from __future__ import annotations

import json
import re

import aiohttp
import pytest
from aiortc.sdp import SessionDescription

from longlive_rtc.rtc.codecs import choose_codec, describe, offered_video_codecs
from longlive_rtc.rtc.hub import HubConfig

from .interop_support import Viewer, capabilities, started_session, whep
from .rtc_client import Server

pytestmark = pytest.mark.timeout(120)

H264_MAIN = {"profile-level-id": "4d001f"}
H264_HIGH = {"profile-level-id": "64001f"}


def answered_codec(answer: str) -> str:
    video = next(m for m in SessionDescription.parse(answer).media if m.kind == "video")
    first = video.rtp.codecs[0]
    return f"{first.mimeType}/{first.parameters.get('profile-level-id', '')}".rstrip("/")


@pytest.mark.parametrize(
    ("server_codec", "offered", "expected"),
    [
        ("vp8", ("video/H264", {}), "video/H264/42e01f"),  # every H.264 profile: Constrained Baseline first
        ("vp8", ("video/H264", H264_MAIN), "video/H264/4d001f"),  # Main only: our Constrained Baseline fits
        ("h264", ("video/H264", H264_HIGH), "video/H264/64001f"),
        ("h264", ("video/VP8", {}), "video/VP8"),  # e.g. Firefox without OpenH264 on an H.264 server
    ],
)
async def test_a_viewer_offering_one_codec_gets_it_and_decodes_frames(
    server_codec: str, offered: tuple[str, dict], expected: str
) -> None:
    async with Server(HubConfig(codec=server_codec, max_sessions=2)) as server:
        session = await started_session(server)
        viewer = Viewer(capabilities(offered[0], **offered[1]))
        try:
            status, answer = await whep(server, session, await viewer.offer())
            assert status == 201, answer
            assert answered_codec(answer) == expected
            await viewer.accept(answer)
            await viewer.wait_frames(10)
            assert viewer.size == (832, 480)
        finally:
            await viewer.close()


async def test_viewers_of_one_session_each_get_their_own_codec() -> None:
    async with Server(HubConfig(codec="vp8", max_sessions=1)) as server:
        session = await started_session(server)
        vp8, h264 = Viewer(capabilities("video/VP8")), Viewer(capabilities("video/H264", **H264_MAIN))
        try:
            for viewer in (vp8, h264):
                status, answer = await whep(server, session, await viewer.offer())
                assert status == 201, answer
                await viewer.accept(answer)
            await vp8.wait_frames(10)
            await h264.wait_frames(10)
            peers = server.hub.get(session).peers.values()
            assert sorted(p.codec for p in peers) == ["h264", "vp8"]
        finally:
            await vp8.close()
            await h264.close()


def _recodec(sdp: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        sdp = sdp.replace(old, new)
    return sdp


async def test_an_offer_with_no_codec_we_send_gets_a_400_naming_both_lists() -> None:
    async with Server(HubConfig(max_sessions=2)) as server:
        session = await started_session(server)
        viewer = Viewer(capabilities("video/VP8"))
        try:
            offer = await viewer.offer()
            # the same client, as one that decodes only VP9 and AV1
            vp9_av1 = _recodec(offer, {"VP8/90000": "VP9/90000"})
            vp9_av1 = vp9_av1.replace("a=rtpmap:", "a=rtpmap:45 AV1/90000\r\na=rtpmap:", 1)
            vp9_av1 = vp9_av1.replace(" UDP/TLS/RTP/SAVPF ", " UDP/TLS/RTP/SAVPF 45 ", 1)
            assert describe(offered_video_codecs(vp9_av1)) == "AV1, VP9"
            status, body = await whep(server, session, vp9_av1)
            assert status == 400, body
            message = json.loads(body)["error"]["message"]
            assert "AV1, VP9" in message and "VP8" in message and "H264" in message, message
            assert "send parameters" not in message
            # H.264 in packetization mode 0 only: aiortc fragments NAL units, so that is no match either
            h264 = Viewer(capabilities("video/H264", **{"profile-level-id": "42e01f"}))
            mode0 = (await h264.offer()).replace("packetization-mode=1", "packetization-mode=0")
            await h264.close()
            status, body = await whep(server, session, mode0)
            assert status == 400 and "H264/42e01f (packetization-mode 0)" in body, body
            body = {"sdp": vp9_av1, "type": "offer"}  # the JSON route answers the same, and frees what it made
            async with aiohttp.ClientSession() as http, http.post(f"{server.url}/offer", json=body) as r:
                assert r.status == 400 and "AV1, VP9" in (await r.json())["error"]["message"]
            assert list(server.hub.sessions) == [session], "a refused offer leaves no session behind"
            assert not server.hub.get(session).peers
        finally:
            await viewer.close()


def test_choose_codec_prefers_the_session_codec_then_ours_in_order() -> None:
    both = _offer_text(["VP8/90000", "H264/90000"], fmtp={"H264": "packetization-mode=1;profile-level-id=42e01f"})
    assert choose_codec(both, "vp8") == "vp8" and choose_codec(both, "h264") == "h264"
    high10 = _offer_text(["H264/90000"], fmtp={"H264": "packetization-mode=1;profile-level-id=6e001f"})
    with pytest.raises(ValueError, match="H264/6e001f"):  # High 10: aiortc cannot match it
        choose_codec(high10, "vp8")
    with pytest.raises(ValueError, match="unknown codec"):
        choose_codec(both, "vp9")


def _offer_text(codecs: list[str], fmtp: dict[str, str]) -> str:
    payloads = list(range(96, 96 + len(codecs)))
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
             f"m=video 9 UDP/TLS/RTP/SAVPF {' '.join(map(str, payloads))}", "c=IN IP4 0.0.0.0", "a=mid:0"]  # fmt: skip
    for payload, codec in zip(payloads, codecs, strict=True):
        lines.append(f"a=rtpmap:{payload} {codec}")
        name = codec.split("/")[0]
        if name in fmtp:
            lines.append(f"a=fmtp:{payload} {fmtp[name]}")
    return "\r\n".join(lines) + "\r\n"


def _renumber(sdp: str, old: int, new: int) -> str:
    """Give payload type ``old`` the number ``new`` everywhere it appears (m= line, rtpmap, fmtp, rtcp-fb, apt)."""
    sdp = re.sub(rf"^(a=(?:rtpmap|fmtp|rtcp-fb):){old}\b", rf"\g<1>{new}", sdp, flags=re.MULTILINE)
    sdp = re.sub(rf"\bapt={old}\b", f"apt={new}", sdp)
    return re.sub(rf"^(m=video .*) {old}\b", rf"\g<1> {new}", sdp, flags=re.MULTILINE)


async def test_the_answer_keeps_the_offers_payload_types_in_35_to_63() -> None:
    """Chromium numbers codecs 35-63 once 96-127 are full; aiortc answered its own numbers for those."""
    async with Server(HubConfig(codec="h264", max_sessions=1)) as server:
        session = await started_session(server)
        viewer = Viewer(capabilities("video/H264"))
        try:
            offer = await viewer.offer()
            high444 = re.search(r"a=fmtp:(\d+) [^\r\n]*profile-level-id=f4001f", offer).group(1)
            rtx = re.search(rf"a=fmtp:(\d+) apt={high444}\b", offer).group(1)
            offer = _renumber(_renumber(offer, int(high444), 41), int(rtx), 42)
            status, answer = await whep(server, session, offer)
            assert status == 201, answer
            offered = set(re.search(r"^m=video \S+ \S+ (.*)$", offer, re.MULTILINE).group(1).split())
            answered = re.search(r"^m=video \S+ \S+ (.*)$", answer, re.MULTILINE).group(1).split()
            assert set(answered) <= offered and len(answered) == len(set(answered)), (answered, offered)
            assert "a=fmtp:41 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=f4001f" in answer
            await viewer.accept(answer)
            await viewer.wait_frames(5)
        finally:
            await viewer.close()
