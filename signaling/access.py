"""Who may do what to which session: the grants of a request, checked against the hub's sessions.

:class:`Access` owns each session's key generation (the part of its tokens that rotation changes). When
the hub frees a session its last generation is kept (the most recent ``MAX_RETIRED``), so a token retired
by a rotation cannot recreate the session later, and a deleted session's tokens retire with it (only an
idle-freed session's current tokens recreate it). Only a restarted server, which remembers none, accepts
any genuine token of a gone session, unless it keeps the generations in a file (``store``, ``serve
--state-dir``): then a restart remembers which tokens were retired, and the sessions it lost can be
recreated by their current tokens only. Tokens are signed once per generation and then handed out as they
are, so ``--token-ttl`` counts from their first issue however often a holder reads them back.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

from aiohttp import web

from longlive_rtc.rtc.hub import Hub

from .auth import ADMIN, UNAUTHORIZED, AccessDenied, Auth, Grant, SessionTokens, credential, new_generation

FORBIDDEN_COMMAND = "this token may watch the session but not control it"
STORE_NAME = "session-generations.json"  # in ``serve --state-dir``

log = logging.getLogger(__name__)


class Access:
    """Grants for requests, and the tokens of each session."""

    MAX_RETIRED = 10_000  # freed sessions whose last generation is remembered

    def __init__(self, auth: Auth, hub: Hub, store: Path | None = None) -> None:
        """``store``: a JSON file that keeps the generations across restarts (read now, written on changes)."""
        self.auth = auth
        self._hub = hub
        self._store = store if auth.enabled else None
        self._generations: dict[str, str] = {}  # live sessions
        self._retired: OrderedDict[str, str] = OrderedDict()  # freed sessions, oldest first
        self._issued: dict[str, tuple[str, SessionTokens]] = {}  # live sessions: generation, its tokens
        self._load()
        hub.on_freed.append(self.forget)

    def admin(self, request: web.Request) -> Grant:
        """The API key's grant, or AccessDenied (401)."""
        grant = self.auth.grant(credential(request))
        if not grant.admin:
            raise AccessDenied(401, UNAUTHORIZED)
        return grant

    def session(self, request: web.Request, session_id: str, *, control: bool = False) -> Grant:
        """The grant of a request on ``session_id``: the API key, or a current token of that session.

        A current token of a session that is gone still passes (its holder may learn that it is gone, or
        recreate it); a token from before a rotation does not, live or gone. With ``control``, a viewer's
        grant is refused (403).
        """
        grant = self.auth.grant(credential(request), session_id)
        if not grant.admin:
            live = session_id in self._hub.sessions
            known = self._generations.get(session_id) if live else self._retired.get(session_id)
            if (live and known is None) or (
                known is not None and not hmac.compare_digest(known, grant.generation or "")
            ):
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
        self._retired.pop(session_id, None)
        self._generations[session_id] = generation or new_generation()
        self._save()

    def rotate(self, session_id: str) -> SessionTokens | None:
        """New tokens for a session; every earlier one stops working."""
        self._generations[session_id] = new_generation()
        self._save()
        return self.tokens(session_id)

    def tokens(self, session_id: str) -> SessionTokens | None:
        """Tokens of a session (None without auth, or for a session created outside this layer): signed at
        the first call for its current generation, the same ones after that (their age is the first's)."""
        generation = self._generations.get(session_id)
        if not self.auth.enabled or generation is None:
            return None
        issued = self._issued.get(session_id)
        if issued is None or issued[0] != generation:
            issued = self._issued[session_id] = (generation, self.auth.issue(session_id, generation))
        return issued[1]

    def revoke(self, session_id: str) -> None:
        """A gone session's tokens stop working, so none recreates it (the session was deleted, not idle)."""
        if session_id not in self._hub.sessions and self.auth.enabled:
            self._retire(session_id, new_generation())

    def forget(self, session_id: str) -> None:
        """The session was freed: its generation retires (the oldest retired ones are dropped)."""
        self._issued.pop(session_id, None)
        generation = self._generations.pop(session_id, None)
        if generation is not None:
            self._retire(session_id, generation)

    def _retire(self, session_id: str, generation: str) -> None:
        """Only tokens of `generation` may recreate the gone session `session_id` (stored at once)."""
        self._retired[session_id] = generation
        self._retired.move_to_end(session_id)
        self._trim()
        self._save()

    def _trim(self) -> None:
        while len(self._retired) > self.MAX_RETIRED:
            self._retired.popitem(last=False)

    def _load(self) -> None:
        """The generations a previous run stored: its live sessions are gone now, so they retire (their current
        tokens may recreate them, no older one may)."""
        if self._store is None or not self._store.exists():
            return
        try:
            stored = json.loads(self._store.read_text())
            entries = [*stored["retired"].items(), *stored["live"].items()]
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in entries):
                raise ValueError("not a map of strings")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("session generations in %s not read (%s): tokens retired before the restart work again",
                        self._store, exc)  # fmt: skip
            return
        self._retired.update(entries)
        self._trim()

    def _save(self) -> None:
        """Write the generations (atomically; a failure is logged and the server goes on)."""
        if self._store is None:
            return
        data = json.dumps({"live": self._generations, "retired": self._retired})
        partial = self._store.with_name(self._store.name + ".partial")
        try:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(partial, self._store)
        except OSError as exc:
            log.warning("session generations not saved to %s (%s): a restart may accept retired tokens",
                        self._store, exc)  # fmt: skip
