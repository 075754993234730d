"""Who may do what to which session: the grants of a request, checked against the hub's sessions.

:class:`Access` owns each session's key generation (the part of its tokens that rotation changes) and
forgets it when the hub frees the session.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from longlive_rtc.rtc.hub import Hub

from .auth import ADMIN, UNAUTHORIZED, AccessDenied, Auth, Grant, SessionTokens, credential, new_generation

FORBIDDEN_COMMAND = "this token may watch the session but not control it"


class Access:
    """Grants for requests, and the tokens of each session."""

    def __init__(self, auth: Auth, hub: Hub) -> None:
        self.auth = auth
        self._hub = hub
        self._generations: dict[str, str] = {}
        hub.on_freed.append(self.forget)

    def admin(self, request: web.Request) -> Grant:
        """The API key's grant, or AccessDenied (401)."""
        grant = self.auth.grant(credential(request))
        if not grant.admin:
            raise AccessDenied(401, UNAUTHORIZED)
        return grant

    def session(self, request: web.Request, session_id: str, *, control: bool = False) -> Grant:
        """The grant of a request on ``session_id``: the API key, or a current token of that session.

        A token valid for a session that is gone still passes (its holder may learn that it is gone, or
        recreate it after a server restart); a token from before a rotation does not. With ``control``,
        a viewer's grant is refused (403).
        """
        grant = self.auth.grant(credential(request), session_id)
        if not grant.admin and session_id in self._hub.sessions:
            current = self._generations.get(session_id)
            if current is None or not hmac.compare_digest(current, grant.generation or ""):
                raise AccessDenied(401, UNAUTHORIZED)
        if control and not grant.may_command:
            raise AccessDenied(403, FORBIDDEN_COMMAND)
        return grant

    def any_session(self, request: web.Request) -> Grant:
        """The API key, or a current token of any live session (for what every peer needs, e.g. ICE)."""
        if not self.auth.enabled:
            return ADMIN
        token = credential(request)
        session_id = self.auth.session_of(token) if token else None
        if session_id is None or session_id not in self._hub.sessions:
            return self.admin(request)
        return self.session(request, session_id)

    def register(self, session_id: str, generation: str | None = None) -> None:
        """A session created now, at ``generation`` (a recreated session keeps its tokens' one)."""
        self._generations[session_id] = generation or new_generation()

    def rotate(self, session_id: str) -> SessionTokens | None:
        """New tokens for a session; every earlier one stops working."""
        self._generations[session_id] = new_generation()
        return self.tokens(session_id)

    def tokens(self, session_id: str) -> SessionTokens | None:
        """Tokens of a session (None without auth, or for a session created outside this layer)."""
        generation = self._generations.get(session_id)
        if not self.auth.enabled or generation is None:
            return None
        return self.auth.issue(session_id, generation)

    def forget(self, session_id: str) -> None:
        self._generations.pop(session_id, None)
