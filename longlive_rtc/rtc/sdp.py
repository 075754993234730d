"""SDP offers checked before they reach aiortc: text, shape, size, sections and remote candidates bounded."""

from __future__ import annotations

import re

from aiortc.sdp import SessionDescription

#: A browser's offer is a few KiB; this leaves room for many codecs and candidates.
MAX_SDP_BYTES = 64 * 1024
#: Media sections (m= lines) in one offer: a viewer needs one video section and a data channel.
MAX_MEDIA_SECTIONS = 8
#: Distinct remote ICE candidates (transport, address, port) in one offer: each costs connectivity checks.
MAX_REMOTE_CANDIDATES = 32

SDP_LINE = re.compile(r"^[a-z]=\S")
#: C0 controls but TAB, CR and LF; DEL and C1 controls; the line breaks Python's splitlines() knows beyond
#: CR/LF; lone surrogates (text that cannot be encoded).
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ (\S+) \d+ (\S+) (\d+) ", re.IGNORECASE)


class OfferError(ValueError):
    """An offer that cannot be answered: malformed SDP, wrong type, no video section or over a limit."""


def check_offer(sdp: object, kind: object = "offer") -> str:
    """Validate an SDP offer well enough to fail early with a clear message; returns the SDP text."""
    if kind != "offer":
        raise OfferError(f"expected an SDP of type 'offer', got {str(kind)[:40]!r}")
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError("'sdp' must be a non-empty string")
    bad = FORBIDDEN.search(sdp)
    if bad is not None:
        line = sdp.count("\n", 0, bad.start()) + 1
        raise OfferError(f"malformed SDP: control character U+{ord(bad.group()):04X} on line {line}")
    lines = sdp.strip().splitlines()
    _check_counts(lines)
    if len(sdp) > MAX_SDP_BYTES or len(sdp.encode("utf-8")) > MAX_SDP_BYTES:
        raise OfferError(f"the SDP is over the limit of {MAX_SDP_BYTES} bytes")
    if not lines[0].startswith("v=0"):
        raise OfferError("malformed SDP: it must start with 'v=0'")
    for number, line in enumerate(lines, start=1):
        if not SDP_LINE.match(line):
            raise OfferError(f"malformed SDP: line {number} is not '<letter>=<value>': {line[:60]!r}")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the bad line provokes
        raise OfferError(f"malformed SDP: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not any(m.kind == "video" for m in parsed.media):
        raise OfferError("the offer has no video section (add a recvonly video transceiver)")
    return sdp


def _check_counts(lines: list[str]) -> None:
    """Media sections and distinct remote candidates under their caps (counted before aiortc parses)."""
    sections = sum(1 for line in lines if line.startswith("m="))
    if sections > MAX_MEDIA_SECTIONS:
        raise OfferError(f"the offer has {sections} media sections; at most {MAX_MEDIA_SECTIONS} are accepted")
    candidates = set()
    for line in lines:
        if line.startswith("a=candidate:"):
            match = CANDIDATE.match(line)
            candidates.add(match.groups() if match else line)
    if len(candidates) > MAX_REMOTE_CANDIDATES:
        raise OfferError(
            f"the offer lists {len(candidates)} remote ICE candidates; at most {MAX_REMOTE_CANDIDATES} are accepted"
        )
