"""The README's Python example is examples/receive_frames.py, verbatim, and it receives frames from a real server."""

from __future__ import annotations

import importlib.util
import re
import runpy
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .rtc_client import Server, allow_loopback_ice, loopback_only

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


def test_the_example_run_as_the_readme_says_against_longlive_rtc_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``longlive-rtc serve`` in a process of its own prints its API key; the example's command line uses it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "longlive_rtc.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        serve = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline, banner = time.monotonic() + 60, None
        while banner is None and time.monotonic() < deadline and serve.poll() is None:
            time.sleep(0.2)
            banner = re.search(r"open http://127\.0\.0\.1:\d+/\?token=(\S+) in a browser", log.read_text())
        assert banner, log.read_text()
        key = banner.group(1)
        while time.monotonic() < deadline:  # the banner comes before the socket listens
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        if loopback_only():
            allow_loopback_ice()
        monkeypatch.setattr(sys, "argv", [str(EXAMPLE), f"http://127.0.0.1:{port}", key])
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(20)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    assert capsys.readouterr().out.splitlines()[-1] == "30 frames of (480, 832, 3)"
    assert "Traceback" not in log.read_text()
