"""Helpers for the browser tests: the real server in a thread, headless Chromium, console capture,
and the video measurements read from the page's RTCPeerConnection."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .rtc_client import Server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

#: Headless flags from docs/reference (webrtc.md 4.2): no sandbox (CI runs as root), no GPU, media
#: permission granted (so host candidates are raw IPs, not mDNS names; the feature switch makes sure),
#: loopback candidates allowed (for machines with no other address), autoplay without a gesture.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]

#: What Chromium logs by itself for a request to a server that is down (the restart test expects it).
CONNECTION_REFUSED = "Failed to load resource: net::ERR_CONNECTION_REFUSED"

#: The video of a page, read from its own peer connection (window.longlive.connection.pc).
VIDEO_STATS_JS = """async () => {
  const video = document.querySelector("video");
  const pc = window.longlive?.connection?.pc;
  const out = {videoWidth: video.videoWidth, videoHeight: video.videoHeight, paused: video.paused,
               readyState: video.readyState, connection: pc ? pc.connectionState : "none"};
  if (!pc) return out;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      Object.assign(out, {framesDecoded: s.framesDecoded ?? 0, framesPerSecond: s.framesPerSecond ?? 0,
                          freezeCount: s.freezeCount ?? 0, freezeSeconds: s.totalFreezesDuration ?? 0,
                          codec: report.get(s.codecId)?.mimeType ?? ""});
    }
  });
  return out;
}"""


class ServerThread:
    """The real signaling app (tests.rtc_client.Server) on its own event loop in a daemon thread.

    ``auth`` defaults to ``--auth none``; pass ``Auth("token", api_key=...)`` for token mode. The HTTP
    helpers below present the API key (an admin's view of every session) unless given another token.
    """

    def __init__(self, port: int = 0, auth: Auth | None = None, config: HubConfig | None = None) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self.server = Server(config or HubConfig(max_sessions=8), port=port, auth=auth)

    def start(self) -> ServerThread:
        self.thread.start()
        self.run(self.server.__aenter__())
        self.port = self.server.port
        return self

    def stop(self) -> None:
        try:
            self.run(self.server.__aexit__(None, None, None))
            self.run(self._cancel_tasks())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    @staticmethod
    async def _cancel_tasks() -> None:
        """End what closing left behind (relay readers, timers) so the loop closes cleanly."""
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hub(self):
        return self.server.hub

    @property
    def api_key(self) -> str:
        return self.server.api_key

    @property
    def token_mode(self) -> bool:
        return self.server.auth.enabled

    def run(self, coroutine, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[], Any]) -> Any:
        """Call a plain function on the server's loop (the hub is not thread-safe)."""

        async def wrapper() -> Any:
            return function()

        return self.run(wrapper())

    def create_session(self, session_id: str | None = None) -> str:
        """A new session with no peer; with ``session_id``, under that id (as if it had survived a restart)."""

        def create() -> str:
            return self.hub.create_session(session_id).id

        return self.call(create)

    def free_sessions(self) -> None:
        """Free every session (between tests: a running session would keep generating for nobody)."""

        async def free() -> None:
            await asyncio.gather(*(self.hub.free_session(sid) for sid in list(self.hub.sessions)))

        self.run(free())

    def drop_peers(self, session_id: str) -> None:
        """Close every peer of a session from the server side, as a network failure would."""

        async def drop() -> None:
            live = self.hub.get(session_id)
            await asyncio.gather(*(peer.close() for peer in list(live.peers.values())))

        self.run(drop())

    # --- HTTP API, as a script would use it ---------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """``(status, decoded JSON or None)`` of one request, errors included (no exception for 4xx/5xx)."""
        headers = {"Authorization": f"Bearer {token or self.api_key}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def get(self, path: str, token: str | None = None) -> Any:
        status, body = self.request("GET", path, token=token)
        assert status == 200, (path, status, body)
        return body

    def post_session(self, **fields: Any) -> dict:
        """``POST /sessions`` with the API key: the new session, its tokens and links."""
        status, body = self.request("POST", "/sessions", fields)
        assert status == 201, (status, body)
        return body

    def command(self, session_id: str, kind: str, token: str | None = None, **data: Any) -> list[dict]:
        status, body = self.request("POST", f"/sessions/{session_id}/commands", {"type": kind, "data": data}, token)
        assert status == 200, (kind, status, body)
        return body


@dataclass
class ConsoleLog:
    """Console messages of type error/warning and uncaught page errors of one page."""

    name: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def attach(self, page) -> ConsoleLog:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        return self

    def _on_console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)
        elif message.type == "warning":
            self.warnings.append(message.text)

    def unexpected(self, allowed: tuple[str, ...] = ()) -> list[str]:
        return [text for text in self.errors if text not in allowed]


def video_stats(page) -> dict:
    return page.evaluate(VIDEO_STATS_JS)


def wait_video(page, condition: str, timeout_ms: int = 20000) -> None:
    """Wait until ``condition``, JavaScript over ``s`` (the video stats above), holds."""
    page.wait_for_function(
        f"async () => {{ const s = await ({VIDEO_STATS_JS})(); return Boolean({condition}); }}", timeout=timeout_ms
    )


def wait_playing(page, timeout_ms: int = 20000) -> None:
    """Wait until the page's video shows decoded frames of the stream (no click anywhere)."""
    page.wait_for_function(
        "() => { const v = document.querySelector('video');"
        " return v && v.videoWidth > 0 && !v.paused && v.readyState >= 2; }",
        timeout=timeout_ms,
    )


def screenshot(page, name: str, **options: Any) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path
