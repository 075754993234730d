"""HTTP routes: offer/answer, WHEP, sessions and commands, ICE servers, health, metrics, pages."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from longlive_rtc.protocol import ErrorCode, Event
from longlive_rtc.rtc.hub import Hub, HubError, OverCapacity
from longlive_rtc.rtc.peer import OfferError, ice_servers_json
from longlive_rtc.session import Role

HUB_KEY = web.AppKey("hub", Hub)
STATIC_KEY = web.AppKey("static_dir", Path)

routes = web.RouteTableDef()

#: HTTP status for an ``error`` event answered to ``POST /sessions/{id}/commands``.
ERROR_STATUS = {
    ErrorCode.BAD_JSON: 400, ErrorCode.BAD_MESSAGE: 400, ErrorCode.UNKNOWN_COMMAND: 400,
    ErrorCode.INVALID_FIELD: 400, ErrorCode.NO_INITIAL_PROMPT: 409, ErrorCode.ALREADY_RUNNING: 409,
    ErrorCode.NOT_RUNNING: 409, ErrorCode.NOT_FOUND: 404, ErrorCode.LIMIT_EXCEEDED: 413,
    ErrorCode.FORBIDDEN: 403, ErrorCode.BUSY: 503, ErrorCode.GENERATOR_FAILED: 500,
}  # fmt: skip


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message}}, status=status, headers=headers)


def hub_error(exc: HubError | OfferError) -> web.Response:
    """The JSON answer to a refused request (OfferError: malformed SDP -> 400)."""
    if isinstance(exc, OverCapacity):
        return json_error(503, str(exc), {"Retry-After": str(exc.retry_after)})
    return json_error(exc.status if isinstance(exc, HubError) else 400, str(exc))


async def _json_body(request: web.Request) -> dict:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _role(value: object) -> Role | None:
    if value is None:
        return None
    try:
        return Role(value)
    except ValueError:
        raise web.HTTPBadRequest(reason="'role' must be 'controller' or 'viewer'") from None


@routes.post("/offer")
async def offer(request: web.Request) -> web.Response:
    """``{sdp, type, session?, role?, codec?, create?}`` -> ``{sdp, type, session, peer}``.

    ``create: true`` lets a controller recreate a session that is gone (a server restart) under its id.
    """
    body = await _json_body(request)
    session_id = body.get("session")
    if session_id is not None and not isinstance(session_id, str):
        return json_error(400, "'session' must be a string")
    create = body.get("create", False)
    if not isinstance(create, bool):
        return json_error(400, "'create' must be true or false")
    peer, answer = await request.app[HUB_KEY].connect(
        body.get("sdp"), body.get("type", "offer"), session_id, _role(body.get("role")), body.get("codec"), create
    )
    return web.json_response({"sdp": answer, "type": "answer", "session": peer.session_id, "peer": peer.id})


@routes.post("/whep/{session}")
async def whep(request: web.Request) -> web.Response:
    """WHEP: an SDP offer in, 201 with the answer and the peer's resource ``Location``."""
    if request.content_type != "application/sdp":
        return json_error(415, "WHEP expects Content-Type: application/sdp")
    sdp = (await request.read()).decode("utf-8", "replace")
    session_id = request.match_info["session"]
    peer, answer = await request.app[HUB_KEY].connect(sdp, "offer", session_id, Role.VIEWER)
    location = f"/whep/{session_id}/{peer.id}"
    return web.Response(status=201, text=answer, content_type="application/sdp", headers={"Location": location})


@routes.delete("/whep/{session}/{peer}")
async def whep_delete(request: web.Request) -> web.Response:
    peer = request.app[HUB_KEY].peer(request.match_info["session"], request.match_info["peer"])
    await peer.close()
    return web.Response(status=204)


@routes.patch("/whep/{session}/{peer}")
async def whep_patch(request: web.Request) -> web.Response:
    """Trickle ICE is not needed: answers carry every candidate (aiortc gathers before answering)."""
    return json_error(
        405, "trickle ICE is not supported; the answer already holds every candidate", {"Allow": "DELETE"}
    )


@routes.route("OPTIONS", "/whep/{session}")
@routes.route("OPTIONS", "/whep/{session}/{peer}")
@routes.route("OPTIONS", "/offer")
async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={"Accept-Post": "application/sdp"})


@routes.get("/sessions")
async def sessions(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return web.json_response(
        {"sessions": [live.summary() for live in hub.sessions.values()], "capacity": hub.config.max_sessions}
    )


@routes.get("/sessions/{session}")
async def session_state(request: web.Request) -> web.Response:
    live = request.app[HUB_KEY].get(request.match_info["session"])
    return web.json_response(live.session.state_data())


@routes.post("/sessions/{session}/commands")
async def command(request: web.Request) -> web.Response:
    """The data-channel commands over HTTP, as a controller; answers the list of reply events."""
    live = request.app[HUB_KEY].get(request.match_info["session"])
    replies: list[Event] = []
    live.session.handle(await request.read(), Role.CONTROLLER, replies.append)
    first = replies[0]
    status = 200 if first.type == "ack" else ERROR_STATUS[ErrorCode(first.data["code"])]
    return web.json_response([event.to_dict() for event in replies], status=status)


@routes.get("/ice-servers")
async def ice_servers(request: web.Request) -> web.Response:
    return web.json_response({"iceServers": ice_servers_json(request.app[HUB_KEY].config.ice_servers)})


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    return web.json_response(
        {"status": "ok", "sessions": len(hub.sessions), "capacity": hub.config.max_sessions, "peers": hub.peer_count}
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    hub = request.app[HUB_KEY]
    lives = list(hub.sessions.values())
    lines = [
        "# HELP longlive_sessions Live sessions.", "# TYPE longlive_sessions gauge",
        f"longlive_sessions {len(lives)}",
        "# HELP longlive_peers Connected peers.", "# TYPE longlive_peers gauge",
        f"longlive_peers {hub.peer_count}",
        "# HELP longlive_frames_sent_total Frames sent by paced tracks.", "# TYPE longlive_frames_sent_total counter",
        *(f'longlive_frames_sent_total{{session="{s.id}"}} {s.track.frames_sent}' for s in lives),
        "# HELP longlive_stalls_total Playback underruns.", "# TYPE longlive_stalls_total counter",
        *(f'longlive_stalls_total{{session="{s.id}"}} {s.session.engine.stalls}' for s in lives),
        "# HELP longlive_blocks_total Blocks generated.", "# TYPE longlive_blocks_total counter",
        *(f'longlive_blocks_total{{session="{s.id}"}} {s.session.engine.blocks_generated}' for s in lives),
    ]  # fmt: skip
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def _page(name: str):
    async def handler(request: web.Request) -> web.StreamResponse:
        path = request.app[STATIC_KEY] / name
        if not path.is_file():
            return json_error(404, f"page {name} is not installed")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return handler


routes.get("/")(_page("index.html"))
routes.get("/view/{session}")(_page("view.html"))
routes.get("/obs/{session}")(_page("obs.html"))
