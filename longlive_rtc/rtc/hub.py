"""The hub: live sessions with their paced track and relay, their peers, capacity and grace periods."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.contrib.media import MediaRelay

from ..generators.base import Generator
from ..session import Role, Session
from .codecs import CODECS, configure_h264_rate
from .peer import Peer, check_offer
from .track import DEFAULT_FPS, PacedVideoTrack

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{4,64}")


class HubError(Exception):
    """A request the hub refuses; ``status`` is the HTTP status the signaling layer answers with."""

    status = 400


class UnknownSession(HubError):
    status = 404


class SessionExists(HubError):
    status = 409


class OverCapacity(HubError):
    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class HubConfig:
    codec: str = "vp8"
    fps: int = DEFAULT_FPS
    ice_servers: list[RTCIceServer] = field(default_factory=list)
    max_sessions: int = 1
    max_peers_per_session: int = 16
    grace_seconds: float = 30.0
    buffer_blocks: int = 1
    connect_timeout: float = 30.0  # a peer not connected by then (client gone after its offer) is closed

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; choose one of {', '.join(CODECS)}")


class LiveSession:
    """A session on the wire: the session, its paced track, the relay fanning it out, its peers."""

    def __init__(self, session: Session, fps: int) -> None:
        self.session = session
        self.track = PacedVideoTrack(session.engine, fps)
        self.relay = MediaRelay()
        self.peers: dict[str, Peer] = {}
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def id(self) -> str:
        return self.session.id

    def summary(self) -> dict[str, object]:
        return {
            "session": self.id,
            "status": str(self.session.status),
            "current_start_frame": self.session.current_start_frame,
            "controllers": sum(1 for p in self.peers.values() if p.role is Role.CONTROLLER),
            "viewers": sum(1 for p in self.peers.values() if p.role is Role.VIEWER),
            "frames_sent": self.track.frames_sent,
            "stalls": self.session.engine.stalls,
        }


class Hub:
    """Creates, joins and frees sessions; one generator per session, capped by ``max_sessions``."""

    def __init__(
        self,
        generator_factory: Callable[[], Generator],
        config: HubConfig | None = None,
        release: Callable[[Generator], None] | None = None,
    ) -> None:
        """``release`` takes back the generator of a freed session (e.g. to reuse loaded weights)."""
        self.config = config or HubConfig()
        self._generator_factory = generator_factory
        self._release = release
        self.sessions: dict[str, LiveSession] = {}
        configure_h264_rate(self.config.fps)

    # --- sessions ------------------------------------------------------------------------------------

    def get(self, session_id: str) -> LiveSession:
        live = self.sessions.get(session_id)
        if live is None:
            raise UnknownSession(f"no session {session_id!r}")
        return live

    def create_session(self, session_id: str | None = None) -> LiveSession:
        """A new session, under ``session_id`` when given (a controller recreating its session after a
        server restart, so that shared viewer and OBS links work again)."""
        if session_id is not None:
            if not SESSION_ID.fullmatch(session_id):
                raise HubError("a session id is 4..64 characters of A-Z, a-z, 0-9, '-' and '_'")
            if session_id in self.sessions:
                raise SessionExists(f"session {session_id!r} already exists")
        if len(self.sessions) >= self.config.max_sessions:
            raise OverCapacity(
                f"all {self.config.max_sessions} generation slots are busy; try again later",
                retry_after=max(1, int(self.config.grace_seconds)),
            )
        session_id = session_id or secrets.token_urlsafe(8)
        session = Session(session_id, self._generator_factory(), buffer_blocks=self.config.buffer_blocks)
        live = LiveSession(session, self.config.fps)
        self.sessions[session_id] = live
        log.info("session %s created (%d/%d)", session_id, len(self.sessions), self.config.max_sessions)
        return live

    async def free_session(self, session_id: str) -> None:
        live = self.sessions.pop(session_id, None)
        if live is None:
            return
        if live.expiry:
            live.expiry.cancel()
        await asyncio.gather(*(peer.close() for peer in list(live.peers.values())), return_exceptions=True)
        live.track.stop()
        await asyncio.to_thread(live.session.close)
        if self._release is not None:
            self._release(live.session.engine.generator)
        log.info("session %s freed", session_id)

    # --- peers ---------------------------------------------------------------------------------------

    async def connect(
        self, sdp: object, kind: object = "offer", session_id: str | None = None, role: Role | None = None,
        codec: str | None = None, create: bool = False,
    ) -> tuple[Peer, str]:  # fmt: skip
        """Answer an offer: a new session with the caller as controller, or a join of an existing one.

        With ``create``, a controller naming an unknown session gets it created under that id.
        Returns the peer and its answer SDP.
        """
        recreate = create and session_id is not None and session_id not in self.sessions
        if recreate and role is Role.VIEWER:
            raise HubError("only a controller can create a session")
        if session_id is not None and not recreate:
            self.get(session_id)  # an unknown session is a 404 whatever the offer
        offer = check_offer(sdp, kind)
        codec = codec or self.config.codec
        if codec not in CODECS:
            raise HubError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
        created = session_id is None or recreate
        if created:
            if role is Role.VIEWER:
                raise HubError("a viewer needs a session to join")
            live = self.create_session(session_id)
        else:
            live = self.get(session_id)
            if len(live.peers) >= self.config.max_peers_per_session:
                raise OverCapacity(f"session {session_id} has its maximum of peers", retry_after=5)
        role = role or Role.CONTROLLER
        peer = Peer(live.id, role, RTCConfiguration(iceServers=self.config.ice_servers), self._forget)
        live.peers[peer.id] = peer
        if role is Role.CONTROLLER and live.expiry:
            live.expiry.cancel()
            live.expiry = None
        peer.bind_channels(live.session.join, live.session.handle)
        try:
            answer = await peer.answer(offer, live.relay.subscribe(live.track, buffered=False), codec)
        except Exception as exc:
            await peer.close()
            if created:
                await self.free_session(live.id)
            raise HubError(f"could not answer the offer: {exc}") from exc
        asyncio.get_running_loop().call_later(self.config.connect_timeout, self._close_if_unconnected, peer)
        return peer, answer.sdp

    def _close_if_unconnected(self, peer: Peer) -> None:
        if peer.pc.connectionState != "connected":
            log.info("peer %s did not connect within %.0f s; closing it", peer.id, self.config.connect_timeout)
            asyncio.ensure_future(peer.close())

    def peer(self, session_id: str, peer_id: str) -> Peer:
        peer = self.get(session_id).peers.get(peer_id)
        if peer is None:
            raise UnknownSession(f"no peer {peer_id!r} in session {session_id!r}")
        return peer

    def _forget(self, peer: Peer) -> None:
        live = self.sessions.get(peer.session_id)
        if live is None or live.peers.pop(peer.id, None) is None:
            return
        if peer.member is not None:
            live.session.leave(peer.member)
        controllers = sum(1 for p in live.peers.values() if p.role is Role.CONTROLLER)
        if controllers == 0 and live.expiry is None:
            log.info("session %s has no controller; freeing it in %.0f s", live.id, self.config.grace_seconds)
            loop = asyncio.get_running_loop()
            live.expiry = loop.call_later(
                self.config.grace_seconds, lambda: asyncio.ensure_future(self.free_session(live.id))
            )

    @property
    def peer_count(self) -> int:
        return sum(len(live.peers) for live in self.sessions.values())

    async def close(self) -> None:
        await asyncio.gather(*(self.free_session(sid) for sid in list(self.sessions)), return_exceptions=True)
