"""The aiohttp application: app factory, JSON errors and CORS."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from longlive_rtc.rtc.hub import Hub, HubError
from longlive_rtc.rtc.peer import OfferError

from .routes import HUB_KEY, STATIC_KEY, hub_error, json_error, routes

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, Retry-After, ETag",
}


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Every failure answers JSON ``{"error": {...}}``; nothing escapes to take the server down."""
    try:
        response = await handler(request)
    except (HubError, OfferError) as exc:
        response = hub_error(exc)
    except web.HTTPRequestEntityTooLarge:
        response = json_error(413, f"request body over the limit of {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_error(exc.status, exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = json_error(500, "internal server error")
    response.headers.update(CORS_HEADERS)
    return response


def create_app(hub: Hub, static_dir: Path = STATIC_DIR) -> web.Application:
    """The signaling server over ``hub``; closes every session and peer on shutdown."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[errors_as_json])
    app[HUB_KEY] = hub
    app[STATIC_KEY] = static_dir
    app.add_routes(routes)
    if static_dir.is_dir():
        app.router.add_static("/static/", static_dir, follow_symlinks=False)

    async def close_hub(_app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(close_hub)
    return app
