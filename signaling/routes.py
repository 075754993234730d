"""HTTP routes: sessions as resources, offer/answer, WHEP, commands, ICE servers, health, metrics, pages."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from longlive_rtc import protocol
from longlive_rtc.protocol import ErrorCode, Event
from longlive_rtc.rtc.hub import Hub, HubError, LiveSession, OverCapacity
from longlive_rtc.rtc.ice import FragmentError, IceRestartUnsupported, add_trickled_candidates
from longlive_rtc.rtc.peer import ice_servers_json
from longlive_rtc.rtc.sdp import OfferError
from longlive_rtc.schedule_file import ScheduleFileError, parse_schedule_entries
from longlive_rtc.session import Role

from .access import FORBIDDEN_COMMAND, Access
from .auth import AccessDenied, SessionTokens
from .limits import RateLimited, RateLimiter

HUB_KEY = web.AppKey("hub", Hub)
ACCESS_KEY = web.AppKey("access", Access)
LIMITER_KEY = web.AppKey("limiter", RateLimiter)
COMMAND_LIMITER_KEY = web.AppKey("command_limiter", RateLimiter)
STATIC_KEY = web.AppKey("static_dir", Path)
OUTPUT_ROUTES_KEY = web.AppKey("output_routes", bool)  # set when signaling/outputs.py mounted its routes

routes = web.RouteTableDef()

#: HTTP status for an ``error`` event answered to ``POST /sessions/{id}/commands``.
ERROR_STATUS = {
    ErrorCode.BAD_JSON: 400, ErrorCode.BAD_MESSAGE: 400, ErrorCode.UNKNOWN_COMMAND: 400,
    ErrorCode.INVALID_FIELD: 400, ErrorCode.NO_INITIAL_PROMPT: 409, ErrorCode.ALREADY_RUNNING: 409,
    ErrorCode.NOT_RUNNING: 409, ErrorCode.NOT_FOUND: 404, ErrorCode.LIMIT_EXCEEDED: 413,
    ErrorCode.FORBIDDEN: 403, ErrorCode.BUSY: 503, ErrorCode.GENERATOR_FAILED: 500,
}  # fmt: skip

WHEP_ENDPOINT_METHODS = "GET, OPTIONS, POST"
TRICKLE_FRAGMENT = "application/trickle-ice-sdpfrag"
WHEP_SESSION_METHODS = "DELETE, GET, OPTIONS, PATCH"

CREATE_FIELDS = frozenset({"id", "seed", "schedule", "start", "codec"})


#: The HTTP section of docs/protocol.md (``longlive-rtc schema --markdown`` joins it to the protocol's).
HTTP_MARKDOWN = "\n".join([
    "## Over HTTP",
    "",
    "Sessions are resources (tokens, roles and limits: [deploying.md](deploying.md)):",
    "",
    "| route | credential | body -> answer |",
    "|---|---|---|",
    "| `POST /sessions` | API key | `{id?, seed?, schedule?: [{timestamp, prompt}], start?, codec?}` -> 201 "
    "`{session, status, ..., state, tokens {controller, viewer}, urls {director, viewer, obs, whep, "
    "recordings?, outputs?, stream_ts?}}` |",
    "| `GET /sessions` | API key | -> `{sessions: [...], capacity}` |",
    "| `GET /sessions/{id}` | any token of it | -> `{session, ..., state, urls}` (a viewer: viewer links) |",
    "| `DELETE /sessions/{id}` | controller | -> 204 |",
    "| `POST /sessions/{id}/tokens` | controller | -> new `tokens` and `urls`; the old tokens stop working |",
    "| `POST /sessions/{id}/commands` | controller | one message above (`application/json`) -> its replies "
    "(`[ack]` 200, or `[error]` with 400/403/404/409/413/503) |",
    "| `POST /offer` | API key or a token | `{sdp, type, session?, role?, codec?, create?}` -> "
    "`{sdp, type, session, peer, tokens?}` |",
    "| `POST /whep/{id}` | any token of it | SDP offer -> 201 SDP answer, `Location: /whep/{id}/{peer}`, "
    '`Link: <stun/turn url>; rel="ice-server"` |',
    "| `PATCH /whep/{id}/{peer}` | any token of it | trickle ICE (`application/trickle-ice-sdpfrag`) -> 204; "
    "422 for an ICE restart ([interop.md](interop.md)) |",
    "| `DELETE /whep/{id}/{peer}`, `DELETE /sessions/{id}/peers/{peer}` | any token of it | -> 204 |",
    "| `POST`/`DELETE`/`GET /sessions/{id}/recording` | controller | start (201) / stop (200) / status of the "
    "recording; 409, 507 when the quota or disk is full ([outputs.md](outputs.md)) |",
    "| `GET /sessions/{id}/recordings`, `GET`/`DELETE /sessions/{id}/recordings/{name}` | controller | the "
    "recordings and clips; a file (MP4 or its replay JSON); 204 |",
    "| `POST /sessions/{id}/clips` | controller | `{seconds}` -> 201 the clip of the last N seconds |",
    "| `GET /sessions/{id}/stream.ts` | any token of it | live H.264 in MPEG-TS, chunked |",
    "| `POST`/`GET /sessions/{id}/outputs`, `DELETE /sessions/{id}/outputs/{output}` | controller | WHIP out: "
    "`{whip, token?}` -> 201 the output; the outputs and their states; stop (200); 400, 409 past 4 |",
])  # fmt: skip


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message}}, status=status, headers=headers)


def refusal(exc: Exception) -> web.Response:
    """The JSON answer to a refused request (hub, offer, access or rate limit)."""
    if isinstance(exc, OverCapacity | RateLimited):
        return json_error(
            503 if isinstance(exc, OverCapacity) else 429, str(exc), {"Retry-After": str(exc.retry_after)}
        )
    if isinstance(exc, AccessDenied):
        headers = {"WWW-Authenticate": 'Bearer realm="longlive-rtc"'} if exc.status == 401 else None
        return json_error(exc.status, exc.message, headers)
    return json_error(exc.status if isinstance(exc, HubError) else 400, str(exc))


REFUSALS = (HubError, OfferError, AccessDenied, RateLimited)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; ``application/json`` is required (a cross-site form cannot send it)."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="send the body as Content-Type: application/json")
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise web.HTTPBadRequest(reason=f"body is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body


def _role(value: object) -> Role | None:
    if value is None:
        return None
    if isinstance(value, str) and value in ("controller", "viewer"):
        return Role(value)
    raise web.HTTPBadRequest(reason="'role' must be 'controller' or 'viewer'")


def _limit(request: web.Request, what: str, key: web.AppKey[RateLimiter] = LIMITER_KEY) -> None:
    request.app[key].take(request.remote or "unknown", what)


def session_urls(request: web.Request, session_id: str, tokens: SessionTokens | None, *, controller: bool) -> dict:
    """Ready-to-open links: the director (controller token) and the viewer, OBS and WHEP ones (viewer token)."""
    origin = f"{request.scheme}://{request.host}"
    viewer = f"?token={tokens.viewer}" if tokens else ""
    urls = {
        "viewer": f"{origin}/view/{session_id}{viewer}",
        "obs": f"{origin}/obs/{session_id}{viewer}",
        "whep": f"{origin}/whep/{session_id}{viewer}",
    }
    if controller:
        urls["director"] = f"{origin}/?session={session_id}" + (f"&token={tokens.controller}" if tokens else "")
    if request.app.get(OUTPUT_ROUTES_KEY):  # recordings and live MPEG-TS (docs/outputs.md)
        urls["stream_ts"] = f"{origin}/sessions/{session_id}/stream.ts{viewer}"
        if controller:
            token = f"?token={tokens.controller}" if tokens else ""
            urls["recordings"] = f"{origin}/sessions/{session_id}/recordings{token}"
            urls["outputs"] = f"{origin}/sessions/{session_id}/outputs{token}"  # WHIP out
    return urls


def _described(request: web.Request, live: LiveSession, *, controller: bool, with_tokens: bool = False) -> dict:
    tokens = request.app[ACCESS_KEY].tokens(live.id)
    body: dict[str, Any] = {
        **live.summary(),
        "state": live.session.state_data(),
        "urls": session_urls(request, live.id, tokens, controller=controller),
    }
    if with_tokens:
        body["tokens"] = asdict(tokens) if tokens else None
    return body


def _run_commands(live: LiveSession, messages: list[dict[str, Any]]) -> Event | None:
    """Run messages as a controller would; the first ``error`` answered, or None when all were acked."""
    for message in messages:
        replies: list[Event] = []
        checked = protocol.validate_command(message)
        if isinstance(checked, Event):
            return checked
        live.session.execute(checked, Role.CONTROLLER, replies.append)
        if replies and replies[0].type == "error":
            return replies[0]
    return None


# --- sessions as resources -------------------------------------------------------------------------------


@routes.post("/sessions")
async def create_session(request: web.Request) -> web.Response:
    """``{id?, seed?, schedule?, start?, codec?}`` -> 201 with the session, its tokens and ready URLs."""
    request.app[ACCESS_KEY].admin(request)
    _limit(request, "sessions created")
    body = await _json_body(request)
    unknown = sorted(set(body) - CREATE_FIELDS)
    if unknown:
        return json_error(400, f"unknown fields: {', '.join(map(str, unknown))[:200]}")
    start = body.get("start", False)
    if not isinstance(start, bool):
        return json_error(400, "'start' must be true or false")
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= protocol.MAX_SEED:
        return json_error(400, f"'seed' must be an integer in 0..{protocol.MAX_SEED}")
    try:
        entries = parse_schedule_entries(body.get("schedule", []), "schedule", require_initial=start)
    except ScheduleFileError as exc:
        return json_error(400, str(exc))
    session_id = body.get("id")
    if session_id is not None and not isinstance(session_id, str):
        return json_error(400, "'id' must be a string")
    hub = request.app[HUB_KEY]
    live = hub.create_session(session_id, body.get("codec"))
    request.app[ACCESS_KEY].register(live.id)
    messages = [{"type": "set_seed", "data": {"seed": seed}}]
    messages += [entry.command() for entry in entries]
    failed = _run_commands(live, messages + ([{"type": "start"}] if start else []))
    if failed is not None:
        await hub.free_session(live.id)
        return json_error(400, f"the session was not created: {failed.data['message']}")
    location = f"/sessions/{live.id}"
    described = _described(request, live, controller=True, with_tokens=True)
    return web.json_response(described, status=201, headers={"Location": location})


@routes.get("/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    request.app[ACCESS_KEY].admin(request)
    hub = request.app[HUB_KEY]
    return web.json_response(
        {"sessions": [live.summary() for live in hub.sessions.values()], "capacity": hub.config.max_sessions}
    )


@routes.get("/sessions/{session}")
async def get_session(request: web.Request) -> web.Response:
    """The session's summary, state and links (a viewer's token sees only the viewer links)."""
    session_id = request.match_info["session"]
    grant = request.app[ACCESS_KEY].session(request, session_id)
    live = request.app[HUB_KEY].get(session_id)
    return web.json_response(_described(request, live, controller=grant.may_command))


@routes.delete("/sessions/{session}")
async def delete_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    hub = request.app[HUB_KEY]
    hub.get(session_id)
    await hub.free_session(session_id)
    request.app[ACCESS_KEY].revoke(session_id)  # deleted: no token of it recreates it
    return web.Response(status=204)


@routes.post("/sessions/{session}/tokens")
async def rotate_tokens(request: web.Request) -> web.Response:
    """New controller and viewer tokens; the old ones stop working at once."""
    session_id = request.match_info["session"]
    access = request.app[ACCESS_KEY]
    access.session(request, session_id, control=True)
    live = request.app[HUB_KEY].get(session_id)
    if not access.auth.enabled:
        return json_error(409, "this server runs with --auth none: sessions have no tokens")
    access.rotate(session_id)
    return web.json_response(_described(request, live, controller=True, with_tokens=True))


@routes.post("/sessions/{session}/commands")
async def command(request: web.Request) -> web.Response:
    """The data-channel commands over HTTP (a JSON object); answers the list of reply events."""
    session_id = request.match_info["session"]
    grant = request.app[ACCESS_KEY].session(request, session_id)
    live = request.app[HUB_KEY].get(session_id)
    _limit(request, "commands", COMMAND_LIMITER_KEY)
    if request.content_type != "application/json":
        return json_error(415, "send the command as Content-Type: application/json")
    replies: list[Event] = []
    live.session.handle(await request.read(), grant.role, replies.append)
    first = replies[0]
    status = 200 if first.type == "ack" else ERROR_STATUS[ErrorCode(first.data["code"])]
    return web.json_response([event.to_dict() for event in replies], status=status)


@routes.delete("/sessions/{session}/peers/{peer}")
@routes.delete("/whep/{session}/{peer}")
async def delete_peer(request: web.Request) -> web.Response:
    """Leave: the peer is closed at once (a page calls this when its tab closes)."""
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id)
    peer = request.app[HUB_KEY].peer(session_id, request.match_info["peer"])
    await peer.close()
    return web.Response(status=204)


# --- WebRTC -------------------------------------------------------------------------------------------------


@routes.post("/offer")
async def offer(request: web.Request) -> web.Response:
    """``{sdp, type, session?, role?, codec?, create?}`` -> ``{sdp, type, session, peer}``.

    Without ``session`` (the API key only) the offer creates a session, which holds its slot once the
    peer connects. ``create: true`` lets a controller recreate its session, gone after a server restart,
    under its id with its tokens.
    """
    access, hub = request.app[ACCESS_KEY], request.app[HUB_KEY]
    _limit(request, "offers")
    body = await _json_body(request)
    session_id = body.get("session")
    if session_id is not None and not isinstance(session_id, str):
        return json_error(400, "'session' must be a string")
    create = body.get("create", False)
    if not isinstance(create, bool):
        return json_error(400, "'create' must be true or false")
    grant = access.admin(request) if session_id is None else access.session(request, session_id)
    role = _role(body.get("role")) or (Role.CONTROLLER if grant.may_command else Role.VIEWER)
    if role is Role.CONTROLLER and not grant.may_command:
        raise AccessDenied(403, FORBIDDEN_COMMAND)
    existed = session_id in hub.sessions
    peer, answer = await hub.connect(body.get("sdp"), body.get("type", "offer"), session_id, role, body.get("codec"),
                                     create)  # fmt: skip
    reply: dict[str, Any] = {"sdp": answer, "type": "answer", "session": peer.session_id, "peer": peer.id}
    if not existed:
        access.register(peer.session_id, grant.generation)
        tokens = access.tokens(peer.session_id)
        reply["tokens"] = asdict(tokens) if tokens else None
    return web.json_response(reply)


@routes.post("/whep/{session}")
async def whep(request: web.Request) -> web.Response:
    """WHEP: an SDP offer in (Bearer token or ``?token=``), 201 with the answer and the peer's ``Location``."""
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id)
    _limit(request, "offers")
    if request.content_type != "application/sdp":
        return json_error(415, "WHEP expects Content-Type: application/sdp")
    raw = await request.read()
    try:
        sdp = raw.decode("utf-8")
    except UnicodeDecodeError:
        return json_error(400, "malformed SDP: not UTF-8 text")
    hub = request.app[HUB_KEY]
    peer, answer = await hub.connect(sdp, "offer", session_id, Role.VIEWER)
    headers = CIMultiDict({"Location": f"/whep/{session_id}/{peer.id}"})
    for link in ice_server_links(ice_servers_json(hub.config.ice_servers)):  # our STUN/TURN, for the client
        headers.add("Link", link)
    return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)


