"""The director page's recording panel in headless Chromium, against a real server that records.

Record starts a recording over HTTP with the page's controller token, the panel shows it running with
its length, Stop ends it, and the file the server lists is read back by ffprobe; a refusal (507, no
room) is a notice on the page.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from longlive_rtc.outputs.manager import OutputsConfig
from signaling.auth import Auth
from signaling.outputs import OUTPUTS_KEY

from .browser_support import CHROMIUM, CHROMIUM_ARGS, ConsoleLog, ServerThread, screenshot
from .outputs_support import ffprobe, needs_ffprobe
from .test_outputs_http import API_KEY, OutputServer, outputs_config

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    needs_ffprobe,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

TIMEOUT_MS = 20_000
REFUSED_507 = "Failed to load resource: the server responded with a status of 507 (Insufficient Storage)"


class RecordingServer(ServerThread):
    """The real app with the outputs mounted (token mode, the outputs tests' API key), in a thread."""

    def __init__(self, outputs: OutputsConfig) -> None:
        super().__init__(auth=Auth("token", api_key=API_KEY))
        self.server = OutputServer(outputs)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def serve(tmp_path: Path, **overrides) -> RecordingServer:
    return RecordingServer(outputs_config(tmp_path, clip_seconds=0, **overrides)).start()


def open_director(browser: Browser, server: RecordingServer, query: str = "") -> tuple[Page, ConsoleLog]:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    log = ConsoleLog("director").attach(page)
    page.goto(f"{server.url}/?token={server.api_key}{query}")
    page.wait_for_selector("html[data-connection=connected]", state="attached", timeout=TIMEOUT_MS)
    page.wait_for_selector("#recording-panel", state="visible", timeout=TIMEOUT_MS)
    page.wait_for_selector("#record:enabled", timeout=TIMEOUT_MS)
    return page, log


def close(page: Page) -> None:
    page.evaluate("() => window.longlive?.connection.stop()")
    page.close()


def recordings(server: RecordingServer, session: str) -> list[dict]:
    return server.get(f"/sessions/{session}/recordings")["recordings"]


def test_the_director_records_and_stops_and_the_file_is_a_valid_mp4(browser: Browser, tmp_path: Path) -> None:
    server = serve(tmp_path)
    try:
        page, log = open_director(browser, server)
        session = page.evaluate("() => window.longlive.connection.session")
        server.command(session, "schedule_prompt", new_prompt="a red fox in the snow", timestamp=0)
        server.command(session, "start")
        link = page.get_attribute("#recordings-link", "href")
        assert link and link.startswith(f"{server.url}/sessions/{session}/recordings?token="), link
        assert "Not recording" in page.text_content("#recording-state")

        page.click("#record")
        page.wait_for_selector("#recording-panel[data-recording=true]", state="attached", timeout=TIMEOUT_MS)
        listed = recordings(server, session)
        assert [entry["status"] for entry in listed] == ["recording"], listed
        # the elapsed time runs: two seconds of video, read from the page
        page.wait_for_function(
            "() => /REC 0:0[2-9]/.test(document.querySelector('#recording-state').textContent)", timeout=TIMEOUT_MS
        )
        assert page.get_attribute("#record", "aria-pressed") == "true"
        assert page.text_content("#record") == "Stop recording"
        screenshot(page, "director-recording")

        page.click("#record")
        page.wait_for_selector("#recording-panel[data-recording=false]", state="attached", timeout=TIMEOUT_MS)
        page.wait_for_selector(".notice-info >> text=/Recorded rec-/", timeout=TIMEOUT_MS)
        page.wait_for_selector(f"#recordings-list li[data-name='{listed[0]['name']}'][data-status=finished]",
                               state="attached", timeout=TIMEOUT_MS)  # fmt: skip
        assert page.text_content("#recording-state") == "Not recording"
        # the list's link downloads the file, with the page's token in it
        href = page.get_attribute("#recordings-list li a", "href")
        assert href and re.fullmatch(rf"/sessions/{session}/recordings/rec-[^?]+\.mp4\?token=.+", href), href
        finished = recordings(server, session)
        mp4 = tmp_path / "downloaded.mp4"
        with urllib.request.urlopen(server.url + href, timeout=10) as response:  # the page's link, as it is
            mp4.write_bytes(response.read())
        close(page)
    finally:
        server.stop()
    assert len(finished) == 1 and finished[0]["status"] == "finished", finished
    assert finished[0]["reason"] == "stopped" and finished[0]["frames"] >= 30, finished
    stream = ffprobe(mp4)
    assert stream["codec_name"] == "h264" and stream["nb_read_frames"] == finished[0]["frames"], stream
    assert log.unexpected() == [], log.errors


def test_a_refused_recording_is_a_notice_and_the_stream_plays_on(browser: Browser, tmp_path: Path) -> None:
    server = serve(tmp_path, quota=1000)  # no room for two seconds of video: 507
    try:
        page, log = open_director(browser, server)
        session = page.evaluate("() => window.longlive.connection.session")
        page.click("#record")
        notice = page.wait_for_selector(".notice-error >> text=/Recording \\(507\\)/", timeout=TIMEOUT_MS)
        assert "quota" in notice.text_content()
        assert page.get_attribute("#recording-panel", "data-recording") == "false"
        assert page.text_content("#recording-state") == "Not recording"
        assert recordings(server, session) == []
        assert page.evaluate("() => window.longlive.connection.state") == "connected"
        close(page)
    finally:
        server.stop()
    assert log.unexpected((REFUSED_507,)) == [], log.errors


#: The page's inbound video: decoded frames, keyframes among them, PLIs it sent, the codec.
INBOUND_JS = """async () => {
  const pc = window.longlive?.connection?.pc;
  const out = {framesDecoded: 0, keyFramesDecoded: 0, pliCount: 0, codec: ""};
  if (!pc) return out;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      Object.assign(out, {framesDecoded: s.framesDecoded ?? 0, keyFramesDecoded: s.keyFramesDecoded ?? 0,
                          pliCount: s.pliCount ?? 0, codec: report.get(s.codecId)?.mimeType ?? ""});
    }
  });
  return out;
}"""


def test_chromium_decodes_the_shared_encode_from_its_first_frame(browser: Browser, tmp_path: Path) -> None:
    """--encode-once: Chromium's own H.264 decoder plays the shared encoder's packets (Constrained Baseline),
    starting at the keyframe made for it, with a one-minute GOP (no other keyframe would come)."""
    server = serve(tmp_path, encode_once=True, keyframe_seconds=60.0)
    try:
        page, log = open_director(browser, server, "&codec=h264")
        session = page.evaluate("() => window.longlive.connection.session")
        page.wait_for_function(f"async () => (await ({INBOUND_JS})()).framesDecoded >= 45", timeout=TIMEOUT_MS)
        inbound = page.evaluate(INBOUND_JS)
        fan_out = server.call(lambda: server.server.runner.app[OUTPUTS_KEY].viewers[session].stats())
        close(page)
    finally:
        server.stop()
    assert inbound["codec"] == "video/H264" and inbound["keyFramesDecoded"] >= 1, inbound
    assert fan_out["viewers"] == 1 and fan_out["keyframes_forced"] >= 1, fan_out
    assert log.unexpected() == [], log.errors
