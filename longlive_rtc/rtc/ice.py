"""ICE and DTLS choices of this server's answers, so that clients nobody here wrote can connect.

- Remote mDNS candidates (``<uuid>.local``, what Firefox and Chromium offer by default) are resolved where
  the network allows; the others are dropped, and ICE keeps waiting for the peer-reflexive candidates that
  the client's own connectivity checks reveal (RFC 8445 section 7.3.1.3), ``a=end-of-candidates`` or not.
- The DTLS role: an ``actpass`` offer is answered ``passive`` (RFC 5763 section 5), so the client is the
  DTLS client and picks a cipher for our certificate, whatever kind of certificate it has itself.
"""

from __future__ import annotations

import asyncio
import logging

import aioice.ice
from aioice.mdns import is_mdns_hostname
from aiortc import RTCPeerConnection
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.sdp import SessionDescription, candidate_from_sdp

from .sdp import FORBIDDEN, MAX_REMOTE_CANDIDATES, SDP_LINE

log = logging.getLogger(__name__)

#: Seconds to wait for an mDNS answer; a host on the same link answers in milliseconds.
MDNS_TIMEOUT = 0.5
END_OF_CANDIDATES = "a=end-of-candidates"


class FragmentError(ValueError):
    """A trickle-ice-sdpfrag (RFC 8840) that cannot be applied: malformed, or over the candidate limit."""


class IceRestartUnsupported(FragmentError):
    """The fragment carries new ICE credentials (an ICE restart), which we do not support."""


async def accept_remote_candidates(sdp: str, timeout: float = MDNS_TIMEOUT) -> str:
    """The offer with its mDNS candidates resolved or dropped, and ICE told to wait for peer-reflexive ones.

    aioice itself drops an mDNS name it cannot resolve; then, at ``a=end-of-candidates``, it removes the
    component left without candidates and fails at once, before the client's checks arrive (and even a
    pair learnt from them could no longer complete the pruned component). So the end-of-candidates mark
    is removed from every media section that lost a candidate here or has no UDP candidate: aioice then
    keeps its check list open, as it does for an offer without candidates, and a client whose checks
    reach us connects. A peer that never connects is closed by the hub's connect timeout.
    """
    lines = sdp.splitlines()
    names = {fields[4] for fields in _candidates(lines) if is_mdns_hostname(fields[4])}
    hidden = any(is_mdns_hostname(line.split(" ")[-1]) for line in lines if line.startswith(("c=", "a=rtcp:")))
    if not names and not hidden and not any(line.strip() == END_OF_CANDIDATES for line in lines):
        return sdp
    resolved = await resolve_mdns(names, timeout) if names else {}
    out: list[str] = []
    for section in _sections(lines):
        kept: list[str] = []
        dropped = 0
        for line in section:
            fields = _candidate_fields(line)
            if fields is not None and is_mdns_hostname(fields[4]):
                address = resolved.get(fields[4])
                if address is None:
                    dropped += 1
                    continue
                fields[4] = address
                line = " ".join(fields)
            elif line.startswith(("c=", "a=rtcp:")):
                line = _connection_address(line, resolved)
            kept.append(line)
        has_udp = any(f[2].lower() == "udp" for f in _candidates(kept))
        if dropped or not has_udp:
            kept = [line for line in kept if line.strip() != END_OF_CANDIDATES]
        out += kept
    if names:
        log.info(
            "remote mDNS candidates: %d of %d names resolved%s", len(resolved), len(names),
            "" if len(resolved) == len(names) else "; waiting for peer-reflexive candidates",
        )  # fmt: skip
    return "\r\n".join(out) + "\r\n"


async def resolve_mdns(names: set[str], timeout: float = MDNS_TIMEOUT) -> dict[str, str]:
    """Resolve mDNS host names at once with aioice's shared responder; the names that answered."""
    subscriber = object()
    try:
        protocol = await aioice.ice.get_or_create_mdns_protocol(subscriber)
    except OSError as exc:  # no multicast, or port 5353 unavailable
        log.info("cannot resolve mDNS names here: %s", exc)
        return {}
    try:
        ordered = sorted(names)
        answers = await asyncio.gather(*(protocol.resolve(name, timeout=timeout) for name in ordered))
    finally:
        await aioice.ice.unref_mdns_protocol(subscriber)
    return {name: address for name, address in zip(ordered, answers, strict=True) if address is not None}


