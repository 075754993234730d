"""The director's transition control (recache, hard cut, blend) in headless Chromium against the real server."""

from __future__ import annotations

import pytest

from .browser_support import CHROMIUM, ServerThread
from .test_browser import TIMEOUT_MS, Pages, add_prompt, browser, open_director, pages, server, session_of, state

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]
__all__ = ["browser", "pages", "server"]  # the fixtures, shared with test_browser


def transitions(server: ServerThread, session: str) -> dict[int, dict | None]:
    return {e["timestamp"]: e.get("transition") for e in state(server, session)["scheduled"]}


def wait_entry_says(page, timestamp: int, text: str) -> None:
    page.wait_for_function(
        f"() => document.querySelector(\"#schedule-list li[data-timestamp='{timestamp}'] .entry-transition\")"
        f"?.textContent.includes({text!r})",
        timeout=TIMEOUT_MS,
    )


def test_director_schedules_edits_and_goes_live_with_transitions(server: ServerThread, pages: Pages) -> None:
    page = open_director(pages, server)
    session = session_of(page)
    server.command(session, "schedule_prompt", new_prompt="a quiet harbour at dawn", timestamp=0)

    # a blend over 3 blocks, slerp, from the timeline form; the blend's fields show only for a blend
    blocks, curve = "#schedule-transition [data-part=blocks]", "#schedule-transition [data-part=curve]"
    assert not page.is_visible(blocks)
    add_prompt(page, "rain over the harbour", "6")
    page.select_option("#schedule-transition-mode", "blend")
    assert page.is_visible(blocks) and page.get_attribute(blocks, "max") == "64"
    page.fill(blocks, "3")
    page.select_option(curve, "slerp")
    page.click("#schedule-submit")
    wait_entry_says(page, 6, "blend over 3 blocks (slerp)")
    assert transitions(server, session) == {0: None, 6: {"mode": "blend", "blocks": 3, "curve": "slerp"}}
    assert page.input_value("#schedule-transition-mode") == "recache", "the form is reset after Add"

    # editing shows the entry's transition; saving it as a hard cut replaces it
    page.locator("#schedule-list li[data-timestamp='6']").get_by_role("button", name="Edit").click()
    assert page.input_value("#schedule-transition-mode") == "blend" and page.input_value(blocks) == "3"
    page.select_option("#schedule-transition-mode", "cut")
    assert not page.is_visible(blocks)
    page.click("#schedule-submit")
    wait_entry_says(page, 6, "hard cut")
    assert transitions(server, session)[6] == {"mode": "cut"}

    # the live prompt box takes a transition too
    page.select_option("#live-transition-mode", "blend")
    page.fill("#live-transition [data-part=blocks]", "2")
    page.fill("#live-prompt", "fireworks over the harbour")
    page.press("#live-prompt", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#schedule-list li').length === 3", timeout=TIMEOUT_MS)
    live = {t: x for t, x in transitions(server, session).items() if t not in (0, 6)}
    assert list(live.values()) == [{"mode": "blend", "blocks": 2, "curve": "linear"}], live
    assert pages.console_errors() == {}
