"""HTTP routes of WHIP out: ``POST``/``GET /sessions/{id}/outputs``, ``DELETE /sessions/{id}/outputs/{output}``.

A controller token (or the API key) starts, lists and stops a session's WHIP outputs; each publishes the
session's on-air frames to a WHIP ingest (:mod:`longlive_rtc.rtc.whip`), retrying with backoff while the
ingest is unreachable. The stream never waits for an output; the bearer token given for the ingest is
never logged nor listed.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import web

from longlive_rtc.rtc.hub import Hub
from longlive_rtc.rtc.whip import BadWhipUrl, WhipPublisher, check_url

from .routes import ACCESS_KEY, HUB_KEY, _json_body, _limit, json_error

MAX_OUTPUTS = 4  # WHIP outputs per session (each is one more encode)


class WhipOutputs:
    """Every live session's WHIP outputs; stopped when the hub frees the session."""

    def __init__(self, hub: Hub, max_outputs: int = MAX_OUTPUTS, allow_private: bool = False) -> None:
        self.hub, self.max_outputs, self.allow_private = hub, max_outputs, allow_private
        self.sessions: dict[str, dict[str, WhipPublisher]] = {}
        self._stopping: set[asyncio.Task] = set()
        hub.on_freed.append(self._freed)

    def of(self, session_id: str) -> dict[str, WhipPublisher]:
        return self.sessions.get(session_id, {})

    def listing(self, session_id: str) -> list[dict[str, Any]]:
        return [output.info() for output in self.of(session_id).values()]

    def _freed(self, session_id: str) -> None:
        for output in self.sessions.pop(session_id, {}).values():
            task = asyncio.ensure_future(output.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        outputs = [output for session in self.sessions.values() for output in session.values()]
        self.sessions.clear()
        await asyncio.gather(*(output.stop() for output in outputs), *self._stopping, return_exceptions=True)


WHIP_KEY = web.AppKey("whip_outputs", WhipOutputs)


def _entry(session_id: str, info: dict[str, Any]) -> dict[str, Any]:
    return {**info, "url": f"/sessions/{session_id}/outputs/{info['id']}"}


async def start_output(request: web.Request) -> web.Response:
    """``{"whip": URL, "token"?: str}`` -> 201 with the output (its id and state); 409 past the cap."""
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    live = request.app[HUB_KEY].get(session_id)
    _limit(request, "outputs started")
    body = await _json_body(request)
    unknown = sorted(set(body) - {"whip", "token"})
    if unknown:
        return json_error(400, f"unknown fields: {', '.join(map(str, unknown))[:200]}")
    try:
        url = check_url(body.get("whip"), request.app[WHIP_KEY].allow_private)
    except BadWhipUrl as exc:
        return json_error(400, str(exc))
    token = body.get("token")
    if token is not None and (not isinstance(token, str) or not 0 < len(token) <= 4096):
        return json_error(400, "'token' must be a non-empty string (the ingest's bearer token)")
    registry = request.app[WHIP_KEY]
    outputs = registry.sessions.setdefault(session_id, {})
    if len(outputs) >= registry.max_outputs:
        return json_error(409, f"session {session_id} already has {registry.max_outputs} outputs (the most "
                               "allowed): stop one first")  # fmt: skip
    output = WhipPublisher(f"whip-{secrets.token_hex(4)}", url, token, live.clock.track,
                           allow_private=registry.allow_private)  # fmt: skip
    outputs[output.id] = output
    output.start()
    entry = _entry(session_id, output.info())
    return web.json_response(entry, status=201, headers={"Location": entry["url"]})


async def list_outputs(request: web.Request) -> web.Response:
    """``{outputs: [...]}``: the session's WHIP outputs and their states."""
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    request.app[HUB_KEY].get(session_id)
    return web.json_response({"outputs": [_entry(session_id, info) for info in
                                          request.app[WHIP_KEY].listing(session_id)]})  # fmt: skip


async def stop_output(request: web.Request) -> web.Response:
    """Stop an output (its ingest resource DELETEd) -> 200 with its last state."""
    session_id, output_id = request.match_info["session"], request.match_info["output"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    request.app[HUB_KEY].get(session_id)
    output = request.app[WHIP_KEY].sessions.get(session_id, {}).pop(output_id, None)
    if output is None:
        return json_error(404, f"session {session_id!r} has no output {output_id[:100]!r}")
    await output.stop()
    return web.json_response(_entry(session_id, output.info()))


def add_whip_routes(app: web.Application, hub: Hub, allow_private: bool = False) -> WhipOutputs:
    """Mount WHIP out on ``app`` (``allow_private``: ingests on the server's own network too); its outputs
    stop with it."""
    registry = WhipOutputs(hub, allow_private=allow_private)
    app[WHIP_KEY] = registry
    app.router.add_post("/sessions/{session}/outputs", start_output)
    app.router.add_get("/sessions/{session}/outputs", list_outputs)
    app.router.add_delete("/sessions/{session}/outputs/{output}", stop_output)

    async def close(_app: web.Application) -> None:
        await registry.close()

    app.on_shutdown.insert(0, close)
    return registry
