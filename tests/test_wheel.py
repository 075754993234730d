"""The built wheel: it carries every page, and its console script, installed into a fresh venv, serves them."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from signaling.app import HTTP_LIMITS

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "signaling" / "static"
SOURCES = ("pyproject.toml", "README.md", "longlive_rtc", "signaling")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    tree = tmp_path_factory.mktemp("tree")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tree / name)
    out = tmp_path_factory.mktemp("dist")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."]
    subprocess.run(command, cwd=tree, check=True, capture_output=True, timeout=240)
    (built,) = out.glob("longlive_rtc-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel ``pip install``-ed (package data, console script); its dependencies are this
    venv's, on a ``.pth`` line, so nothing is downloaded and the checkout is not on its path."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=240)
    python = str(venv / "bin" / "python")
    paths = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([python, "-c", paths], check=True, capture_output=True, text=True).stdout.strip())
    dependencies = [p for p in sys.path if p.endswith("site-packages")]  # plain lines: their own .pth stay unread
    (site / "dependencies.pth").write_text("\n".join(dependencies) + "\n")
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=240)
    return venv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def test_the_wheel_carries_every_page_script_and_stylesheet(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    pages = {f"signaling/{p.relative_to(STATIC.parent).as_posix()}" for p in STATIC.rglob("*") if p.is_file()}
    assert {"signaling/static/index.html", "signaling/static/view.html", "signaling/static/obs.html"} <= pages
    assert any(p.endswith(".js") for p in pages) and any(p.endswith(".css") for p in pages)
    assert sorted(pages - names) == [], "pages missing from the wheel (package-data in pyproject.toml)"
    assert "longlive_rtc/cli.py" in names and not any(n.startswith(("tests/", "static/")) for n in names)


def test_a_server_started_from_the_installed_wheel_serves_the_director(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = "import longlive_rtc, signaling; print(longlive_rtc.__file__); print(signaling.__file__)"
    found = subprocess.run([str(installed / "bin" / "python"), "-c", where], cwd=tmp_path, env=env, check=True,
                           capture_output=True, text=True).stdout.split()  # fmt: skip
    assert all(path.startswith(str(installed)) for path in found), found  # the installed copy, not the checkout
    port = free_port()
    command = [str(installed / "bin" / "longlive-rtc"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--auth", "none", "--max-sessions", "1"]  # fmt: skip
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"server exited: {server.stderr.read()}"
            try:
                status, html = get(f"http://127.0.0.1:{port}/")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "server did not answer within 60 s"
                time.sleep(0.2)
        assert status == 200 and "<title>LongLive RTC · Director</title>" in html
        assert get(f"http://127.0.0.1:{port}/static/js/director.js")[0] == 200
        assert get(f"http://127.0.0.1:{port}/static/css/director.css")[0] == 200
        assert status_with_headers(port, HTTP_LIMITS["max_headers"] + 10) == 400  # serve applies HTTP_LIMITS
    finally:
        server.terminate()
        _, log = server.communicate(timeout=10)
    assert "Failed to create request handler" not in log and "WARNING" not in log, log
    assert "GET /static" not in log, "per-request lines at INFO"


def status_with_headers(port: int, count: int) -> int:
    """The status of ``GET /`` sent with ``count`` extra header fields."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest("GET", "/")
        for index in range(count):
            connection.putheader(f"X-Extra-{index}", "1")
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()
