"""The Reactor JS SDK's local-mode API: ``new Reactor({modelName: "longlive", local: true, apiUrl})``.

An adapter over the same hub, sessions and access checks as every other route (no second engine):

- ``POST /start_session`` (``{extra_args?: {seed?, codec?}}``) creates a session and answers its descriptor:
  ``session_id``, ``model``, ``selected_transport`` (WebRTC 1.0) and ``capabilities`` (the ``main_video``
  track and the protocol's commands with their field schemas). The SDK's local mode has one session at a
  time (``stop_session`` names none), so a new start ends the previous Reactor session.
- ``GET /session``, ``POST /stop_session``: the current Reactor session; stop frees it and its slot.
- ``GET /sessions/{id}/transport/webrtc/ice_servers``: ``{ice_servers: [{uris, credentials?}]}``.
- ``POST`` (``PUT`` to reconnect) ``/sessions/{id}/transport/webrtc/sdp_params`` with ``{sdp_offer,
  track_mapping, client_info?}`` answers 202; ``GET`` on it answers 202 while the answer is pending, then
  200 ``{sdp_answer}``. A new offer replaces the session's previous Reactor peer.

The SDK sends no credential in local mode, so these routes pass the usual access checks only under
``--auth none`` (the CLI refuses ``--reactor-local`` otherwise). Versions: ``Reactor-API-Version`` 1 and
``Reactor-WebRTC-Version`` 1.x; another one is answered 501 (this server is too old for that client).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from aiohttp import web
from aiortc import RTCDataChannel

from longlive_rtc import protocol
from longlive_rtc.protocol import Event
from longlive_rtc.rtc.codecs import choose_codec
from longlive_rtc.rtc.hub import Hub, LiveSession
from longlive_rtc.rtc.peer import Peer
from longlive_rtc.rtc.reactor_envelope import MODEL_NAME, VIDEO_TRACK, ReactorEnvelope, command_capabilities
from longlive_rtc.rtc.sdp import check_offer
from longlive_rtc.session import Role

from .routes import ACCESS_KEY, HUB_KEY, REFUSALS, _json_body, _limit, json_error, refusal, session_urls

log = logging.getLogger(__name__)

API_VERSION = "1"
WEBRTC_VERSION = "1.0"
API_VERSION_HEADER = "Reactor-API-Version"
WEBRTC_VERSION_HEADER = "Reactor-WebRTC-Version"
#: Headers a page's requests carry (for the CORS preflight).
REQUEST_HEADERS = ("Reactor-API-Version", "Reactor-API-Accept-Version", "Reactor-WebRTC-Version")
TRACKS = ({"name": VIDEO_TRACK, "kind": "video", "direction": "recvonly"},)
EXTRA_ARGS = frozenset({"seed", "codec"})
#: How long an offer's POST waits for the answer before answering 202 (the SDK then polls with GET).
ANSWER_WAIT = 2.0
TRANSPORT = "/sessions/{session}/transport/webrtc"
#: Seconds the Reactor session may have no peer before it is freed (the SDK's client is gone).
PEERLESS_GRACE = 30.0
#: Seconds a stop waits for the SDK to close its data channel cleanly before the connection is closed.
CHANNEL_CLOSE_WAIT = 1.0

try:
    SERVER_VERSION = metadata.version("longlive-rtc")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    SERVER_VERSION = "0+unknown"


@dataclass(eq=False)
class Negotiation:
    """One SDP offer being answered; a superseded one closes its peer once it has one."""

    task: asyncio.Task[tuple[Peer, str]]

    def supersede(self) -> None:
        if self.task.done():
            self._close_peer(self.task)
        else:
            self.task.add_done_callback(self._close_peer)

    @staticmethod
    def _close_peer(task: asyncio.Task[tuple[Peer, str]]) -> None:
        if not task.cancelled() and task.exception() is None:
            asyncio.ensure_future(task.result()[0].close())


class ReactorLocal:
    """The one Reactor session (the SDK's local mode knows no other) and its offer being answered.

    The SDK ends its session with ``stop_session``; a tab that vanished without it leaves the session with no
    peer, and after ``grace`` seconds so (time for a reload or ``reconnect()``) the session is freed, running
    or not, so that it does not hold its generation slot for nobody.
    """

    def __init__(self, hub: Hub, grace: float = PEERLESS_GRACE) -> None:
        self.hub = hub
        self.grace = grace
        self.session_id: str | None = None
        self.negotiation: Negotiation | None = None
        self.envelope = ReactorEnvelope()
        self.changing = asyncio.Lock()  # one start or stop at a time: two starts must not leave two sessions
        self._watch: asyncio.Task | None = None
        hub.on_freed.append(self._freed)

    def started(self, session_id: str) -> None:
        self.session_id = session_id
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._free_when_peerless())

    async def _free_when_peerless(self) -> None:
        alone_since: float | None = None
        watched = self.session_id
        while self.session_id is not None:
            live = self.hub.sessions.get(self.session_id)
            now = asyncio.get_running_loop().time()
            if live is None or live.peers or self.session_id != watched:
                alone_since, watched = None, self.session_id
            elif alone_since is None:
                alone_since = now
            elif now - alone_since >= self.grace:
                log.info("reactor: session %s has had no peer for %.0f s; freeing it", live.id, now - alone_since)
                await self.hub.free_session(live.id)
                alone_since = None
            await asyncio.sleep(min(1.0, self.grace / 4))

    def _freed(self, session_id: str) -> None:
        if session_id == self.session_id:
            self.session_id = None
            self._drop_negotiation()

    def _drop_negotiation(self) -> None:
        if self.negotiation is not None:
            self.negotiation.supersede()
            self.negotiation = None

    async def stop(self) -> str | None:
        """Free the current Reactor session; its id, or None when there was none.

        Its peers' data channels are closed first (a clean close the SDK expects; an SCTP abort of an open
        channel is reported in the browser as a data-channel error), then the session and its peers go.
        """
        session_id = self.session_id
        if session_id is None:
            return None
        live = self.hub.sessions.get(session_id)
        if live is not None:
            await close_channels([peer.channel for peer in live.peers.values() if peer.channel is not None])
        await self.hub.free_session(session_id)
        return session_id

    def negotiate(self, session_id: str, sdp: str) -> Negotiation:
        """Start answering ``sdp`` for the session as its controller; the previous Reactor peer goes, but not
        for an offer that cannot be answered (:class:`OfferError`: malformed, or no codec in common)."""
        choose_codec(check_offer(sdp), self.hub.get(session_id).codec)
        self._drop_negotiation()
        connecting = self.hub.connect(sdp, "offer", session_id, Role.CONTROLLER, adapt=self.envelope.bind)
        self.negotiation = Negotiation(asyncio.ensure_future(connecting))
        return self.negotiation


REACTOR_KEY = web.AppKey("reactor_local", ReactorLocal)


async def close_channels(channels: list[RTCDataChannel], timeout: float = CHANNEL_CLOSE_WAIT) -> None:
    """Close data channels and wait (at most ``timeout``) until the other side has closed them too."""
    for channel in channels:
        if channel.readyState == "open":
            channel.close()
    deadline = asyncio.get_running_loop().time() + timeout
    while any(c.readyState != "closed" for c in channels) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


def _check_version(request: web.Request, header: str, supported: str) -> None:
    """501 for a client speaking another major version than ``supported`` (absent: accepted)."""
    value = request.headers.get(header)
    if value is not None and value.strip().split(".")[0] != supported.split(".")[0]:
        raise web.HTTPNotImplemented(reason=f"{header} {value[:20]!r} is not supported; this server speaks {supported}")


def descriptor(request: web.Request, live: LiveSession) -> dict[str, Any]:
    """The SDK's SessionResponse for ``live``, plus the links our own pages use to watch it."""
    return {
        "session_id": live.id,
        "state": "ACTIVE",
        "cluster": "local",
        "model": {"name": MODEL_NAME, "version": SERVER_VERSION},
        "server_info": {"server_version": f"longlive-rtc {SERVER_VERSION}"},
        "selected_transport": {"protocol": "webrtc", "version": WEBRTC_VERSION},
        "capabilities": {
            "protocol_version": API_VERSION,
            "tracks": list(TRACKS),
            "commands": list(command_capabilities()),
            "emission_fps": request.app[HUB_KEY].config.fps,
        },
        "urls": session_urls(request, live.id, request.app[ACCESS_KEY].tokens(live.id), controller=True),
    }


