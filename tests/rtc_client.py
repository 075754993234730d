"""A real aiortc client and an in-process server for the WebRTC tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import aioice.ice
import numpy as np
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from longlive_rtc.generators import Geometry, SyntheticGenerator
from longlive_rtc.generators.stamp import read_stamp, read_transition_stamp
from longlive_rtc.rtc.hub import Hub, HubConfig
from signaling.app import HTTP_SERVER, create_app
from signaling.auth import Auth
from signaling.limits import RateLimiter


def loopback_only() -> bool:
    """True on a machine whose only IPv4 address is 127.0.0.1 (aioice would gather no candidate)."""
    return not aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


def allow_loopback_ice() -> None:
    """Let aiortc offer 127.0.0.1, which aioice skips; Chromium pairs it with --allow-loopback-..."""
    original = aioice.ice.get_host_addresses

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return original(use_ipv4, use_ipv6) or (["127.0.0.1"] if use_ipv4 else [])

    aioice.ice.get_host_addresses = with_loopback


async def real_offer(data_channel: bool = True) -> str:
    """A real aiortc offer: one recvonly video section (mid 0) and, by default, a data channel (mid 1)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    if data_channel:
        pc.createDataChannel("commands")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        await asyncio.sleep(0.02)


@dataclass
class Received:
    pts: int
    width: int
    height: int
    stamp: object
    at: float
    signature: np.ndarray  # 6x8 grid of mean luma of the picture, to compare what clients saw
    transition: object = None  # the synthetic transition band (frames of 160 rows or more), if readable


class Server:
    """The real signaling app on a real port, with a counting synthetic generator.

    ``auth`` defaults to ``--auth none`` (the tests of streaming); the access tests pass token mode.
    """

    def __init__(
        self, config: HubConfig | None = None, geometry: Geometry | None = None, port: int = 0,
        auth: Auth | None = None, limiter: RateLimiter | None = None, cors_origins: tuple[str, ...] = (),
        http_limits: dict[str, float] | None = None, reactor_local: bool = False, allowed_hosts: tuple[str, ...] = (),
        state_dir: Path | None = None,
    ) -> None:  # fmt: skip
        self.geometry = geometry or Geometry()
        self.port = port  # 0: any free port
        self.generators: list[SyntheticGenerator] = []
        self.hub = Hub(self._make_generator, config or HubConfig(max_sessions=4))
        self.auth = auth or Auth("none")
        self.limiter = limiter or RateLimiter(per_minute=6000, burst=1000)
        self.cors_origins = cors_origins
        self.reactor_local = reactor_local
        self.allowed_hosts = allowed_hosts
        self.state_dir = state_dir
        self.http_limits: dict[str, object] = {**HTTP_SERVER, **(http_limits or {})}  # what ``serve`` gives aiohttp
        self.runner: web.AppRunner | None = None
        self.url = ""

    @property
    def api_key(self) -> str:
        return self.auth.api_key

    def _make_generator(self) -> SyntheticGenerator:
        generator = CountingSynthetic(self.geometry)
        self.generators.append(generator)
        return generator

    async def __aenter__(self) -> Server:
        app = create_app(self.hub, self.auth, self.cors_origins, self.limiter, reactor_local=self.reactor_local,
                         allowed_hosts=self.allowed_hosts, state_dir=self.state_dir)  # fmt: skip
        self.runner = web.AppRunner(app, **self.http_limits)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "0.0.0.0", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


class CountingSynthetic(SyntheticGenerator):
    """The synthetic generator, counting the blocks it makes."""

    blocks = 0

    def next_block(self):
        self.blocks += 1
        return super().next_block()


@dataclass
class Client:
    """A receive-only aiortc peer with a data channel, recording frames and events."""

    codec: str | None = None
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(RTCConfiguration(iceServers=[])))
    frames: list[Received] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    session: str = ""
    codec_used: str = ""
    _reader: asyncio.Task | None = None

    async def connect(self, server_url: str, *, session: str | None = None, role: str | None = None,
                      whep: bool = False, data_channel: bool = True, create: bool = False,
                      token: str | None = None) -> None:  # fmt: skip
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if self.codec:
            mime = {"vp8": "video/VP8", "h264": "video/H264"}[self.codec]
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType in (mime, "video/rtx")])
        self.channel = None
        self.opened = asyncio.Event()
        if data_channel:
            self.channel = self.pc.createDataChannel("commands")
            self.channel.on("open", self.opened.set)
            self.channel.on("message", lambda m: self.events.append(json.loads(m)))

        @self.pc.on("track")
        def on_track(track) -> None:
            self._reader = asyncio.ensure_future(self._read(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(headers=auth) as http:
            if whep:
                async with http.post(f"{server_url}/whep/{session}", data=self.pc.localDescription.sdp,
                                     headers={"Content-Type": "application/sdp"}) as r:  # fmt: skip
                    assert r.status == 201, await r.text()
                    self.location = r.headers["Location"]
                    answer = await r.text()
                    self.session = session or ""
            else:
                body = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
                if session:
                    body["session"] = session
                if role:
                    body["role"] = role
                if create:
                    body["create"] = True
                async with http.post(f"{server_url}/offer", json=body) as r:
                    assert r.status == 200, await r.text()
                    reply = await r.json()
                    answer, self.session = reply["sdp"], reply["session"]
                    self.peer_id = reply["peer"]
                    self.tokens = reply.get("tokens")
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        video = next(m for m in SessionDescription.parse(answer).media if m.kind == "video")
        self.codec_used = video.rtp.codecs[0].mimeType
        if data_channel:
            await asyncio.wait_for(self.opened.wait(), 10)

    async def _read(self, track) -> None:
        """Record every received frame; a failure here is re-raised by :meth:`wait_frames`."""
        self.read_error: BaseException | None = None
        try:
            await self._read_frames(track)
        except Exception as exc:
            self.read_error = exc
            raise

    async def _read_frames(self, track) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                luma = frame.to_ndarray(format="yuv420p")[: frame.height]  # cheap: no colour conversion
                small = luma[: luma.shape[0] - 32 : 4, ::4]
                h, w = small.shape[0] // 6 * 6, small.shape[1] // 8 * 8
                signature = small[:h, :w].reshape(6, h // 6, 8, w // 8).mean(axis=(1, 3))
                self.frames.append(
                    Received(
                        frame.pts, frame.width, frame.height, read_stamp(luma), time.monotonic(), signature,
                        read_transition_stamp(luma),
                    )  # fmt: skip
                )

    def send(self, kind: str, message_id: object = None, **data) -> None:
        message: dict = {"type": kind, "data": data}
        if message_id is not None:
            message["id"] = message_id
        assert self.channel is not None
        self.channel.send(json.dumps(message))

    async def wait_event(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if predicate(event):
                    return event
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no matching event in {self.events[-5:]}")

    async def reply_to(self, message_id: object, timeout: float = 10.0) -> dict:
        return await self.wait_event(lambda e: e.get("id") == message_id and e["type"] in ("ack", "error"), timeout)

    async def wait_frames(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            if getattr(self, "read_error", None):
                raise AssertionError("reading frames failed") from self.read_error
            if time.monotonic() > deadline:
                raise TimeoutError(f"received {len(self.frames)} of {count} frames")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader:
            self._reader.cancel()
