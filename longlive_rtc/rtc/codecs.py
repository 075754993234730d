"""Video codec choice for aiortc peers, and the 15 FPS fix of aiortc's H.264 rate control."""

from __future__ import annotations

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import h264

CODECS = {"vp8": "video/VP8", "h264": "video/H264"}


def configure_h264_rate(fps: int) -> None:
    """aiortc's H.264 encoder assumes 30 fps and would deliver half its bitrate at 15; tell it the rate.

    Must run before the first H.264 encoder is created.
    """
    h264.MAX_FRAME_RATE = fps


def prefer_codec(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Restrict a video transceiver to ``codec`` (plus RTX); call before ``setRemoteDescription``."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    wanted = [c for c in capabilities if c.mimeType == CODECS[codec] or c.mimeType == "video/rtx"]
    transceiver.setCodecPreferences(wanted)