def ice_server_links(servers: list[dict[str, object]]) -> list[str]:
    """``Link: <url>; rel="ice-server"`` values (RFC 9725 4.6) of ``iceServers`` JSON, one per URL."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    links = []
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        extra = ""
        if "username" in server:
            username, credential = quoted(str(server["username"])), quoted(str(server.get("credential", "")))
            extra = f'; username={username}; credential={credential}; credential-type="password"'
        links += [f'<{url}>; rel="ice-server"{extra}' for url in urls]
    return links


@routes.patch("/whep/{session}/{peer}")
async def whep_patch(request: web.Request) -> web.Response:
    """Trickle ICE (WHEP draft, RFC 8840 fragments): the client's late candidates in, 204 out.

    ICE restarts are not supported: 422, as the draft says for a session with trickle ICE only.
    """
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id)
    _limit(request, "offers")
    peer = request.app[HUB_KEY].peer(session_id, request.match_info["peer"])
    if request.content_type != TRICKLE_FRAGMENT:
        return json_error(415, f"trickle ICE expects Content-Type: {TRICKLE_FRAGMENT}")
    try:
        fragment = (await request.read()).decode("utf-8")
        await add_trickled_candidates(peer.pc, fragment)
    except UnicodeDecodeError:
        return json_error(400, "malformed SDP fragment: not UTF-8 text")
    except IceRestartUnsupported as exc:
        return json_error(422, str(exc))
    except FragmentError as exc:
        return json_error(400, str(exc))
    return web.Response(status=204)


@routes.get("/whep/{session}")
async def whep_endpoint_get(request: web.Request) -> web.Response:
    """WHEP resources have no representation: a GET answers 2xx with no content."""
    request.app[ACCESS_KEY].session(request, request.match_info["session"])
    request.app[HUB_KEY].get(request.match_info["session"])
    return web.Response(status=204, headers={"Allow": WHEP_ENDPOINT_METHODS})


@routes.get("/whep/{session}/{peer}")
async def whep_session_get(request: web.Request) -> web.Response:
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id)
    request.app[HUB_KEY].peer(session_id, request.match_info["peer"])
    return web.Response(status=204, headers={"Allow": WHEP_SESSION_METHODS})


@routes.route("OPTIONS", "/whep/{session}")
@routes.route("OPTIONS", "/whep/{session}/{peer}")
@routes.route("OPTIONS", "/offer")
async def preflight(request: web.Request) -> web.Response:
    """``Allow`` says what each resource takes (PATCH: trickle ICE on a WHEP session)."""
    if request.path == "/offer":
        return web.Response(status=204, headers={"Allow": "OPTIONS, POST", "Accept-Post": "application/json"})
    if "peer" in request.match_info:
        return web.Response(status=204, headers={"Allow": WHEP_SESSION_METHODS, "Accept-Patch": TRICKLE_FRAGMENT})
    return web.Response(status=204, headers={"Allow": WHEP_ENDPOINT_METHODS, "Accept-Post": "application/sdp"})


@routes.get("/ice-servers")
async def ice_servers(request: web.Request) -> web.Response:
    """STUN/TURN servers for a page's RTCPeerConnection (TURN credentials: for token holders only)."""
    request.app[ACCESS_KEY].any_session(request)
    return web.json_response({"iceServers": ice_servers_json(request.app[HUB_KEY].config.ice_servers)})


