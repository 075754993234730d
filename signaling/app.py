"""The aiohttp application: app factory, JSON errors, CORS and the cross-site guard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from longlive_rtc.outputs.manager import OutputsConfig
from longlive_rtc.protocol import COMMAND_BURST, COMMAND_RATE
from longlive_rtc.rtc.hub import Hub

from .access import STORE_NAME, Access
from .access_log import AccessLog
from .auth import Auth
from .hosts import ALLOWED_HOSTS_KEY, known_hosts_only
from .limits import RateLimiter
from .outputs import add_output_routes
from .reactor import REQUEST_HEADERS as REACTOR_HEADERS
from .reactor import add_reactor_routes
from .routes import (
    ACCESS_KEY,
    COMMAND_LIMITER_KEY,
    HUB_KEY,
    LIMITER_KEY,
    REFUSALS,
    STATIC_KEY,
    json_error,
    refusal,
    routes,
)  # fmt: skip

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
#: Seconds a request's body may take to arrive once its headers are in (a client stalled half-way is cut off).
BODY_TIMEOUT = 10.0
#: aiohttp's per-connection limits (``handler_args``): a connection that has not finished its request line
#: and headers within ``keepalive_timeout`` (or sits idle that long between requests) is closed; the
#: request line, each header field and the number of headers are capped.
HTTP_LIMITS = {"keepalive_timeout": 15.0, "max_line_size": 8190, "max_field_size": 8190, "max_headers": 100}
#: What ``serve`` gives aiohttp's server: the limits, and an access log that never writes a token.
HTTP_SERVER = {**HTTP_LIMITS, "access_log_class": AccessLog}
STATIC_DIR = Path(__file__).resolve().parent / "static"  # shipped in the wheel as package data
CORS_ORIGINS_KEY = web.AppKey("cors_origins", frozenset)
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match, " + ", ".join(REACTOR_HEADERS),
    "Access-Control-Expose-Headers": "Location, Link, Allow, Accept-Post, Accept-Patch, Retry-After, ETag, "
    "WWW-Authenticate",
    "Access-Control-Max-Age": "600",
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Every failure answers JSON ``{"error": {...}}``; nothing escapes to take the server down."""
    try:
        return await handler(request)
    except REFUSALS as exc:
        return refusal(exc)
    except ConnectionResetError:  # the client left before its body arrived: nobody to answer
        log.info("client gone during %s %s", request.method, request.path)
        return web.Response(status=400)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, f"request body over the limit of {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal server error")


@web.middleware
async def body_in_time(request: web.Request, handler) -> web.StreamResponse:
    """Read the whole body (at most ``MAX_BODY_BYTES``) within ``BODY_TIMEOUT`` before the route runs."""
    if request.body_exists:
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                await request.read()  # cached: the route's own read() returns it
        except TimeoutError:
            response = json_error(408, f"the request body did not arrive within {BODY_TIMEOUT:g} s")
            response.force_close()
            return response
    return await handler(request)


def static_files(root: Path):
    """``/static/{name}``: files under ``root`` only (no way out, symlinks included); a JSON 404 otherwise."""
    base = root.resolve()

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            path = (base / request.match_info["name"]).resolve()
            found = path.is_relative_to(base) and path.is_file()
        except (OSError, ValueError):  # a name too long, a NUL byte, ...
            found = False
        return web.FileResponse(path) if found else json_error(404, "no such file")

    return handler


def _same_origin(request: web.Request, origin: str) -> bool:
    return urlsplit(origin).netloc.lower() == request.host.lower()


@web.middleware
async def cross_origin(request: web.Request, handler) -> web.StreamResponse:
    """CORS for the origins named with ``--cors-origin`` only; unsafe requests from any other site refused."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.app[CORS_ORIGINS_KEY]
    foreign = origin is not None and not allowed and not _same_origin(request, origin)
    if foreign and (request.method == "OPTIONS" or request.method in UNSAFE_METHODS):
        return json_error(403, "cross-origin requests are refused (the operator can allow origins: --cors-origin)")
    if allowed and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if allowed:
        response.headers.update({"Access-Control-Allow-Origin": origin, "Vary": "Origin", **CORS_HEADERS})
    return response


def create_app(
    hub: Hub,
    auth: Auth | None = None,
    cors_origins: Iterable[str] = (),
    limiter: RateLimiter | None = None,
    static_dir: Path = STATIC_DIR,
    reactor_local: bool = False,
    allowed_hosts: Iterable[str] = (),
    outputs: OutputsConfig | None = None,
    state_dir: Path | None = None,
) -> web.Application:
    """The signaling server over ``hub``; closes every session and peer on shutdown.

    ``auth`` defaults to token mode with a fresh API key (``app[ACCESS_KEY].auth.api_key``).
    ``reactor_local`` mounts the Reactor JS SDK's local-mode API (signaling/reactor.py). Without tokens
    (``auth`` mode none) only requests for IP literals, localhost or ``allowed_hosts`` are answered
    (signaling/hosts.py: DNS rebinding). ``outputs`` mounts recording, clips and live MPEG-TS
    (signaling/outputs.py, docs/outputs.md). ``state_dir`` keeps the sessions' token generations across
    restarts (signaling/access.py).
    """
    auth = auth or Auth()
    middlewares = [cross_origin, errors_as_json, body_in_time]
    if not auth.enabled:
        middlewares.insert(0, known_hosts_only)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[ALLOWED_HOSTS_KEY] = frozenset(name.strip().lower().rstrip(".") for name in allowed_hosts if name.strip())
    app[HUB_KEY] = hub
    app[ACCESS_KEY] = Access(auth, hub, state_dir / STORE_NAME if state_dir is not None else None)
    app[LIMITER_KEY] = limiter or RateLimiter(per_minute=60, burst=30)
    # HTTP commands get the data channel's budget, per address (a data-channel member has its own bucket)
    app[COMMAND_LIMITER_KEY] = RateLimiter(per_minute=COMMAND_RATE * 60, burst=COMMAND_BURST)
    app[CORS_ORIGINS_KEY] = frozenset(origin.rstrip("/") for origin in cors_origins)
    app[STATIC_KEY] = static_dir
    app.add_routes(routes)
    if reactor_local:
        add_reactor_routes(app)
    if outputs is not None:
        add_output_routes(app, hub, outputs)
    if static_dir.is_dir():
        app.router.add_get("/static/{name:.+}", static_files(static_dir))

    async def close_hub(_app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(close_hub)
    return app
