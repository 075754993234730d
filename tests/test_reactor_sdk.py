"""The published Reactor JS SDK (``@reactor-team/js-sdk`` from npm) in headless Chromium against the real server.

The app is tests/js/reactor-app (the page docs/reactor-sdk.md shows), bundled with the SDK by esbuild as any
Reactor app is, and served from its own origin, so the SDK's requests cross origins as they do in
development (``--cors-origin``). It connects in local mode, schedules the seed's prompts at frames 0, 30
and 90, starts, and must see video, ``progress`` and ``prompt_applied`` through the SDK's message event;
bad commands get the protocol's errors; ``disconnect()`` (``POST /stop_session``) frees the session.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, sync_playwright

from longlive_rtc import protocol

from .browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, ConsoleLog, ServerThread, screenshot, wait_playing
from .rtc_client import Server

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

JS_DIR = Path(__file__).resolve().parent / "js"
APP_DIR = JS_DIR / "reactor-app"
SDK_PACKAGE = JS_DIR / "node_modules" / "@reactor-team" / "js-sdk" / "package.json"
TIMEOUT_MS = 60_000
SEED_PROMPTS = {
    0: "A red fox runs through snow",
    30: "The fox leaps into a frozen lake",
    90: "Northern lights over the lake",
}


def npm_install() -> None:
    """The locked packages of tests/js (scripts/test.sh does the same), when they are not installed yet."""
    if SDK_PACKAGE.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to install the Reactor SDK (apt-get install npm), then: cd tests/js && npm ci")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR, check=True, timeout=600)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app and the SDK in one browser module, as an app's bundler makes it."""
    npm_install()
    assert json.loads(SDK_PACKAGE.read_text())["version"] == "2.9.0"
    out = tmp_path_factory.mktemp("reactor-app")
    esbuild = JS_DIR / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [str(esbuild), str(APP_DIR / "app.js"), "--bundle", "--format=esm", "--platform=browser",
         "--define:process.env.NODE_ENV=\"production\"", f"--outfile={out / 'app.js'}", "--log-level=warning"],
        check=True, timeout=120,
    )  # fmt: skip
    shutil.copy(APP_DIR / "index.html", out / "index.html")
    return out


