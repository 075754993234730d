"""WHIP out: publish a session's on-air frames to a WHIP ingest (MediaMTX, LiveKit, any WHIP server).

One :class:`WhipPublisher` per output: a sendonly RTCPeerConnection with a viewer track of the session's
on-air clock, its complete offer (aiortc gathers ICE before ``setLocalDescription`` returns) POSTed as
``application/sdp`` with an optional Bearer token, the 201 answer applied, the ``Location`` resource kept
and DELETEd on stop. A failed POST or a connection that fails or closes is retried with exponential
backoff (1 s doubling to 30 s, with jitter); the stream and its viewers never wait for it. It lives in
``rtc`` (it needs aiortc), beside the viewers it resembles. The token is never logged nor reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
CONNECT_TIMEOUT = 15.0  # from the answer to ICE/DTLS connected
HTTP_TIMEOUT = 10.0


PRIVATE_REFUSED = (
    "an ingest on a private, loopback or link-local address, which this server only pushes to with --whip-private"
)


class BadWhipUrl(ValueError):
    """A WHIP URL that is not an absolute http(s) URL, or names a private address the server may not reach."""


def is_public(address: str) -> bool:
    """Whether the IP ``address`` is a globally reachable one (not private, loopback, link-local, reserved...)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


def check_url(url: object, allow_private: bool = False) -> str:
    """``url`` when it is an absolute http or https URL with a host, else :class:`BadWhipUrl`; without
    ``allow_private``, a host that is a non-public IP literal or ``localhost`` is refused too (names are
    checked again at every connection, on what they resolve to: :class:`PublicOnlyResolver`)."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise BadWhipUrl("'whip' must be the ingest's URL (a string of at most 2048 characters)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadWhipUrl("'whip' must be an absolute http:// or https:// URL")
    host = parts.hostname.rstrip(".").lower()
    if not allow_private and (host == "localhost" or host.endswith(".localhost") or not _public_or_name(host)):
        raise BadWhipUrl(f"'whip' names {PRIVATE_REFUSED}")
    return url


def _public_or_name(host: str) -> bool:
    """Whether ``host`` is a public address literal or a name (names are checked when they resolve)."""
    try:
        return is_public(host)
    except ValueError:
        return True


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver keeping only the public addresses of a name, so that a URL a session's controller
    gave cannot reach the server's own network by a name that resolves into it."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        found = [entry for entry in await self._inner.resolve(host, port, family) if is_public(entry["host"])]
        if not found:
            raise OSError(f"{host} resolves to {PRIVATE_REFUSED} only")
        return found

    async def close(self) -> None:
        await self._inner.close()


def backoff(attempt: int, first: float = FIRST_BACKOFF, most: float = MAX_BACKOFF) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling up to ``most``, +-20 % jitter."""
    return min(most, first * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


class WhipPublisher:
    """One WHIP output of a session; :meth:`start` runs it until :meth:`stop`."""

    def __init__(
        self, output_id: str, url: str, token: str | None, make_track: Callable[[], MediaStreamTrack],
        *, first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF, allow_private: bool = False,
    ) -> None:  # fmt: skip
        self.id, self.url = output_id, check_url(url, allow_private)
        self.allow_private = allow_private
        self._token, self._make_track = token, make_track
        self._first, self._most = first_backoff, max_backoff
        self.state = "connecting"  # connecting | live | retrying | stopped
        self.error: str | None = None
        self.attempts = 0
        self.connections = 0  # times it went live
        self.created = time.time()
        self.live_since: float | None = None
        self.retry_at: float | None = None
        self.resource: str | None = None
        self._pc: RTCPeerConnection | None = None
        self._track: MediaStreamTrack | None = None
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    def info(self) -> dict[str, Any]:
        """The listing entry (no token)."""
        return {
            "id": self.id, "whip": self.url, "state": self.state, "error": self.error, "attempts": self.attempts,
            "connections": self.connections, "created": self.created, "live_since": self.live_since,
            "retry_at": self.retry_at, "frames_sent": getattr(self._track, "frames_sent", 0),
        }  # fmt: skip

    def start(self) -> None:
        resolver = None if self.allow_private else PublicOnlyResolver()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT), connector=aiohttp.TCPConnector(resolver=resolver)
        )
        self._task = asyncio.ensure_future(self._run())

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _run(self) -> None:
        failures = 0
        while True:
            self.attempts += 1
            self.state, self.retry_at = "connecting", None
            try:
                await self._publish()
                failures = 0  # it was live: the next failure starts the backoff over
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: report it, retry later
                failures += 1
                self.error = f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__
                log.info("WHIP output %s: %s", self.id, self.error)
            await self._teardown()
            delay = backoff(max(failures, 1), self._first, self._most)
            self.state, self.retry_at = "retrying", time.time() + delay
            await asyncio.sleep(delay)

    async def _publish(self) -> None:
        """One connection: offer, answer, live until it fails or closes (then raises)."""
        pc = self._pc = RTCPeerConnection()
        self._track = self._make_track()
        pc.addTransceiver(self._track, direction="sendonly")
        changed = asyncio.Event()
        pc.on("connectionstatechange", changed.set)
        await pc.setLocalDescription(await pc.createOffer())  # waits for ICE gathering (non-trickle)
        assert self._session is not None
        async with self._session.post(  # a redirect could name a private address literal: not followed
            self.url,
            data=pc.localDescription.sdp,
            headers=self._headers("application/sdp"),
            allow_redirects=self.allow_private,
        ) as response:
            if response.status != 201:  # its body is not repeated: the URL may name a service of the host's
                raise ConnectionError(f"the ingest answered {response.status} {response.reason}")
            body = await response.text()
            location = response.headers.get("Location")
            self.resource = urljoin(str(response.url), location) if location else None
        if self.resource is not None:
            try:  # the DELETE at the end goes where the ingest says: a public host too, unless allowed
                check_url(self.resource, self.allow_private)
            except BadWhipUrl:
                log.info("WHIP output %s: its resource URL is not DELETEd (%s)", self.id, PRIVATE_REFUSED)
                self.resource = None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed"):
                raise ConnectionError(f"the connection {pc.connectionState} before it went live")
            changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"not connected within {CONNECT_TIMEOUT:g} s of the answer")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # not wait_for: on 3.11 it can swallow stop()'s cancel
                    await changed.wait()
        self.state, self.error, self.live_since = "live", None, time.time()
        self.connections += 1
        log.info("WHIP output %s live", self.id)
        while pc.connectionState not in ("failed", "closed"):
            changed.clear()
            await changed.wait()
        raise ConnectionError(f"the connection {pc.connectionState}")

    async def _teardown(self) -> None:
        """Close the peer and DELETE the ingest's resource (best effort)."""
        pc, self._pc = self._pc, None
        track, self._track = self._track, None
        if track is not None:
            track.stop()
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()
        resource, self.resource = self.resource, None
        if resource and self._session is not None and not self._session.closed:
            try:
                async with self._session.delete(resource, headers=self._headers()) as response:
                    await response.read()
            except Exception as exc:  # the ingest may be gone: its resource times out on its own
                log.info("WHIP output %s: DELETE of its resource failed: %s", self.id, type(exc).__name__)
        self.live_since = None

    async def stop(self) -> None:
        """Stop for good: the connection closed, the resource DELETEd."""
        if self.state == "stopped":
            return
        task, self._task = self._task, None
        while task is not None and not task.done():  # again if a library swallowed the cancel (aiohttp, aiortc)
            task.cancel()
            await asyncio.wait([task], timeout=1.0)
        if task is not None and not task.cancelled():
            with contextlib.suppress(Exception):
                task.result()  # retrieved: no "exception never retrieved" warning
        await self._teardown()
        if self._session is not None:
            await self._session.close()
        self.state, self.retry_at = "stopped", None
