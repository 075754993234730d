"""The browser pages in headless Chromium against the real server: director, viewer and OBS player.

Drives Debian's /usr/bin/chromium through Playwright (never a downloaded browser). Screenshots of every
page land in test-artifacts/. Every page must play without a click and log no console error. The
server runs in token mode (the default of ``serve``) unless a test is about ``--auth none``. No test
asserts a rate: video and generation must *advance* within generous windows.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

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
API_KEY = "browser-tests-api-key-0123456789"
#: What Chromium logs by itself for a response with an error status (a page asked, the server refused).
REFUSED_503 = "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
MISSING_404 = "Failed to load resource: the server responded with a status of 404 (Not Found)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:  # conftest lets aiortc offer 127.0.0.1 on loopback-only machines
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    """Token mode with a known API key, as `serve` runs by default."""
    thread = ServerThread(auth=Auth("token", api_key=API_KEY)).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ServerThread]:
    """``--auth none``: no token anywhere."""
    thread = ServerThread(auth=Auth("none")).start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def fresh_sessions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Free the sessions a test left (sessions outlive their pages; a running one would keep generating)."""
    yield
    for name in ("server", "open_server"):
        if name in request.fixturenames:
            request.getfixturevalue(name).free_sessions()


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


def open_director(pages: Pages, server: ServerThread, name: str = "director") -> Page:
    """The director as a new user opens it: the URL the server prints (``/?token=<API key>``)."""
    page = pages.open(f"{server.url}/?token={server.api_key}" if server.token_mode else server.url + "/", name)
    wait_connected(page)
    return page


def shown_frame(page: Page) -> int:
    """The current frame on the page's progress bar (moved by `progress` events)."""
    return int(page.get_attribute("#progress .bar", "aria-valuenow") or 0)


def wait_frame(page: Page, frame: int, timeout_ms: int = TIMEOUT_MS) -> None:
    """Wait until the progress bar shows ``frame`` or later."""
    page.wait_for_function(
        f"() => Number(document.querySelector('#progress .bar').getAttribute('aria-valuenow')) >= {frame}",
        timeout=timeout_ms,
    )


def session_of(page: Page) -> str:
    return page.evaluate("() => window.longlive.connection.session")


def state(server: ServerThread, session: str) -> dict:
    return server.get(f"/sessions/{session}")["state"]


def scheduled(server: ServerThread, session: str) -> dict[int, str]:
    return {entry["timestamp"]: entry["prompt"] for entry in state(server, session)["scheduled"]}


def share_links(page: Page) -> dict[str, str]:
    """The director's Share panel, once GET /sessions/{id} has filled it."""
    page.wait_for_function("() => document.querySelector('#obs-link').value !== ''", timeout=TIMEOUT_MS)
    return {name: page.input_value(f"#{name}-link") for name in ("viewer", "obs", "whep")}


