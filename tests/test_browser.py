"""The browser pages in headless Chromium against the real server: director, viewer and OBS player.

Drives Debian's /usr/bin/chromium through Playwright (never a downloaded browser). Screenshots of every
page land in test-artifacts/. Every page must play without a click and log no console error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CONNECTION_REFUSED,
    ConsoleLog,
    ServerThread,
    screenshot,
    video_stats,
    wait_playing,
    wait_video,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]

WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
OBS_SIZE = {"width": 832, "height": 480}
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:  # conftest lets aiortc offer 127.0.0.1 on loopback-only machines
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    thread = ServerThread().start()
    yield thread
    thread.stop()


class Pages:
    """Pages opened by one test, each with its console log; closed (connections stopped) at the end."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.opened: list[tuple[Page, ConsoleLog]] = []

    def open(self, url: str, name: str, viewport: dict | None = None) -> Page:
        page = self.browser.new_page(viewport=viewport or WIDE, accept_downloads=True)
        log = ConsoleLog(name).attach(page)
        self.opened.append((page, log))
        page.goto(url)
        return page

    def console_errors(self, allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
        return {log.name: log.unexpected(allowed) for _, log in self.opened if log.unexpected(allowed)}

    def close(self) -> None:
        for page, _ in self.opened:
            if not page.is_closed():
                page.evaluate("() => window.longlive?.connection.stop()")  # the server sees the peer go at once
                page.close()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    opened.close()


def wait_connected(page: Page, timeout_ms: int = TIMEOUT_MS) -> None:
    page.wait_for_selector("html[data-connection=connected]", state="attached", timeout=timeout_ms)


def shown_frame(page: Page) -> int:
    """The current frame on the page's progress bar (moved by `progress` events)."""
    return int(page.get_attribute("#progress .bar", "aria-valuenow") or 0)


def session_of(page: Page) -> str:
    return page.evaluate("() => window.longlive.connection.session")


def scheduled(server: ServerThread, session: str) -> dict[int, str]:
    return {entry["timestamp"]: entry["prompt"] for entry in server.get(f"/sessions/{session}")["scheduled"]}


def add_prompt(page: Page, prompt: str, at: str, unit: str = "frame") -> None:
    page.fill("#schedule-prompt", prompt)
    page.fill("#schedule-at", at)
    page.select_option("#schedule-unit", unit)


def dismiss_notices(page: Page) -> None:
    """Close the notices with their Dismiss buttons (they would cover the panels in screenshots)."""
    page.evaluate("() => document.querySelectorAll('#notices .notice-close').forEach((button) => button.click())")
    assert page.locator("#notices .notice").count() == 0


def assert_plays(page: Page, seconds: float, min_fps: float = 11.0) -> dict:
    """The video keeps decoding at about 15 fps with no freeze for ``seconds``."""
    before = video_stats(page)
    page.wait_for_timeout(seconds * 1000)
    after = video_stats(page)
    assert after["videoWidth"] == 832 and after["videoHeight"] == 480, after
    assert after["framesDecoded"] - before["framesDecoded"] >= min_fps * seconds, (before, after)
    assert 11 <= after["framesPerSecond"] <= 17, after
    assert after["freezeCount"] == before["freezeCount"], (before, after)
    return after


def test_director_page_directs_the_stream(server: ServerThread, pages: Pages, tmp_path) -> None:
    page = pages.open(server.url + "/", "director")
    wait_connected(page)
    wait_playing(page)  # the idle card plays before anything is scheduled
    session = session_of(page)
    assert page.text_content("#session-id") == session
    assert f"session={session}" in page.url  # a reload rejoins the same session

    # an invalid action shows the server's error
    page.click("#start")
    error = page.locator("#notices .notice-error").last
    error.wait_for(timeout=5000)
    assert "schedule a prompt at frame 0 before start" in error.text_content()
    assert "no_initial_prompt" in error.text_content()

    # schedule through the timeline: at a frame, at a time in seconds, then edit and remove
    add_prompt(page, "a red fox running through fresh snow", "0")
    assert "a block start" in page.text_content("#schedule-preview")
    page.click("#schedule-submit")
    page.wait_for_selector("#schedule-list li[data-timestamp='0']")
    add_prompt(page, "the blue ocean at night under the moon", "2", unit="seconds")
    assert page.text_content("#schedule-preview").startswith("= frame 9 · 2.06 s")
    page.click("#schedule-submit")
    page.wait_for_selector("#schedule-list li[data-timestamp='9']")
    assert "2.06 s" in page.text_content("#schedule-list li[data-timestamp='9']")
    add_prompt(page, "a green forest", "10")
    assert "applies at block start 12 (2.81 s)" in page.text_content("#schedule-preview")
    page.click("#schedule-submit")
    entry = page.locator("#schedule-list li[data-timestamp='10']")
    assert "applies at block start 12" in entry.text_content()
    entry.get_by_role("button", name="Edit").click()
    assert page.input_value("#schedule-at") == "10"
    page.fill("#schedule-at", "40")
    page.fill("#schedule-prompt", "a green forest with tall trees")
    page.click("#schedule-submit")
    page.wait_for_selector("#schedule-list li[data-timestamp='40']")
    page.wait_for_selector("#schedule-list li[data-timestamp='10']", state="detached")
    assert scheduled(server, session) == {
        0: "a red fox running through fresh snow",
        9: "the blue ocean at night under the moon",
        40: "a green forest with tall trees",
    }
    page.locator("#schedule-list li[data-timestamp='40']").get_by_role("button", name="Remove").click()
    page.wait_for_selector("#schedule-list li[data-timestamp='40']", state="detached")

    # export and import the schedule as JSON
    with page.expect_download() as download:
        page.click("#export-schedule")
    exported = json.loads(download.value.path().read_text())
    assert exported == [
        {"timestamp": 0, "prompt": "a red fox running through fresh snow"},
        {"timestamp": 9, "prompt": "the blue ocean at night under the moon"},
    ]
    schedule_file = tmp_path / "schedule.json"
    schedule_file.write_text(json.dumps([{"timestamp": 60, "prompt": "a purple sunset over the sea"}]))
    page.set_input_files("#import-schedule", str(schedule_file))
    page.wait_for_selector("#schedule-list li[data-timestamp='60']")
    assert scheduled(server, session)[60] == "a purple sunset over the sea"

    # seed, start: the video plays at 15 fps without freezing and the progress display advances
    page.fill("#seed", "42")
    page.click("#seed-form button")
    page.wait_for_function("() => !document.querySelector('#start').disabled")
    page.click("#start")
    page.wait_for_selector(".status-pill[data-status=running]")
    assert server.get(f"/sessions/{session}")["seed"] == 42
    first = shown_frame(page)
    stats = assert_plays(page, 5.0)
    assert stats["codec"] == "video/VP8"
    assert shown_frame(page) >= first + 9, "the progress bar did not follow the progress events"
    page.wait_for_function(
        "() => document.querySelector('.active-prompt-text').textContent.includes('blue ocean')", timeout=TIMEOUT_MS
    )
    assert page.locator("#schedule-list li.active").get_attribute("data-timestamp") == "9"
    assert "frame" in page.text_content(".readout") and "video" in page.text_content(".readout")

    # the live prompt: Enter applies it at the current frame
    page.fill("#live-prompt", "a golden desert under a pink sky")
    page.press("#live-prompt", "Enter")
    page.wait_for_function(
        "() => document.querySelector('.active-prompt-text').textContent === 'a golden desert under a pink sky'",
        timeout=TIMEOUT_MS,
    )
    assert page.input_value("#live-prompt") == ""
    assert "a golden desert under a pink sky" in scheduled(server, session).values()

    # pause and resume
    page.click("#pause")
    page.wait_for_selector(".status-pill[data-status=paused]")
    page.click("#resume")
    page.wait_for_selector(".status-pill[data-status=running]")

    # stream stats from getStats
    page.wait_for_function("() => document.querySelector('#stats').textContent.includes('VP8')")
    assert "832×480" in page.text_content("#stats")
    dismiss_notices(page)
    screenshot(page, "director", full_page=True)

    # the connection drops: the page reconnects by itself to the same session
    old_peer = page.evaluate("() => window.longlive.connection.peerId")
    server.drop_peers(session)
    page.wait_for_function(
        f"() => window.longlive.connection.peerId !== {json.dumps(old_peer)}"
        " && document.documentElement.dataset.connection === 'connected'",
        timeout=TIMEOUT_MS,
    )
    assert session_of(page) == session
    wait_playing(page)
    page.wait_for_function("() => document.querySelector('#schedule-list li[data-timestamp=\"9\"]')")
    assert_plays(page, 2.0)

    # phone width: one column, nothing wider than the screen
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    dismiss_notices(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "director-phone", full_page=True)

    assert pages.console_errors() == {}


def test_viewer_and_obs_pages_play_the_same_session_without_a_click(server: ServerThread, pages: Pages) -> None:
    director = pages.open(server.url + "/", "director")
    wait_connected(director)
    session = session_of(director)
    prompt = "a violet nebula drifting over a calm sea"
    server.command(session, "schedule_prompt", new_prompt=prompt, timestamp=0)
    server.command(session, "start")
    viewer_url = director.input_value("#viewer-link")
    obs_url = director.input_value("#obs-link")
    assert viewer_url == f"{server.url}/view/{session}"
    assert obs_url == f"{server.url}/obs/{session}"

    viewer = pages.open(viewer_url, "viewer", {"width": 1280, "height": 800})
    obs = pages.open(obs_url, "obs", OBS_SIZE)
    for page in (viewer, obs):
        wait_connected(page)
        wait_playing(page)
        assert session_of(page) == session

    # the viewer: video, the current prompt and the progress, no controls, joined as a viewer
    viewer.wait_for_function(
        f"() => document.querySelector('.active-prompt-text').textContent === {json.dumps(prompt)}",
        timeout=TIMEOUT_MS,
    )
    first = shown_frame(viewer)
    assert viewer.locator("button, input, textarea, select").count() == 0
    refused = viewer.evaluate("() => window.longlive.connection.request('pause').then(() => 'ack', e => e.data?.code)")
    assert refused == "forbidden"
    listed = {entry["session"]: entry for entry in server.get("/sessions")["sessions"]}[session]
    assert listed["controllers"] == 1 and listed["viewers"] == 2

    # all three play the same stream at once (freezes are checked on the director alone: three players
    # and the server on two cores lose a frame now and then)
    trio = (director, viewer, obs)
    for page in trio:
        wait_video(page, "s.framesPerSecond >= 13")  # the new players have started up
    before = [video_stats(page) for page in trio]
    obs.wait_for_timeout(3000)
    after = [video_stats(page) for page in trio]
    for name, start, end in zip(("director", "viewer", "obs"), before, after, strict=True):
        assert end["framesDecoded"] - start["framesDecoded"] >= 33, (name, start, end)
        assert end["videoWidth"] == 832 and 11 <= end["framesPerSecond"] <= 17, (name, end)
    assert shown_frame(viewer) > first
    screenshot(viewer, "viewer")

    # the OBS player: only the video, filling the window, on black
    box = obs.evaluate("() => { const r = document.querySelector('video').getBoundingClientRect();"
                       " return [r.x, r.y, r.width, r.height]; }")  # fmt: skip
    assert box == [0, 0, 832, 480]
    assert obs.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(0, 0, 0)"
    assert obs.locator("#caption").is_hidden() and obs.locator("#status").is_hidden()
    assert obs.evaluate("() => document.querySelector('video').muted")
    screenshot(obs, "obs")

    # overlay flags: ?stamp=0 crops the stamp band, ?prompt=1 captions the active prompt
    overlay = pages.open(obs_url + "?stamp=0&prompt=1", "obs-overlay", OBS_SIZE)
    wait_connected(overlay)
    wait_playing(overlay)
    overlay.wait_for_function(
        f"() => document.querySelector('#caption').textContent === {json.dumps(prompt)}", timeout=TIMEOUT_MS
    )
    frame_height, video_height = overlay.evaluate(
        "() => [document.querySelector('#frame').getBoundingClientRect().height,"
        " document.querySelector('video').getBoundingClientRect().height]"
    )
    assert video_height == 480 and frame_height == 448  # the 32-row band falls outside the frame
    screenshot(overlay, "obs-overlay")

    assert pages.console_errors() == {}


def test_director_recreates_a_gone_session_under_its_id(server: ServerThread, pages: Pages) -> None:
    page = pages.open(server.url + "/?session=session-from-yesterday", "director")
    wait_connected(page)
    wait_playing(page)
    assert session_of(page) == "session-from-yesterday" and page.locator("#gone-banner").is_hidden()
    assert page.input_value("#obs-link").endswith("/obs/session-from-yesterday")
    assert pages.console_errors() == {}


def test_director_offers_a_new_session_when_its_id_cannot_be_recreated(server: ServerThread, pages: Pages) -> None:
    page = pages.open(server.url + "/?session=no", "director")  # too short to be a session id
    page.wait_for_selector("html[data-connection=gone]", state="attached", timeout=TIMEOUT_MS)
    assert page.locator("#gone-banner").is_visible()
    assert page.locator("#start").is_disabled()
    page.click("#new-session")
    wait_connected(page)
    wait_playing(page)
    session = session_of(page)
    assert session != "no" and f"session={session}" in page.url
    assert page.locator("#gone-banner").is_hidden()
    assert pages.console_errors() == {}


def test_obs_page_reconnects_after_the_server_restarts(browser: Browser, pages: Pages) -> None:
    first = ServerThread().start()
    port = first.port
    second: ServerThread | None = None
    try:
        director = pages.open(first.url + "/", "director")
        wait_connected(director)
        session = session_of(director)
        add_prompt(director, "a lighthouse in a storm", "0")
        director.click("#schedule-submit")
        director.wait_for_function("() => window.longlive.model.scheduled.length === 1", timeout=TIMEOUT_MS)
        obs = pages.open(f"{first.url}/obs/{session}?status=1", "obs", OBS_SIZE)
        wait_connected(obs)
        wait_playing(obs)

        first.stop()  # every session and peer is gone with it
        obs.wait_for_function("() => document.documentElement.dataset.connection !== 'connected'")
        screenshot(obs, "obs-waiting")
        second = ServerThread(port).start()

        # the director comes back first and recreates its session under the same id, schedule restored;
        # the OBS player, which kept retrying, finds the session again and plays
        wait_connected(director, timeout_ms=30_000)
        assert session_of(director) == session
        director.wait_for_function("() => window.longlive.model.scheduled.length === 1", timeout=TIMEOUT_MS)
        assert scheduled(second, session) == {0: "a lighthouse in a storm"}
        wait_connected(obs, timeout_ms=30_000)
        wait_playing(obs)
        assert session_of(obs) == session
        wait_video(obs, "s.framesDecoded > 15")  # on the new connection
        assert obs.locator("#status").is_hidden()
        screenshot(obs, "obs-reconnected")
        # Chromium itself logs the requests refused while the server was down; nothing else may appear
        assert pages.console_errors(allowed=(CONNECTION_REFUSED,)) == {}
    finally:
        pages.close()
        if second is not None:
            second.stop()
        elif not first.loop.is_closed():
            first.stop()
