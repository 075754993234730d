"""The Host check that keeps DNS-rebinding pages out of a server without tokens (``--auth none``).

A page on another site can make a browser resolve its own host name to this server's address; its requests
then come with its own name in ``Host`` and pass a same-origin check. Without tokens, nothing else stops them,
so a server in ``--auth none`` answers only requests addressed to an IP literal, ``localhost`` (and
``*.localhost``), or a name the operator allowed with ``--allowed-host``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from .routes import json_error

ALLOWED_HOSTS_KEY = web.AppKey("allowed_hosts", frozenset)


def host_name(host: str) -> str:
    """``Host`` without its port, lower case; IPv6 literals without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_known_host(host: str, allowed: Iterable[str]) -> bool:
    name = host_name(host).rstrip(".")
    if not name:
        return False
    if name == "localhost" or name.endswith(".localhost") or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@web.middleware
async def known_hosts_only(request: web.Request, handler) -> web.StreamResponse:
    """Refuse (421) a request whose ``Host`` is a name nobody allowed (installed with ``--auth none`` only)."""
    allowed = request.app[ALLOWED_HOSTS_KEY]
    if is_known_host(request.host, allowed):
        return await handler(request)
    name = host_name(request.host)
    return json_error(
        421, f"this server does not answer for the host name {name[:100]!r} (the operator can allow it: --allowed-host)"
    )