def viewer_token(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


def add_prompt(page: Page, prompt: str, at: str, unit: str = "frame") -> None:
    page.fill("#schedule-prompt", prompt)
    page.fill("#schedule-at", at)
    page.select_option("#schedule-unit", unit)


def dismiss_notices(page: Page) -> None:
    """Close the notices with their Dismiss buttons (they would cover the video in screenshots)."""
    page.evaluate("() => document.querySelectorAll('#notices .notice-close').forEach((button) => button.click())")
    assert page.locator("#notices .notice").count() == 0


def assert_advances(page: Page, frames: int = 30, timeout_ms: int = 30_000) -> dict:
    """The 832x480 video decodes ``frames`` more frames within a generous window (progress, not a rate)."""
    wait_video(page, "s.framesDecoded !== undefined", timeout_ms)  # a new connection reports its video late
    before = video_stats(page)
    wait_video(page, f"s.framesDecoded >= {before['framesDecoded'] + frames}", timeout_ms)
    after = video_stats(page)
    assert after["videoWidth"] == 832 and after["videoHeight"] == 480, after
    return after


def live_target(page: Page) -> int:
    """The frame the live prompt box says Enter would use."""
    match = re.search(r"at frame (\d+)", page.text_content("#live-hint"))
    assert match, page.text_content("#live-hint")
    return int(match.group(1))


def test_director_page_directs_the_stream(server: ServerThread, pages: Pages, tmp_path) -> None:
    page = open_director(pages, server)
    wait_playing(page)  # the idle card plays before anything is scheduled
    session = session_of(page)
    assert page.text_content("#session-id") == session

    # the address names the session and its controller token, so a reload rejoins; the API key left it
    # for this tab's sessionStorage
    query = parse_qs(urlsplit(page.url).query)
    assert query["session"] == [session]
    controller = query["token"][0]
    assert controller != API_KEY and API_KEY not in page.url
    assert page.evaluate("() => sessionStorage.getItem('longlive-rtc.api-key')") == API_KEY
    assert server.get(f"/sessions/{session}", token=controller)["session"] == session
    links = share_links(page)
    for name, link in links.items():  # share links watch: the viewer token, never the controller's
        assert f"/{session}?token=" in link and controller not in link, (name, link)

    # Start needs a prompt at frame 0; a refused command shows the server's error over the video, and
    # the same error again is counted, not stacked
    assert page.locator("#start").is_disabled()
    assert page.get_attribute("#start", "title") == "Schedule a prompt at frame 0 first"
    page.evaluate("() => window.longlive.send('pause')")
    error = page.locator("#notices .notice-error").first
    error.wait_for(timeout=5000)
    assert "cannot pause: the stream is idle" in error.text_content()
    assert "not_running" in error.text_content()
    page.evaluate("() => window.longlive.send('pause')")
    page.wait_for_function("() => document.querySelector('#notices .notice-count')?.textContent === '×2'")
    assert page.locator("#notices .notice").count() == 1
    notice, video = error.bounding_box(), page.locator(".video-frame").bounding_box()
    assert video["y"] <= notice["y"] and notice["y"] + notice["height"] <= video["y"] + video["height"]
    dismiss_notices(page)

    # schedule through the timeline: at a frame, at a time in seconds, then edit and remove
    add_prompt(page, "a red fox running through fresh snow", "0")
    assert "a block start" in page.text_content("#schedule-preview")
    page.click("#schedule-submit")
    page.wait_for_selector("#schedule-list li[data-timestamp='0']")
    page.wait_for_function("() => !document.querySelector('#start').disabled")
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
    page.fill("#schedule-at", "39.2")  # a fraction of a frame rounds up, never into the past
    assert page.text_content("#schedule-preview").startswith("= frame 40 · ")
    assert "(39.2 rounded up)" in page.text_content("#schedule-preview")
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

    # seed, start: the video plays and the progress display advances
    page.fill("#seed", "42")
    page.click("#seed-form button")
    page.wait_for_function("() => !document.querySelector('#start').disabled")
    page.click("#start")
    page.wait_for_selector(".status-pill[data-status=running]")
    assert state(server, session)["seed"] == 42
    first = shown_frame(page)
    stats = assert_advances(page)
    assert stats["codec"] == "video/VP8"
    wait_frame(page, first + 9)  # the progress bar follows the progress events
    page.wait_for_function(
        "() => document.querySelector('.active-prompt-text').textContent.includes('blue ocean')", timeout=TIMEOUT_MS
    )
    assert page.locator("#schedule-list li.active").get_attribute("data-timestamp") == "9"
    assert "frame" in page.text_content(".readout") and "video" in page.text_content(".readout")

    # the live prompt: Enter puts it at the next free block start, which the hint names beforehand
    assert "Enter puts it on air at frame" in page.text_content("#live-hint")
    page.fill("#live-prompt", "a golden desert under a pink sky")
    hinted = live_target(page)
    page.press("#live-prompt", "Enter")
    page.wait_for_function(
        "() => document.querySelector('.active-prompt-text').textContent === 'a golden desert under a pink sky'",
        timeout=TIMEOUT_MS,
    )
    assert page.input_value("#live-prompt") == ""
    page.wait_for_function(  # on_air: its first frame was handed to the viewers
        "() => /On air \\d+\\.\\d s after Enter, by a recache/.test(document.querySelector('#notices').textContent)",
        timeout=TIMEOUT_MS,
    )
    live = [t for t, p in scheduled(server, session).items() if p == "a golden desert under a pink sky"]
    assert len(live) == 1 and live[0] >= hinted and live[0] % 3 == 0 and live[0] not in (0, 9, 60), live

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
    assert_advances(page, frames=15)

    # a reload rejoins the same session with the token in the address
    page.reload()
    wait_connected(page)
    assert session_of(page) == session and parse_qs(urlsplit(page.url).query)["token"] == [controller]
    page.wait_for_function("() => document.querySelector('#schedule-list li[data-timestamp=\"9\"]')")

    # phone width: one column, nothing wider than the screen
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    dismiss_notices(page)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "director-phone", full_page=True)

    assert pages.console_errors() == {}


