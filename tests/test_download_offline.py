"""`longlive-rtc download` against real endpoints that cannot serve the files (nothing of huggingface_hub faked):
a refused port, a proxy answering 503, a mirror without the files. Each run ends soon with one error line, and
leaves no folder behind: no empty `.cache`, no empty weights directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BOUND_S = 60  # generous: each case takes a few seconds, huggingface_hub's retries alone would take 25 s and more


class Answering(BaseHTTPRequestHandler):
    """Answers every request with the server's ``status`` and an empty body, counting the requests."""

    def answer(self) -> None:
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, ThreadingHTTPServer | None]]:
    """``HF_ENDPOINT`` for the case: a closed port (``None``) or a local server answering that status."""
    status = request.param
    if status is None:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        yield f"http://127.0.0.1:{port}", None
        return
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    server.status, server.requests = status, 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


def download(cwd: Path, url: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(cwd / "hf-home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "longlive_rtc.cli", "download", "--dir", "weights", "--no-tae"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=BOUND_S * 3,
    )  # fmt: skip
    return done, time.monotonic() - started


def folders_left(root: Path) -> list[str]:
    """Folders under ``root`` that are empty or named .cache (the Hub client's own HF_HOME aside)."""
    found = []
    for folder in (p for p in root.rglob("*") if p.is_dir() and "hf-home" not in p.relative_to(root).parts):
        if folder.name == ".cache" or not any(folder.iterdir()):
            found.append(folder.relative_to(root).as_posix())
    return found


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        (None, "cannot reach the Hugging Face Hub (ConnectError"),
        (503, "cannot reach the Hugging Face Hub (it answered 503 Service Unavailable)"),
        (404, "could not download Wan2.1_VAE.pth from Wan-AI/Wan2.1-T2V-1.3B: HTTPStatusError: Client error '404"),
    ],
    indirect=["endpoint"],
    ids=["refused", "answers-503", "answers-404"],
)
def test_download_that_cannot_fetch_stops_soon_with_one_line_and_leaves_no_folders(
    tmp_path: Path, endpoint: tuple[str, ThreadingHTTPServer | None], says: str
) -> None:
    url, server = endpoint
    done, seconds = download(tmp_path, url)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), done.stderr
    assert "`longlive-rtc download --dir weights`" in lines[0]
    if server is None or server.status == 503:  # type: ignore[attr-defined]
        for path in ("weights/wan_models/Wan2.1-T2V-1.3B/Wan2.1_VAE.pth", "weights/longlive_models/models/lora.pt"):
            assert path in lines[0]  # what to copy in by hand, and where
    if server is not None:
        assert server.requests <= 4, server.requests  # asked once or twice a file, never retried
    assert seconds < BOUND_S, seconds
    assert not (tmp_path / "weights").exists(), folders_left(tmp_path)
    assert folders_left(tmp_path) == []
