"""Helpers for the interop tests: a network namespace for a browser, a third-party page server, Firefox
over WebDriver BiDi (tests/js/firefox.mjs) and GStreamer webrtcbin (tests/gst_whep.py) as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from aioice import stun
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from longlive_rtc.rtc.codecs import register_h264_profiles

from .rtc_client import Server

API_KEY = "interop-api-key-0123456789"  # the interop tests' token-mode servers
# Each client's measuring window ends once it decoded WINDOW_FRAMES frames (3 s at 15 fps): progress, which load may
# slow but not fail; WINDOW_SECONDS is its longest duration, which only a stream that stopped takes.
WINDOW_FRAMES = 45
WINDOW_SECONDS = 30
JS_DIR = Path(__file__).resolve().parent / "js"
FIREFOX = Path("/usr/bin/firefox-esr")
SYSTEM_PYTHON = Path("/usr/bin/python3")  # Debian's python3, which has python3-gi
GST_CLIENT = Path(__file__).resolve().parent / "gst_whep.py"


def missing_firefox() -> str | None:
    """Why the Firefox tests cannot run here, or None."""
    if not FIREFOX.exists():
        return f"{FIREFOX} is missing (apt-get install firefox-esr; scripts/test.sh installs it)"
    if shutil.which("node") is None:
        return "node is missing (apt-get install nodejs npm)"
    if not (JS_DIR / "node_modules" / "puppeteer-core").is_dir():
        return "puppeteer-core is not installed (cd tests/js && npm ci; scripts/test.sh does it)"
    return None


def missing_gstreamer() -> str | None:
    """Why the GStreamer tests cannot run here, or None."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} is missing"
    probe = subprocess.run([str(SYSTEM_PYTHON), str(GST_CLIENT), "--check"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return (
            f"GStreamer webrtcbin is not usable ({probe.stdout.strip() or probe.stderr.strip()[-200:]}); "
            "apt-get install python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-bad gstreamer1.0-nice"
        )
    return None


def namespaces_allowed() -> bool:
    """Root with iproute2: the tests can give a browser its own network (two hosts on one machine)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


@dataclass
class NetNamespace:
    """A network namespace joined to this host by a veth pair: the browser runs inside, the server outside.

    Only the veth addresses connect the two, so mDNS names from inside cannot be resolved outside: the
    server must learn the browser's address from its connectivity checks (a peer-reflexive candidate).
    """

    name: str
    host_ip: str
    inner_ip: str

    @classmethod
    def create(cls) -> NetNamespace:
        tag = os.getpid() % 50000
        name, subnet = f"llrtc{tag}", f"10.{200 + tag % 50}.{tag % 250}"
        host_if, inner_if = f"llh{tag}", f"lln{tag}"
        space = cls(name, f"{subnet}.1", f"{subnet}.2")
        space.destroy()  # a namespace left over by a killed run of the same pid
        inside = ["ip", "netns", "exec", name]
        for command in (
            ["ip", "netns", "add", name],
            ["ip", "link", "add", host_if, "type", "veth", "peer", "name", inner_if],
            ["ip", "link", "set", inner_if, "netns", name],
            ["ip", "addr", "add", f"{space.host_ip}/30", "dev", host_if],
            ["ip", "link", "set", host_if, "up"],
            [*inside, "ip", "addr", "add", f"{space.inner_ip}/30", "dev", inner_if],
            [*inside, "ip", "link", "set", inner_if, "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
        ):
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=10)
            except (subprocess.SubprocessError, OSError):
                space.destroy()  # nothing half-made is left behind
                raise
        return space

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)  # removes the veth too


class PageServer:
    """Serves tests/js (the third-party player page) from another origin than the signaling server."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> PageServer:
        app = web.Application()
        app.router.add_static("/", JS_DIR, follow_symlinks=False)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "0.0.0.0", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def run_json(command: list[str], timeout: float) -> tuple[dict, str]:
    """Run a client subprocess that prints one JSON report on its last stdout line; (report, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "HOME": "/tmp"}
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(f"{command[0]} timed out: {stderr.decode(errors='replace')[-3000:]}") from None
    log = stderr.decode(errors="replace")
    lines = stdout.decode(errors="replace").strip().splitlines()
    if process.returncode != 0 or not lines:
        raise AssertionError(f"{' '.join(command[:6])} exited {process.returncode}: {log[-3000:]}")
    return json.loads(lines[-1]), log


async def firefox(url: str, space: NetNamespace | None, timeout: float = 90.0) -> tuple[dict, str]:
    """Open ``url`` in headless Firefox ESR (default prefs) and return the page's ``window.report``."""
    command = ["node", str(JS_DIR / "firefox.mjs"), url, str(int((timeout - 15) * 1000))]
    return await run_json((space.prefix if space else []) + command, timeout)


class StunServer(asyncio.DatagramProtocol):
    """A minimal real STUN server (RFC 5389 binding requests only), so the server can advertise one."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    async def __aenter__(self) -> StunServer:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("0.0.0.0", 0))
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.transport is not None
        self.transport.close()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            request = stun.parse_message(data)
        except ValueError:
            return
        if request.message_method != stun.Method.BINDING or request.message_class != stun.Class.REQUEST:
            return
        self.requests += 1
        response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
        response.add_fingerprint()
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def started_session(server: Server) -> str:
    """A running session made over HTTP (the server runs --auth none)."""
    body = {"start": True, "schedule": [{"timestamp": 0, "prompt": "a harbour at dawn"}]}
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/sessions", json=body) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["session"]


async def whep(server: Server, session: str, sdp: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/sdp"}
        async with http.post(f"{server.url}/whep/{session}", data=sdp, headers=headers) as r:
            return r.status, await r.text()


async def create_session(server: Server, start: bool) -> dict:
    """A session made over HTTP with the API key (running when ``start``), with its tokens."""
    body: dict = {"schedule": [{"timestamp": 0, "prompt": "a lighthouse in a storm"}], "start": start}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/sessions", json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        return await r.json()


def capabilities(mime: str, **parameters: str) -> list[RTCRtpCodecCapability]:
    """aiortc's receive capabilities of one codec (matching ``parameters``), with RTX."""
    register_h264_profiles()  # what the server does: Main and High are known to aiortc too
    caps = RTCRtpReceiver.getCapabilities("video").codecs
    chosen = [c for c in caps if c.mimeType == mime and all(c.parameters.get(k) == v for k, v in parameters.items())]
    assert chosen, (mime, parameters)
    return chosen + [c for c in caps if c.mimeType == "video/rtx"]


@dataclass
class Viewer:
    """A receive-only aiortc client offering exactly the given codecs; counts frames and their size."""

    codecs: list[RTCRtpCodecCapability] | None = None
    frames: int = 0
    size: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if self.codecs:
            transceiver.setCodecPreferences(self.codecs)
        self.pc.on("track", lambda track: asyncio.ensure_future(self._read(track)))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))

    async def _read(self, track) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                self.frames += 1
                self.size = (frame.width, frame.height)

    async def wait_frames(self, count: int, timeout: float = 20.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self.frames < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"received {self.frames} of {count} frames ({self.pc.connectionState})")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.pc.close()