def test_director_timeline_keeps_focus_and_marks_the_prompt_on_air(server: ServerThread, pages: Pages) -> None:
    page = open_director(pages, server)
    session = session_of(page)
    server.command(session, "schedule_prompt", new_prompt="a quiet harbour at dawn", timestamp=0)
    server.command(session, "schedule_prompt", new_prompt="rain over the harbour", timestamp=90)
    page.wait_for_selector("#schedule-list li[data-timestamp='90']")
    server.command(session, "start")
    wait_frame(page, 3)

    # the list is updated in place: focus on one of its buttons survives the blocks that go by
    page.locator("#schedule-list li[data-timestamp='90']").get_by_role("button", name="Edit").focus()
    page.evaluate("() => { window.entry90 = document.querySelector(\"#schedule-list li[data-timestamp='90']\"); }")
    wait_frame(page, shown_frame(page) + 6)
    assert page.evaluate(
        "() => window.entry90.isConnected && window.entry90.contains(document.activeElement)"
        " && document.activeElement.textContent === 'Edit'"
    )

    # ON AIR marks what NOW shows, also after the frame-0 prompt is edited while it is on air
    page.wait_for_selector("#schedule-list li.active[data-timestamp='0']")
    on_air = "() => [document.querySelector('#schedule-list li.active .entry-prompt')?.textContent ?? null," \
             " document.querySelector('.active-prompt-text').textContent]"  # fmt: skip
    server.command(session, "schedule_prompt", new_prompt="a stormy harbour at dusk", timestamp=0)
    page.wait_for_function(
        "() => document.querySelector('.active-prompt-text').textContent === 'a stormy harbour at dusk'",
        timeout=TIMEOUT_MS,
    )
    marked, now = page.evaluate(on_air)
    assert marked == now == "a stormy harbour at dusk"
    assert page.locator("#schedule-list li.active").get_attribute("data-timestamp") == "0"

    # paused, the live box targets the next free block start, and moves past a planned prompt there
    page.click("#pause")
    page.wait_for_selector(".status-pill[data-status=paused]")
    page.wait_for_timeout(1000)  # a block under way when it paused may still land
    target = live_target(page)
    assert target >= shown_frame(page) + 3 and target % 3 == 0
    server.command(session, "schedule_prompt", new_prompt="lanterns on the water", timestamp=target)
    page.wait_for_function(f"() => !document.querySelector('#live-hint').textContent.includes('at frame {target} ')")
    assert live_target(page) == target + 3
    assert "the prompt planned at frame 90 follows it" in page.text_content("#live-hint")
    page.fill("#live-prompt", "fireworks over the harbour")
    page.press("#live-prompt", "Enter")
    page.wait_for_selector(f"#schedule-list li[data-timestamp='{target + 3}']")
    plan = scheduled(server, session)
    assert plan[target] == "lanterns on the water" and plan[target + 3] == "fireworks over the harbour"
    page.click("#resume")
    page.wait_for_function(
        "() => document.querySelector('.active-prompt-text').textContent === 'fireworks over the harbour'",
        timeout=TIMEOUT_MS,
    )
    marked, now = page.evaluate(on_air)
    assert marked == now == "fireworks over the harbour"
    assert pages.console_errors() == {}