async def add_trickled_candidates(pc: RTCPeerConnection, fragment: str, timeout: float = MDNS_TIMEOUT) -> int:
    """Apply a trickle ICE fragment (``application/trickle-ice-sdpfrag``, RFC 8840) to an answered connection;
    returns how many candidates were added.

    Candidates get the offer's treatment: mDNS names resolved or silently dropped, as are candidates aiortc
    cannot use. ``a=end-of-candidates`` is ignored, so ICE keeps waiting for peer-reflexive candidates (the
    hub's connect timeout ends a peer that never connects). New ``ice-ufrag``/``ice-pwd`` values are an ICE
    restart: :class:`IceRestartUnsupported`.
    """
    if pc.remoteDescription is None:
        raise FragmentError("the connection has no offer yet")
    lines = [line.strip() for line in fragment.splitlines() if line.strip()]
    bad = FORBIDDEN.search(fragment)
    if bad is not None or not lines or not all(SDP_LINE.match(line) for line in lines):
        raise FragmentError("malformed SDP fragment: expected lines of '<letter>=<value>'")
    ufrag = _ice_value(pc.remoteDescription.sdp, "ice-ufrag")
    mid: str | None = None
    found: list[tuple[str | None, list[str]]] = []
    for line in lines:
        if line.startswith("a=ice-ufrag:") or line.startswith("a=ice-pwd:"):
            if line.startswith("a=ice-ufrag:") and line.split(":", 1)[1] != ufrag:
                raise IceRestartUnsupported("ICE restarts are not supported (the fragment has a new ice-ufrag)")
        elif line.startswith("m="):
            mid = None
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        else:
            fields = _candidate_fields(line)
            if line.startswith("a=candidate:") and fields is None:
                raise FragmentError(f"malformed candidate: {line[:80]!r}")
            if fields is not None:
                found.append((mid, fields))
    known = sum(len(t.getRemoteCandidates()) for t in _ice_transports(pc))
    if known + len(found) > MAX_REMOTE_CANDIDATES:
        raise FragmentError(f"over the limit of {MAX_REMOTE_CANDIDATES} remote ICE candidates per connection")
    names = {fields[4] for _, fields in found if is_mdns_hostname(fields[4])}
    resolved = await resolve_mdns(names, timeout) if names else {}
    added = 0
    for candidate_mid, fields in found:
        if is_mdns_hostname(fields[4]):
            if fields[4] not in resolved:
                continue
            fields[4] = resolved[fields[4]]
        try:
            candidate = candidate_from_sdp(" ".join(fields)[len("a=candidate:") :])
        except (ValueError, IndexError, AssertionError):
            raise FragmentError(f"malformed candidate: {' '.join(fields)[:80]!r}") from None
        candidate.sdpMid = candidate_mid
        candidate.sdpMLineIndex = 0 if candidate_mid is None else None
        await pc.addIceCandidate(candidate)
        added += 1
    return added


def answer_dtls_passive(pc: RTCPeerConnection, offer_sdp: str) -> None:
    """Make the answer say ``a=setup:passive`` (DTLS server) to an ``actpass`` offer; call after
    ``setRemoteDescription(offer)``, before ``createAnswer``.

    aiortc answers ``active`` and, as DTLS client, offers only ECDSA cipher suites, which a DTLS server
    with an RSA certificate (GStreamer's webrtcbin) cannot use: "no shared cipher". As DTLS server we
    present our ECDSA certificate and the client offers its full list. An offer that fixed a role
    (``active`` or ``passive``) keeps the complementary one, which aiortc chooses itself.
    """
    actpass = {m.rtp.muxId for m in SessionDescription.parse(offer_sdp).media if m.dtls and m.dtls.role == "auto"}
    transports = [t.receiver.transport for t in pc.getTransceivers() if t.mid in actpass]
    if pc.sctp is not None and pc.sctp.mid in actpass:
        transports.append(pc.sctp.transport)
    for transport in dict.fromkeys(transports):
        if transport._role == "auto":  # aiortc's "not chosen yet": it would answer active
            transport._set_role("server")


def _connection_address(line: str, resolved: dict[str, str]) -> str:
    """A ``c=`` or ``a=rtcp:`` line naming an mDNS host (Firefox's ``a=rtcp``) with an address aiortc can parse:
    the resolved one, else the unspecified address (these lines are defaults; ICE decides the path)."""
    fields = line.split(" ")
    if not is_mdns_hostname(fields[-1]):
        return line
    address = resolved.get(fields[-1])
    if address is None or ("IP6" in fields) != (":" in address):
        address = "::" if "IP6" in fields else "0.0.0.0"
    return " ".join([*fields[:-1], address])


def _ice_transports(pc: RTCPeerConnection) -> list[RTCIceTransport]:
    transports = [t.receiver.transport.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport.transport)
    return list(dict.fromkeys(transports))


def _ice_value(sdp: str, name: str) -> str | None:
    prefix = f"a={name}:"
    return next((line[len(prefix) :].strip() for line in sdp.splitlines() if line.startswith(prefix)), None)


def _candidate_fields(line: str) -> list[str] | None:
    """``a=candidate:`` split into fields (foundation, component, transport, priority, address, port, ...)."""
    if not line.startswith("a=candidate:"):
        return None
    fields = line.split(" ")
    return fields if len(fields) >= 8 else None


def _candidates(lines: list[str]) -> list[list[str]]:
    return [fields for fields in map(_candidate_fields, lines) if fields is not None]


def _sections(lines: list[str]) -> list[list[str]]:
    """The session part, then each media section (from its ``m=`` line)."""
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections
