"""A vanished peer's failed aiortc transmit task is not logged as an error; other lost errors still are."""

from __future__ import annotations

import asyncio
import gc
import logging

import aioice
import pytest

from longlive_rtc.rtc.loop_errors import quiet_vanished_peers


async def fail_here() -> None:
    raise ConnectionError("not from a transport")


async def lose(coro) -> None:
    """Run ``coro`` in a task whose exception nobody retrieves, then let the task be collected."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        await asyncio.sleep(0)
    del task
    gc.collect()
    await asyncio.sleep(0)


async def test_a_transport_task_of_a_gone_connection_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    quiet_vanished_peers(asyncio.get_running_loop())
    quiet_vanished_peers(asyncio.get_running_loop())  # once per loop
    connection = aioice.Connection(ice_controlling=True)
    await lose(connection.sendto(b"data", 1))  # "Cannot send data, not connected", as after a vanished peer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "vanished peer" in caplog.text
    await lose(fail_here())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "never retrieved" in errors[0].getMessage()