def test_director_stops_and_resets_only_after_confirmation(server: ServerThread, pages: Pages) -> None:
    page = open_director(pages, server)
    session = session_of(page)
    for at, prompt in (("0", "a paper boat on a stream"), ("6", "the boat reaches a lake")):
        add_prompt(page, prompt, at)
        page.click("#schedule-submit")
        page.wait_for_selector(f"#schedule-list li[data-timestamp='{at}']")
    page.click("#start")
    page.wait_for_selector(".status-pill[data-status=running]")
    wait_frame(page, 9)

    # Stop: generation ends and the counter returns to 0; the prompts and the seed stay, Start replays them
    page.click("#stop")
    page.wait_for_selector(".status-pill[data-status=idle]")
    assert shown_frame(page) == 0 and len(scheduled(server, session)) == 2
    page.wait_for_function(
        "() => !document.querySelector('#start').disabled && document.querySelector('#stop').disabled"
    )
    page.click("#start")
    page.wait_for_selector(".status-pill[data-status=running]")
    wait_frame(page, 3)

    # Reset asks first: dismissed, nothing happens
    asked: list[str] = []

    def answer(accept: bool):
        def handle(dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    page.once("dialog", answer(False))
    page.click("#reset")
    assert len(asked) == 1 and "deletes all 2 scheduled prompts" in asked[0], asked
    page.wait_for_timeout(500)
    assert state(server, session)["status"] == "running" and len(scheduled(server, session)) == 2

    # accepted, the stream stops and every prompt is gone
    page.once("dialog", answer(True))
    page.click("#reset")
    page.wait_for_selector(".status-pill[data-status=idle]")
    page.wait_for_selector("#schedule-list li", state="detached")
    assert len(asked) == 2 and scheduled(server, session) == {}
    assert page.locator("#start").is_disabled()
    assert pages.console_errors() == {}


def test_viewer_and_obs_pages_play_the_same_session_without_a_click(server: ServerThread, pages: Pages) -> None:
    prompt = "a violet nebula drifting over a calm sea"
    made = server.post_session(schedule=[{"timestamp": 0, "prompt": prompt}])
    session, urls, tokens = made["session"], made["urls"], made["tokens"]
    director = pages.open(urls["director"], "director")  # the link with the controller token joins
    wait_connected(director)
    assert session_of(director) == session
    links = share_links(director)
    for name, page in (("viewer", "view"), ("obs", "obs")):
        assert links[name].startswith(f"{server.url}/{page}/{session}?token="), links
        assert urls[name] == f"{server.url}/{page}/{session}?token={tokens['viewer']}", urls
        # a viewer's token (each answer signs a fresh one): it sees the session, not the director's link
        assert "director" not in server.get(f"/sessions/{session}", token=viewer_token(links[name]))["urls"]

    viewer = pages.open(links["viewer"], "viewer", {"width": 1280, "height": 800})
    obs = pages.open(links["obs"], "obs", OBS_SIZE)
    for page in (viewer, obs):
        wait_connected(page)
        wait_playing(page)
        assert session_of(page) == session

    # before the start the audience sees a neutral picture, never the director's instructions
    viewer.wait_for_selector("#idle[data-status=idle]", state="attached")
    assert viewer.locator("#idle").is_visible()
    assert viewer.text_content("#idle") == "LongLive RTCThe stream starts soon."
    obs.wait_for_selector("#idle[data-status=idle]", state="attached")
    assert obs.locator("#idle").is_visible() and obs.text_content("#idle") == ""
    assert obs.evaluate("() => getComputedStyle(document.querySelector('#idle')).backgroundColor") == "rgb(0, 0, 0)"
    screenshot(viewer, "viewer-idle")
    server.command(session, "start", token=tokens["controller"])
    for page in (viewer, obs):
        page.wait_for_selector("#idle", state="hidden", timeout=TIMEOUT_MS)

    # the viewer: video, the current prompt and the progress, no controls; its token cannot command
    viewer.wait_for_function(
        f"() => document.querySelector('.active-prompt-text').textContent === {json.dumps(prompt)}",
        timeout=TIMEOUT_MS,
    )
    first = shown_frame(viewer)
    assert viewer.locator("button, input, textarea, select").count() == 0
    refused = viewer.evaluate("() => window.longlive.connection.request('pause').then(() => 'ack', e => e.data?.code)")
    assert refused == "forbidden"
    status, body = server.request("POST", f"/sessions/{session}/commands", {"type": "pause"}, tokens["viewer"])
    assert status == 403, body
    listed = {entry["session"]: entry for entry in server.get("/sessions")["sessions"]}[session]
    assert listed["controllers"] == 1 and listed["viewers"] == 2 and listed["status"] == "running"

    # all three play the same stream at once: each decodes more frames within a generous window
    for page in (director, viewer, obs):
        assert_advances(page)
    wait_frame(viewer, first + 3)
    screenshot(viewer, "viewer")

    # the OBS player: only the video, filling the window, on black
    box = obs.evaluate("() => { const r = document.querySelector('video').getBoundingClientRect();"
                       " return [r.x, r.y, r.width, r.height]; }")  # fmt: skip
    assert box == [0, 0, 832, 480]
    assert obs.evaluate("() => getComputedStyle(document.body).backgroundColor") == "rgb(0, 0, 0)"
    assert obs.locator("#caption").is_hidden() and obs.locator("#status").is_hidden()
    assert obs.evaluate("() => document.querySelector('video').muted")
    screenshot(obs, "obs")

    # overlay flags: stamp=0 crops the stamp band, prompt=1 captions the active prompt
    overlay = pages.open(links["obs"] + "&stamp=0&prompt=1", "obs-overlay", OBS_SIZE)
    wait_connected(overlay)
    wait_playing(overlay)
    overlay.wait_for_function(
        f"() => document.querySelector('#caption').textContent === {json.dumps(prompt)}", timeout=TIMEOUT_MS
    )
    frame_height, video_height = overlay.evaluate(
        "() => [document.querySelector('#frame').getBoundingClientRect().height,"
        " document.querySelector('video').getBoundingClientRect().height]"
    )
    assert video_height == 480 and frame_height == 416  # the two 32-row bands (stamp, transitions) fall outside
    screenshot(overlay, "obs-overlay")

    assert pages.console_errors() == {}


def test_obs_page_keeps_playing_after_the_director_tab_closes(server: ServerThread, pages: Pages) -> None:
    director = open_director(pages, server)
    session = session_of(director)
    server.command(session, "schedule_prompt", new_prompt="a long drive through the desert at night", timestamp=0)
    server.command(session, "start")
    obs = pages.open(share_links(director)["obs"], "obs", OBS_SIZE)
    wait_connected(obs)
    wait_playing(obs)
    obs.wait_for_selector("#idle", state="hidden", timeout=TIMEOUT_MS)
    assert server.get(f"/sessions/{session}")["controllers"] == 1

    # the tab closes: its page tells the server, which drops the director's peer at once
    closed = time.monotonic()
    director.close(run_before_unload=True)
    while server.get(f"/sessions/{session}")["controllers"] != 0:
        assert time.monotonic() - closed < 15, "the director's peer outlived its tab"
        time.sleep(0.05)
    dropped_after = time.monotonic() - closed
    assert dropped_after < 5, dropped_after
    print(f"director's peer dropped {dropped_after:.2f} s after its tab closed")

    # the stream goes on for its audience: for 60 s, every 10 s window shows new frames and new blocks
    frames, blocks = [video_stats(obs)["framesDecoded"]], [state(server, session)["current_start_frame"]]
    for _ in range(6):
        obs.wait_for_timeout(10_000)
        frames.append(video_stats(obs)["framesDecoded"])
        blocks.append(state(server, session)["current_start_frame"])
    assert all(later > earlier for earlier, later in zip(frames, frames[1:], strict=False)), frames
    assert all(later > earlier for earlier, later in zip(blocks, blocks[1:], strict=False)), blocks
    assert state(server, session)["status"] == "running" and obs.locator("#idle").is_hidden()
    print(f"frames decoded by the OBS page every 10 s: {frames}; generation frames: {blocks}")
    assert pages.console_errors() == {}


def test_full_server_says_why_and_retries(browser: Browser, pages: Pages) -> None:
    config = HubConfig(max_sessions=1, connect_timeout=5, max_peers_per_session=1)
    full = ServerThread(auth=Auth("token", api_key=API_KEY), config=config)
    full.start()
    try:
        running = full.post_session(schedule=[{"timestamp": 0, "prompt": "a busy street"}], start=True)
        page = pages.open(f"{full.url}/?token={API_KEY}", "director")
        page.wait_for_selector("html[data-connection=busy]", state="attached", timeout=TIMEOUT_MS)
        assert "all 1 generation slots are busy" in page.text_content("#connection")
        assert "Reconnecting" not in page.text_content("#connection")
        banner = page.locator("#refused-banner")
        assert banner.is_visible() and "all 1 generation slots are busy" in banner.text_content()
        assert "Trying again in" in banner.text_content()
        # with the API key in the tab, the page names the sessions holding the slots, with director links
        held = page.locator("#refused-sessions a")
        held.wait_for(timeout=TIMEOUT_MS)
        assert held.text_content() == running["session"]
        assert held.get_attribute("href").startswith(f"{full.url}/?session={running['session']}&token=")
        assert "(running, 0 viewers)" in page.text_content("#refused-sessions")
        screenshot(page, "director-server-full")

        # the slot frees: after Retry-After the page tries again and gets its own session
        status, _ = full.request("DELETE", f"/sessions/{running['session']}")
        assert status == 204
        wait_connected(page, timeout_ms=30_000)
        assert banner.is_hidden() and session_of(page) != running["session"]

        # a session at its peer limit: the viewer page says so, on its badge and its idle card
        viewer = pages.open(share_links(page)["viewer"], "viewer")
        viewer.wait_for_selector("html[data-connection=busy]", state="attached", timeout=TIMEOUT_MS)
        assert "too many viewers" in viewer.text_content("#connection")
        assert "too many viewers" in viewer.text_content("#idle") and viewer.locator("#idle").is_visible()
        assert pages.console_errors(allowed=(REFUSED_503,)) == {}
    finally:
        pages.close()
        full.stop()


def test_director_with_a_viewer_token_or_a_wrong_token_says_so(server: ServerThread, pages: Pages) -> None:
    made = server.post_session()
    session, viewer_token = made["session"], made["tokens"]["viewer"]
    page = pages.open(f"{server.url}/?session={session}&token={viewer_token}", "director")
    page.wait_for_selector("html[data-connection=denied]", state="attached", timeout=TIMEOUT_MS)
    banner = page.text_content("#refused-banner")
    assert "may watch the session but not control it" in banner
    assert page.get_attribute("#refused-link", "href") == f"/view/{session}?token={viewer_token}"
    assert page.locator("#start").is_disabled()
    wrong = pages.open(f"{server.url}/obs/{session}?token=not-a-token&status=1", "obs", OBS_SIZE)
    wrong.wait_for_selector("html[data-connection=denied]", state="attached", timeout=TIMEOUT_MS)
    assert "a valid token is required" in wrong.text_content("#status")
    forbidden = "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    unauthorized = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    assert pages.console_errors(allowed=(forbidden, unauthorized)) == {}


def test_director_needs_no_token_with_auth_none(open_server: ServerThread, pages: Pages) -> None:
    page = open_director(pages, open_server)
    wait_playing(page)
    session = session_of(page)
    assert parse_qs(urlsplit(page.url).query) == {"session": [session]}
    assert share_links(page)["obs"] == f"{open_server.url}/obs/{session}"
    assert pages.console_errors() == {}


def test_director_recreates_a_gone_session_under_its_id(open_server: ServerThread, pages: Pages) -> None:
    page = pages.open(open_server.url + "/?session=session-from-yesterday", "director")
    wait_connected(page)
    wait_playing(page)
    assert session_of(page) == "session-from-yesterday" and page.locator("#gone-banner").is_hidden()
    assert share_links(page)["obs"].endswith("/obs/session-from-yesterday")
    assert pages.console_errors() == {}


def test_director_offers_a_new_session_when_its_id_cannot_be_recreated(open_server: ServerThread, pages: Pages) -> None:
    page = pages.open(open_server.url + "/?session=no", "director")  # too short to be a session id
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
    first = ServerThread(auth=Auth("token", api_key=API_KEY)).start()
    port = first.port
    second: ServerThread | None = None
    try:
        director = open_director(pages, first)
        session = session_of(director)
        add_prompt(director, "a lighthouse in a storm", "0")
        director.click("#schedule-submit")
        director.wait_for_function("() => window.longlive.model.scheduled.length === 1", timeout=TIMEOUT_MS)
        obs = pages.open(share_links(director)["obs"] + "&status=1", "obs", OBS_SIZE)
        wait_connected(obs)
        wait_playing(obs)

        first.stop()  # every session and peer is gone with it
        obs.wait_for_function("() => document.documentElement.dataset.connection !== 'connected'")
        screenshot(obs, "obs-waiting")
        second = ServerThread(port, auth=Auth("token", api_key=API_KEY)).start()  # same API key: same tokens

        # the director comes back first and recreates its session under the same id, schedule restored;
        # the OBS player, which kept retrying with its viewer token, finds the session again and plays
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
        # Chromium itself logs the requests refused while the server was down, and the OBS player's
        # questions for its session while it was missing; nothing else may appear
        assert pages.console_errors(allowed=(CONNECTION_REFUSED, MISSING_404)) == {}
    finally:
        pages.close()
        if second is not None:
            second.stop()
        elif not first.loop.is_closed():
            first.stop()
