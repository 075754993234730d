"""Access control: the API key, session-scoped tokens signed with it, and what each request may do.

Two modes. ``token`` (the default): the API key creates, lists and deletes sessions; every session has
a *controller* token (watch and command) and a *viewer* token (watch and read events). Tokens are
signed with the API key (itsdangerous, HMAC-SHA256, compared in constant time), name their session and
carry the session's *key generation*, so rotating a session's tokens invalidates the old ones, and a
server restarted with the same API key still honours the tokens it issued. ``none``: a trusted LAN;
every request may do everything.

A request presents its credential as ``Authorization: Bearer <token>`` (the WHEP draft) or a ``token``
query parameter (for URLs that OBS or a browser opens). A missing or wrong credential is a 401 that
says nothing of whether the session exists.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from longlive_rtc.session import Role


class AuthMode(enum.StrEnum):
    TOKEN = "token"
    NONE = "none"


class AccessDenied(Exception):
    """A request without the right credential: ``status`` 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


UNAUTHORIZED = "a valid token is required (Authorization: Bearer <token>, or ?token=)"


@dataclass(frozen=True)
class Grant:
    """What a request's credential allows: ``admin`` (the API key) or one session as ``role``."""

    role: Role
    admin: bool = False
    generation: str | None = None  # the session key generation a token carries

    @property
    def may_command(self) -> bool:
        return self.admin or self.role is Role.CONTROLLER


ADMIN = Grant(Role.CONTROLLER, admin=True)


@dataclass(frozen=True)
class SessionTokens:
    controller: str
    viewer: str


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


def new_generation() -> str:
    return secrets.token_urlsafe(9)


class Auth:
    """Checks credentials and signs session tokens; knows nothing of whether sessions exist."""

    def __init__(self, mode: AuthMode | str = AuthMode.TOKEN, api_key: str | None = None, token_ttl: float = 0):
        """``token_ttl``: seconds a session token stays valid (0: until its session's tokens are rotated)."""
        self.mode = AuthMode(mode)
        self.api_key = api_key or new_api_key()
        self.token_ttl = token_ttl
        self._signer = URLSafeTimedSerializer(self.api_key, salt="longlive-rtc/session-token")

    @property
    def enabled(self) -> bool:
        return self.mode is AuthMode.TOKEN

    def issue(self, session_id: str, generation: str) -> SessionTokens:
        """Fresh controller and viewer tokens for a session at its key ``generation``."""
        return SessionTokens(
            controller=self._signer.dumps([session_id, "c", generation]),
            viewer=self._signer.dumps([session_id, "v", generation]),
        )

    def grant(self, credential: str | None, session_id: str | None = None) -> Grant:
        """The grant of ``credential`` for ``session_id`` (None: only the API key counts).

        Raises AccessDenied(401) when the credential is missing, wrong, expired or for another session.
        The caller still compares ``grant.generation`` with the session's current one.
        """
        if not self.enabled:
            return ADMIN
        if not credential:
            raise AccessDenied(401, UNAUTHORIZED)
        if hmac.compare_digest(credential.encode(), self.api_key.encode()):
            return ADMIN
        claim = self._claim(credential)
        if claim is None or session_id is None or not hmac.compare_digest(claim[0].encode(), session_id.encode()):
            raise AccessDenied(401, UNAUTHORIZED)
        role = Role.CONTROLLER if claim[1] == "c" else Role.VIEWER
        return Grant(role, generation=claim[2])

    def session_of(self, credential: str) -> str | None:
        """The session a genuine, unexpired session token names (None for anything else)."""
        claim = self._claim(credential)
        return claim[0] if claim else None

    def _claim(self, credential: str) -> tuple[str, str, str] | None:
        try:
            claim = self._signer.loads(credential, max_age=self.token_ttl or None)
        except (BadSignature, ValueError, TypeError):  # SignatureExpired is a BadSignature
            return None
        valid = (
            isinstance(claim, list) and len(claim) == 3 and all(isinstance(part, str) for part in claim)
            and claim[1] in ("c", "v")
        )  # fmt: skip
        return (claim[0], claim[1], claim[2]) if valid else None


def credential(request: web.Request) -> str | None:
    """The request's bearer token (header first, then the ``token`` query parameter)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None