async def serve_page(listening: socket.socket, directory: Path) -> web.AppRunner:
    """The app's own origin: its page and bundle, on an already bound socket."""

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(directory / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/", directory)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listening).start()
    return runner


@pytest.fixture(scope="module")
def site(bundle: Path) -> Iterator[tuple[ServerThread, str]]:
    """The server (``--auth none --reactor-local --cors-origin <app>``) and the app's URL."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    origin = f"http://127.0.0.1:{listening.getsockname()[1]}"
    thread = ServerThread()
    thread.server = Server(reactor_local=True, cors_origins=(origin,))
    thread.start()
    page_runner = thread.run(serve_page(listening, bundle))
    yield thread, f"{origin}/?api={thread.url}"
    thread.run(page_runner.cleanup())
    thread.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def app_messages(page: Page, kind: str) -> list[dict]:
    return page.evaluate("(kind) => window.app.messages.filter((m) => m.type === kind)", kind)


def wait_message(page: Page, condition: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait until a message ``m`` the app received satisfies ``condition`` (JavaScript)."""
    page.wait_for_function(f"() => window.app.messages.some((m) => {condition})", timeout=timeout_ms)


def sessions(thread: ServerThread) -> list[str]:
    return thread.call(lambda: list(thread.hub.sessions))


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def played_frames(page: Page) -> int:
    return page.evaluate("() => document.querySelector('video').getVideoPlaybackQuality().totalVideoFrames")


def test_a_reactor_app_streams_and_directs_longlive(site: tuple[ServerThread, str], browser: Browser) -> None:
    thread, url = site
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    log = ConsoleLog("reactor-app").attach(page)
    try:
        page.goto(url)
        page.click("#go")
        page.wait_for_function("() => window.app.reactor.getStatus() === 'ready'", timeout=TIMEOUT_MS)

        info = page.evaluate("() => window.app.reactor.getSessionInfo()")
        assert info["model"]["name"] == "longlive" and info["selected_transport"]["protocol"] == "webrtc"
        assert [c["name"] for c in info["capabilities"]["commands"]] == list(protocol.COMMANDS)
        assert info["capabilities"]["tracks"] == [{"name": "main_video", "kind": "video", "direction": "recvonly"}]
        session_id = info["session_id"]
        assert sessions(thread) == [session_id]

        # the seed's prompts reached the one schedule of the session, through the same validation
        wait_message(page, "m.type === 'ack' && m.data.command === 'start'", 20_000)
        scheduled = thread.get(f"/sessions/{session_id}")["state"]["scheduled"]
        assert {entry["timestamp"]: entry["prompt"] for entry in scheduled} == SEED_PROMPTS

        wait_playing(page, TIMEOUT_MS)
        before, started = played_frames(page), page.evaluate("() => performance.now()")
        wait_message(page, "m.type === 'prompt_applied' && m.data.timestamp === 30")
        size = page.evaluate(
            "() => [document.querySelector('video').videoWidth, document.querySelector('video').videoHeight]"
        )
        assert size == [832, 480]
        page.wait_for_function(  # playing, not frozen: progress over a generous window (the rate is a benchmark's)
            f"() => document.querySelector('video').getVideoPlaybackQuality().totalVideoFrames >= {before + 30}",
            timeout=TIMEOUT_MS,
        )
        elapsed = (page.evaluate("() => performance.now()") - started) / 1000
        frames = played_frames(page) - before  # observed, for the artifact below

        progress = [m["data"]["current_start_frame"] for m in app_messages(page, "progress")]
        assert progress[:3] == [3, 6, 9] and progress == sorted(progress) and progress[-1] >= 30, progress
        applied = {m["data"]["timestamp"]: m["data"]["frame"] for m in app_messages(page, "prompt_applied")}
        assert applied[0] == 0 and applied[30] == 30
        assert page.text_content("#prompt") == "30: The fox leaps into a frozen lake"
        stats = page.evaluate("() => window.app.reactor.getStats()")
        screenshot(page, "reactor-sdk-app")

        # bad commands get the protocol's errors in the app's message callback; the stream goes on
        page.evaluate("""async () => {
            const r = window.app.reactor;
            await r.sendCommand("fly", {});
            await r.sendCommand("schedule_prompt", { new_prompt: "   ", timestamp: 0 });
            await r.sendCommand("schedule_prompt", { new_prompt: "late", timestamp: -3 });
            await r.sendCommand("start", {});
        }""")
        page.wait_for_function("() => window.app.messages.filter((m) => m.type === 'error').length >= 4")
        codes = [m["data"]["code"] for m in app_messages(page, "error")]
        assert codes == ["unknown_command", "invalid_field", "invalid_field", "already_running"], codes

        # the SDK's runtime layer: capabilities on request, pings ignored (the SDK sends one every 5 s)
        page.evaluate("""() => {
            window.app.runtime = [];
            window.app.reactor.on("runtimeMessage", (m) => window.app.runtime.push(m));
            return window.app.reactor.sendCommand("requestCapabilities", {}, "runtime");
        }""")
        page.wait_for_function("() => window.app.runtime.length > 0", timeout=10_000)
        runtime = page.evaluate("() => window.app.runtime")
        assert runtime[0]["type"] == "modelCapabilities"
        assert [c["name"] for c in runtime[0]["data"]["commands"]] == list(protocol.COMMANDS)

        page.evaluate("() => window.app.reactor.sendCommand('reset', {})")
        wait_message(page, "m.type === 'schedule_changed' && m.data.changes.some((c) => c.op === 'clear')")
        wait_message(page, "m.type === 'state' && m.data.status === 'idle'")

        page.click("#stop")  # disconnect(): POST /stop_session
        page.wait_for_function("() => window.app.reactor.getStatus() === 'disconnected'", timeout=10_000)
        assert wait_until(lambda: not sessions(thread)), sessions(thread)

        ARTIFACTS.mkdir(exist_ok=True)
        measured = {"frames": frames, "seconds": round(elapsed, 2), "fps": round(frames / elapsed, 2),
                    "sdk_stats_fps": stats.get("framesPerSecond"), "progress": progress[:12]}  # fmt: skip
        (ARTIFACTS / "reactor-sdk.json").write_text(json.dumps(measured, indent=2))
        print("reactor sdk:", measured)
        assert log.errors == [], log.errors
        assert [w for w in log.warnings if "Reactor" in w or "WebRTCTransport" in w] == [], log.warnings
    finally:
        page.close()
