"""A ``longlive-rtc serve`` process for the reliability benchmarks: started on a free port, watched through
/proc (RSS, open fds, CPU seconds) and its log (tracebacks, errors), stopped at the end; and ``report``, the
benchmarks' common ending (results printed as JSON and written to ``--json``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tests.rtc_client import allow_loopback_ice, loopback_only

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def report(result: dict, path: str | None, hide: Iterable[str] = ()) -> int:
    """Print ``result`` as JSON (less the keys in ``hide``), write all of it to ``path`` if given; exit status 0."""
    hidden = set(hide)
    print(json.dumps({k: v for k, v in result.items() if k not in hidden}, indent=2))
    if path:
        Path(path).write_text(json.dumps(result, indent=2))
    return 0


class ServerProcess:
    """``serve`` with the synthetic generator on 127.0.0.1, its log in a fresh temporary folder; ``args`` are
    extra CLI flags; ``startup_timeout`` bounds the wait for /health (a GPU model loads first). Entering it
    also lets this process's aiortc clients use 127.0.0.1 on a machine that has no other IPv4 address."""

    def __init__(self, *args: str, api_key: str | None = None, startup_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log_path = Path(tempfile.mkdtemp()) / "serve.log"
        auth = ["--auth", "token", "--api-key", api_key] if api_key else ["--auth", "none"]
        self.command = [sys.executable, "-m", "longlive_rtc.cli", "serve", "--generator", "synthetic",
                        "--host", "127.0.0.1", "--port", str(self.port), "--state-dir", str(self.log_path.parent),
                        *auth, *args]  # fmt: skip
        self.process: subprocess.Popen | None = None
        self.startup_timeout = startup_timeout

    def __enter__(self) -> ServerProcess:
        if loopback_only():
            allow_loopback_ice()
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in __exit__)
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"serve did not answer /health within {self.startup_timeout:g} s")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_problems(self) -> dict[str, int]:
        """Tracebacks and ERROR/CRITICAL lines in the server's log so far."""
        text = self.log_path.read_text(errors="replace")
        return {
            "tracebacks": text.count("Traceback (most recent call last)"),
            "error_lines": sum(1 for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line),
        }

    def summary(self, **extra: object) -> dict:
        """The log's problems, ``extra`` and the log's path: the ``server`` entry of a benchmark's results."""
        return {**self.log_problems(), **extra, "log": str(self.log_path)}
