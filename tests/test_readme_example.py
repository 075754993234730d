"""The README's Python example is examples/receive_frames.py, verbatim, and it receives frames from a real server."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .rtc_client import Server

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "receive_frames.py"
API_KEY = "readme-example-key-0123456789"


def test_the_readme_shows_the_example_file_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```\n" in readme, "copy examples/receive_frames.py into README.md"


async def test_the_example_creates_a_session_and_receives_its_frames_as_a_viewer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = importlib.util.spec_from_file_location("receive_frames", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    async with Server(HubConfig(max_sessions=2), auth=Auth("token", api_key=API_KEY)) as server:
        frames = await example.receive_frames(server.url, API_KEY, count=45)
        assert server.hub.sessions == {}  # deleted at the end
        assert server.generators and server.generators[0].blocks >= 1  # it started at once
    assert len(frames) == 45 and all(f.shape == (480, 832, 3) for f in frames)
    assert len({f.tobytes() for f in frames[-15:]}) > 1  # moving picture, not an idle card
    printed = capsys.readouterr().out
    assert '"type": "state"' in printed or '"type":"state"' in printed
