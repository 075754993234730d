"""Where recordings and clips live: one folder per session under the recordings directory, a byte quota
shared by every session, and a floor of free disk below which nothing new starts."""

from __future__ import annotations

import errno
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

MIN_FREE_BYTES = 64 * 1024 * 1024  # nothing new starts on a disk with less free space than this
#: Names of files in a session's folder: ``rec-`` (recordings) or ``clip-``, a UTC time, a random tag.
FILE_NAME = re.compile(r"(rec|clip)-\d{8}T\d{6}Z-[0-9a-f]{6}\.(mp4|json)")
SESSION_FOLDER = re.compile(r"[A-Za-z0-9_-]{4,64}")  # a session id (the hub's rule): never a path
SIZE_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class StoreFull(Exception):
    """No room for more output: the quota is reached or the disk is (nearly) full."""

    status = 507  # HTTP Insufficient Storage

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # "quota" or "disk full"


def parse_size(text: str) -> int:
    """``"500M"``, ``"10G"``, ``"1048576"`` -> bytes (K/M/G/T are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 10G)")
    return int(float(match.group(1)) * SIZE_SUFFIXES[match.group(2)])


def human(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} bytes"


class Store:
    """The recordings directory and its quota (bytes of every file in it, whichever session wrote it)."""

    def __init__(self, root: Path, quota: int, min_free: int = MIN_FREE_BYTES) -> None:
        self.root = Path(root)
        self.quota = quota
        self.min_free = min_free
        self._lock = threading.Lock()
        self._used: int | None = None

    @property
    def used(self) -> int:
        with self._lock:
            if self._used is None:
                self._used = self._measure()
            return self._used

    def _measure(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.root.glob("*/*") if path.is_file())

    def check_room(self, need: int = 0) -> None:
        """Raise :class:`StoreFull` when a new recording or clip needing ``need`` bytes could not start."""
        used = self.used
        if used >= self.quota or used + need > self.quota:
            raise StoreFull(
                f"the recordings quota of {human(self.quota)} is used up ({human(used)}; {human(need)} needed); "
                "delete recordings to make room", "quota",
            )  # fmt: skip
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < self.min_free:
            raise StoreFull(
                f"the disk holding the recordings is full ({human(free)} free; at least "
                f"{human(self.min_free)} needed)", "disk full",
            )  # fmt: skip

    def charge(self, size: int) -> None:
        """Count ``size`` bytes about to be written; :class:`StoreFull` (nothing counted) past the quota."""
        with self._lock:
            used = self._measure() if self._used is None else self._used
            if used + size > self.quota:
                raise StoreFull(f"the recordings quota of {human(self.quota)} is reached", "quota")
            self._used = used + size

    def add(self, size: int) -> None:
        """Count ``size`` bytes written whatever the quota (a small JSON that must be written)."""
        with self._lock:
            if self._used is not None:
                self._used += size

    def refund(self, size: int) -> None:
        """``size`` bytes counted earlier are gone (a file truncated or deleted)."""
        with self._lock:
            if self._used is not None:
                self._used = max(0, self._used - size)

    def _folder(self, session_id: str) -> Path:
        if not SESSION_FOLDER.fullmatch(session_id):
            raise ValueError(f"not a session id: {session_id[:80]!r}")
        return self.root / session_id

    def folder(self, session_id: str) -> Path:
        folder = self._folder(session_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def new_stem(self, session_id: str, kind: str) -> Path:
        """A fresh ``<folder>/<kind>-<UTC time>-<tag>`` (add ``.mp4`` / ``.json``)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return self.folder(session_id) / f"{kind}-{stamp}-{secrets.token_hex(3)}"

    def path(self, session_id: str, name: str) -> Path | None:
        """The file ``name`` of a session, or None (a name that is not one of ours is never a path)."""
        if not FILE_NAME.fullmatch(name) or not SESSION_FOLDER.fullmatch(session_id):
            return None
        path = self._folder(session_id) / name
        return path if path.is_file() else None

    def files(self, session_id: str) -> list[Path]:
        """A session's MP4 files, oldest first."""
        if not SESSION_FOLDER.fullmatch(session_id):
            return []
        folder = self._folder(session_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if FILE_NAME.fullmatch(p.name) and p.suffix == ".mp4")

    def delete(self, session_id: str, name: str) -> bool:
        """Delete a recording or clip (its MP4 and its JSON); False when there is none."""
        path = self.path(session_id, name)
        if path is None or path.suffix != ".mp4":
            return False
        for each in (path, path.with_suffix(".json")):
            try:
                size = each.stat().st_size
                each.unlink()
            except FileNotFoundError:
                continue
            self.refund(size)
        return True


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
