"""Video codecs per peer: the best one an offer can receive among those we send, and aiortc's H.264 fixes.

We send VP8 and H.264. Our H.264 is Constrained Baseline (aiortc's x264 settings), which every H.264
decoder can decode (each profile's decoders also decode Constrained Baseline streams), so an offer of any
H.264 profile aiortc knows is answered with H.264 under that profile's payload type, provided it uses
packetization mode 1 (aiortc's packetizer fragments NAL units: FU-A, STAP-A).
"""

from __future__ import annotations

from aiortc import RTCRtpSender, RTCRtpTransceiver, rtp
from aiortc.codecs import CODECS as AIORTC_CODECS
from aiortc.codecs import h264
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import SessionDescription, parse_h264_profile_level_id

from .sdp import OfferError

#: What the server can send, in its default order of preference.
CODECS = {"vp8": "video/VP8", "h264": "video/H264"}
#: H.264 profile-level-ids (level 3.1) we answer, most exact description of our stream first: Constrained
#: Baseline and Baseline (aiortc's own), then Main, Constrained High, High and High 4:4:4 Predictive.
H264_PROFILES = ("42e01f", "42001f", "4d001f", "640c1f", "64001f", "f4001f")
#: Payload-format codecs, not pictures: they never make an offer receivable.
NOT_VIDEO = frozenset({"rtx", "red", "ulpfec", "flexfec-03"})


class NoCommonCodec(OfferError):
    """The offer lists no video codec we can send."""


def configure_aiortc(fps: int) -> None:
    """aiortc's module settings for this server, once before the first offer (idempotent).

    Its H.264 encoder assumes 30 fps and would deliver half its bitrate at 15 (told the rate); it learns
    the H.264 profiles beyond its baseline ones and answers every dynamic codec under the offer's number.
    """
    h264.MAX_FRAME_RATE = fps
    register_h264_profiles()
    use_offered_payload_types()


def register_h264_profiles() -> None:
    """Teach aiortc the H.264 profiles beyond its two baseline ones (idempotent).

    aiortc matches an offered H.264 codec to its own only on the same profile; with these entries it
    answers Main or High offers too. They share the H.264 encoder (Constrained Baseline output).
    """
    video = AIORTC_CODECS["video"]
    known = {str(c.parameters.get("profile-level-id", "")).lower() for c in video if c.mimeType == "video/H264"}
    payload_type = max(c.payloadType for c in video) + 1
    for profile in H264_PROFILES:
        if profile in known:
            continue
        parameters = {"level-asymmetry-allowed": "1", "packetization-mode": "1", "profile-level-id": profile}
        feedback = [RTCRtcpFeedback("nack"), RTCRtcpFeedback("nack", "pli"), RTCRtcpFeedback("goog-remb")]
        video.append(RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=payload_type,
                                           rtcpFeedback=feedback, parameters=parameters))  # fmt: skip
        video.append(RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=payload_type + 1,
                                           parameters={"apt": payload_type}))  # fmt: skip
        payload_type += 2


#: Dynamic RTP payload types: 96-127 (RFC 3551) and, with rtcp-mux, 35-63 (RFC 5761 section 4), which
#: Chromium uses once 96-127 are taken (its High and 4:4:4 H.264 entries, for instance).
DYNAMIC_PAYLOAD_TYPES = frozenset(range(35, 64)) | frozenset(range(96, 128))


def use_offered_payload_types() -> None:
    """Make aiortc answer every dynamic codec under the offer's payload type (idempotent).

    aiortc adopts the offer's payload type only in 96-127; for one in 35-63 it answered its own number,
    which can collide with another codec of the offer (Chromium: "Duplicate payload type").
    """
    rtp.DYNAMIC_PAYLOAD_TYPES = DYNAMIC_PAYLOAD_TYPES


def offered_video_codecs(offer_sdp: str) -> list[RTCRtpCodecParameters]:
    """The codecs of the offer's first video section (the one our track answers)."""
    video = next(m for m in SessionDescription.parse(offer_sdp).media if m.kind == "video")
    return list(video.rtp.codecs)


def can_send(codec: str, offered: RTCRtpCodecParameters) -> bool:
    """Whether a client offering ``offered`` can receive what we send as ``codec``."""
    mime = offered.mimeType.lower()
    if codec == "vp8":
        return mime == "video/vp8"
    if codec == "h264":
        return (
            mime == "video/h264"
            and str(offered.parameters.get("packetization-mode", "0")) == "1"
            and _h264_profile_known(str(offered.parameters.get("profile-level-id", "42e01f")))
        )
    return False


def choose_codec(offer_sdp: str, preferred: str) -> str:
    """The codec to answer with: ``preferred`` when the offer can receive it, else the first of ours that it
    can; :class:`NoCommonCodec`, naming both lists, when there is none."""
    if preferred not in CODECS:
        raise ValueError(f"unknown codec {preferred!r}; choose one of {', '.join(CODECS)}")
    offered = offered_video_codecs(offer_sdp)
    for codec in [preferred, *(c for c in CODECS if c != preferred)]:
        if any(can_send(codec, o) for o in offered):
            return codec
    names = describe(offered) or "none"
    raise NoCommonCodec(
        f"no video codec in common: the offer lists {names}; this server sends VP8 and H264 "
        "(packetization-mode=1, any profile up to High 4:4:4)"
    )


def describe(offered: list[RTCRtpCodecParameters]) -> str:
    """The offered video codecs for people: ``VP9, AV1, H264/4d001f (packetization-mode 0)``."""
    names: list[str] = []
    for codec in offered:
        name = codec.mimeType.split("/")[-1]
        if name.lower() in NOT_VIDEO:
            continue
        if name.lower() == "h264":
            name += f"/{codec.parameters.get('profile-level-id', '42e01f')}"
            mode = str(codec.parameters.get("packetization-mode", "0"))
            name += "" if mode == "1" else f" (packetization-mode {mode})"
        if name not in names:
            names.append(name)
    return ", ".join(names)


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Restrict a video transceiver to ``codec`` (plus RTX); call before ``setRemoteDescription``."""
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in capabilities if c.mimeType == CODECS[codec]]
    if codec == "h264":
        wanted.sort(key=_h264_rank)
    transceiver.setCodecPreferences(wanted + [c for c in capabilities if c.mimeType == "video/rtx"])


def _h264_rank(capability: RTCRtpCodecCapability) -> int:
    profile = str(capability.parameters.get("profile-level-id", "")).lower()
    return H264_PROFILES.index(profile) if profile in H264_PROFILES else len(H264_PROFILES)


def _h264_profile_known(profile_level_id: str) -> bool:
    """A profile aiortc can match (its six H.264 profiles); High 10, 4:2:2 and the like are not."""
    try:
        parse_h264_profile_level_id(profile_level_id)
    except ValueError:
        return False
    return True
