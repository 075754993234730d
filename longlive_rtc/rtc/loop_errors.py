"""Errors of aiortc's fire-and-forget tasks when a peer vanished, kept out of the error log.

aiortc transmits from tasks nobody awaits. When a client vanishes (its ICE consent fails and the
transport closes) while such a task still has something to send, the task fails with ``ConnectionError``
and asyncio logs "Task exception was never retrieved" at ERROR with a traceback, although nothing is
wrong: the peer's connection state turns to failed and the hub closes it. Those failures are logged at
debug; every other unhandled error still reaches the loop's handler.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

log = logging.getLogger(__name__)

_QUIETED: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_SOURCES = ("/aiortc/", "/aioice/")


def _from_transport(future: object) -> bool:
    """Whether ``future`` is a task running aiortc or aioice code."""
    get_coro = getattr(future, "get_coro", None)
    code = getattr(get_coro(), "cr_code", None) if get_coro else None
    filename = code.co_filename.replace("\\", "/") if code else ""
    return any(source in filename for source in _SOURCES)


def quiet_vanished_peers(loop: asyncio.AbstractEventLoop) -> None:
    """Install the filter on ``loop`` (once), in front of whatever handler it has."""
    if loop in _QUIETED:
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, ConnectionError) and _from_transport(context.get("future")):
            log.debug("a vanished peer's transport task failed: %s", exc)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    _QUIETED.add(loop)