# --- operations ---------------------------------------------------------------------------------------------


def _is_admin(request: web.Request) -> bool:
    """Whether the request carries the API key (or the server runs with ``--auth none``)."""
    try:
        request.app[ACCESS_KEY].admin(request)
    except AccessDenied:
        return False
    return True


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    body: dict[str, Any] = {
        "status": "ok", "sessions": len(hub.sessions), "capacity": hub.config.max_sessions, "peers": hub.peer_count,
    }  # fmt: skip
    devices = hub.capacity_report()
    if devices:  # serve --devices: each device's state; a failed one makes the server degraded, all of them 503
        failed = sum(d.get("state") == "failed" for d in devices)
        body["status"] = "failed" if failed == len(devices) else "degraded" if failed else "ok"
        body["devices"] = devices if _is_admin(request) else [{k: v for k, v in d.items() if k != "error"}
                                                              for d in devices]  # fmt: skip
    return web.json_response(body, status=503 if body["status"] == "failed" else 200)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (the API key: session ids are not for everyone)."""
    request.app[ACCESS_KEY].admin(request)
    hub = request.app[HUB_KEY]
    lives = list(hub.sessions.values())
    lines = [
        "# HELP longlive_sessions Live sessions.", "# TYPE longlive_sessions gauge",
        f"longlive_sessions {len(lives)}",
        "# HELP longlive_peers Connected peers.", "# TYPE longlive_peers gauge",
        f"longlive_peers {hub.peer_count}",
        "# HELP longlive_frames_sent_total Frames put on air.", "# TYPE longlive_frames_sent_total counter",
        *(f'longlive_frames_sent_total{{session="{s.id}"}} {s.clock.frames_sent}' for s in lives),
        "# HELP longlive_stalls_total Playback underruns.", "# TYPE longlive_stalls_total counter",
        *(f'longlive_stalls_total{{session="{s.id}"}} {s.session.engine.stalls}' for s in lives),
        "# HELP longlive_frames_skipped_total Generated frames never shown (live switches, --live-switch asap).",
        "# TYPE longlive_frames_skipped_total counter",
        *(f'longlive_frames_skipped_total{{session="{s.id}"}} {s.session.engine.frames_skipped}' for s in lives),
        "# HELP longlive_blocks_total Blocks generated.", "# TYPE longlive_blocks_total counter",
        *(f'longlive_blocks_total{{session="{s.id}"}} {s.session.engine.blocks_generated}' for s in lives),
        *_device_metrics(hub.capacity_report(), lives),
    ]  # fmt: skip
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def _device_metrics(devices: list[dict[str, Any]], lives: list[LiveSession]) -> list[str]:
    """Per-device lines (``serve --devices``): slots, sessions placed, up, and which device runs each session."""
    if not devices:
        return []
    placed = [(s.id, getattr(s.session.engine.generator, "placement", None)) for s in lives]
    return [
        "# HELP longlive_device_up 1 while the device serves, 0 once it failed.", "# TYPE longlive_device_up gauge",
        *(f'longlive_device_up{{device="{d["device"]}"}} {int(d["state"] != "failed")}' for d in devices),
        "# HELP longlive_device_slots Generation slots of the device.", "# TYPE longlive_device_slots gauge",
        *(f'longlive_device_slots{{device="{d["device"]}"}} {d["slots"]}' for d in devices),
        "# HELP longlive_device_sessions Sessions placed on the device.", "# TYPE longlive_device_sessions gauge",
        *(f'longlive_device_sessions{{device="{d["device"]}"}} {d["sessions"]}' for d in devices),
        "# HELP longlive_session_device The device a session runs on (always 1).",
        "# TYPE longlive_session_device gauge",
        *(f'longlive_session_device{{session="{sid}",device="{dev}"}} 1' for sid, dev in placed if dev is not None),
    ]  # fmt: skip


def _page(name: str):
    async def handler(request: web.Request) -> web.StreamResponse:
        path = request.app[STATIC_KEY] / name
        if not path.is_file():
            return json_error(404, f"page {name} is not installed")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"})

    return handler


routes.get("/")(_page("index.html"))
routes.get("/view/{session}")(_page("view.html"))
routes.get("/obs/{session}")(_page("obs.html"))