async def _optional_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body, or ``{}`` for a request without one."""
    if not request.body_exists or request.content_length == 0:
        return {}
    return await _json_body(request)


def _extra_args(body: dict[str, Any]) -> dict[str, Any]:
    extra = body.get("extra_args", {})
    if not isinstance(extra, dict):
        raise web.HTTPBadRequest(reason="'extra_args' must be an object")
    unknown = sorted(map(str, set(extra) - EXTRA_ARGS))
    if unknown:
        names = ", ".join(protocol.excerpt(name, 40) for name in unknown[:10])
        raise web.HTTPBadRequest(reason=f"unknown extra_args: {names} (supported: seed, codec)")
    return extra


async def start_session(request: web.Request) -> web.Response:
    request.app[ACCESS_KEY].admin(request)
    _check_version(request, API_VERSION_HEADER, API_VERSION)
    _limit(request, "sessions created")
    extra = _extra_args(await _optional_json(request))
    seed = None
    if "seed" in extra:
        seed = protocol.validate_command({"type": "set_seed", "data": {"seed": extra["seed"]}})
        if isinstance(seed, Event):
            return json_error(400, f"extra_args: {seed.data['message']}")
    state, hub = request.app[REACTOR_KEY], request.app[HUB_KEY]
    async with state.changing:
        previous = await state.stop()
        if previous is not None:
            log.info("reactor: a new session replaces session %s", previous)
        live = hub.create_session(None, extra.get("codec"))
        request.app[ACCESS_KEY].register(live.id)
        state.started(live.id)
    if seed is not None:
        live.session.execute(seed, Role.CONTROLLER, lambda _event: None)
    log.info("reactor: session %s started", live.id)
    return web.json_response(descriptor(request, live), headers={API_VERSION_HEADER: API_VERSION})


def _current(request: web.Request, missing: type[web.HTTPError]) -> LiveSession:
    session_id = request.app[REACTOR_KEY].session_id
    if session_id is None:
        raise missing(reason="no Reactor session is running (POST /start_session)")
    return request.app[HUB_KEY].get(session_id)


async def get_session(request: web.Request) -> web.Response:
    request.app[ACCESS_KEY].admin(request)
    return web.json_response(descriptor(request, _current(request, web.HTTPNotFound)))


async def stop_session(request: web.Request) -> web.Response:
    """200 when the session was freed; 409 when there was none to stop (as the Reactor runtime answers)."""
    request.app[ACCESS_KEY].admin(request)
    async with request.app[REACTOR_KEY].changing:
        live = _current(request, web.HTTPConflict)
        await request.app[REACTOR_KEY].stop()
    log.info("reactor: session %s stopped", live.id)
    return web.json_response({"stopped": live.id})


def _transport_session(request: web.Request) -> LiveSession:
    """The Reactor session a transport request names, checked like any controller's request."""
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    _check_version(request, WEBRTC_VERSION_HEADER, WEBRTC_VERSION)
    if session_id != request.app[REACTOR_KEY].session_id:
        raise web.HTTPNotFound(reason=f"no Reactor session {protocol.excerpt(session_id, 64)}")
    return request.app[HUB_KEY].get(session_id)


async def ice_servers(request: web.Request) -> web.Response:
    _transport_session(request)
    servers = []
    for server in request.app[HUB_KEY].config.ice_servers:
        entry: dict[str, Any] = {"uris": [server.urls] if isinstance(server.urls, str) else list(server.urls)}
        if server.username and server.credential:
            entry["credentials"] = {"username": server.username, "password": server.credential}
        servers.append(entry)
    return web.json_response({"ice_servers": servers})


def _check_track_mapping(mapping: object) -> None:
    if not isinstance(mapping, list) or not all(isinstance(entry, dict) for entry in mapping):
        raise web.HTTPBadRequest(reason="'track_mapping' must be a list of {name, kind, direction, mid}")
    names = {track["name"] for track in TRACKS}
    unknown = sorted({str(entry.get("name")) for entry in mapping} - names)
    if unknown:
        shown = ", ".join(protocol.excerpt(name, 40) for name in unknown[:5])
        raise web.HTTPBadRequest(reason=f"unknown tracks in 'track_mapping': {shown} (this model has {VIDEO_TRACK})")


def _failure(task: asyncio.Task) -> web.Response | None:
    """The error answer of a finished negotiation that failed; None when it succeeded."""
    if task.cancelled():
        return json_error(503, "the offer was dropped (the server is shutting down?); send it again")
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, REFUSALS):
        return refusal(exc)
    log.error("reactor: answering an offer failed: %s: %s", type(exc).__name__, exc)
    return json_error(500, "internal server error")


async def offer(request: web.Request) -> web.Response:
    """An SDP offer in; 202 at once or when its answer is ready, whichever comes first (GET polls it)."""
    live = _transport_session(request)
    _limit(request, "offers")
    body = await _json_body(request)
    sdp = body.get("sdp_offer")
    if not isinstance(sdp, str):
        return json_error(400, "'sdp_offer' must be the SDP text of an offer")
    _check_track_mapping(body.get("track_mapping", []))
    negotiation = request.app[REACTOR_KEY].negotiate(live.id, sdp)
    await asyncio.wait({negotiation.task}, timeout=ANSWER_WAIT)
    failed = _failure(negotiation.task) if negotiation.task.done() else None
    return failed or web.json_response({"status": "answered" if negotiation.task.done() else "pending"}, status=202)


async def answer(request: web.Request) -> web.Response:
    """202 while the answer is being made, then 200 ``{sdp_answer}``."""
    _transport_session(request)
    negotiation = request.app[REACTOR_KEY].negotiation
    if negotiation is None:
        return json_error(404, "no offer for this session: POST sdp_params first")
    if not negotiation.task.done():
        return web.json_response({"status": "pending"}, status=202)
    return _failure(negotiation.task) or web.json_response({"sdp_answer": negotiation.task.result()[1]})


def add_reactor_routes(app: web.Application) -> None:
    """Mount the local-mode API on ``app`` (whose hub and access checks it uses)."""
    app[REACTOR_KEY] = ReactorLocal(app[HUB_KEY])
    app.router.add_post("/start_session", start_session)
    app.router.add_get("/session", get_session)
    app.router.add_post("/stop_session", stop_session)
    app.router.add_get(f"{TRANSPORT}/ice_servers", ice_servers)
    app.router.add_post(f"{TRANSPORT}/sdp_params", offer)
    app.router.add_put(f"{TRANSPORT}/sdp_params", offer)
    app.router.add_get(f"{TRANSPORT}/sdp_params", answer)
