"""The hub: live sessions with their on-air clock, their peers, capacity and grace periods."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer

from ..generators.base import PLAYBACK_FPS, Generator
from ..generators.devices import NoFreeSlot
from ..outputs import FrameSink
from ..session import Role, Session, Status
from .codecs import CODECS, choose_codec, configure_aiortc
from .loop_errors import quiet_vanished_peers
from .memory import Reclaimer
from .peer import Peer
from .sdp import OfferError, check_offer
from .track import OnAirClock

log = logging.getLogger(__name__)

LIVE_SWITCHES = ("block-end", "asap")
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{4,64}")
#: Wraps a session's (join, handle) for a peer's data channel (see Hub.connect).
ChannelAdapter = Callable[[Callable, Callable], tuple[Callable, Callable]]


def _direct(join: Callable, handle: Callable) -> tuple[Callable, Callable]:
    return join, handle


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


#: Peer slots a viewer may not take, per session and server-wide (at most half of a cap): a viewer link,
#: shared or leaked, cannot fill a session or the server with peers and so lock its controllers out.
CONTROLLER_SLOTS = 2


def peer_cap(cap: int, role: Role) -> int:
    """How many peers may be there when a peer of ``role`` joins under ``cap``."""
    return cap if role is Role.CONTROLLER else cap - min(CONTROLLER_SLOTS, cap // 2)


@dataclass
class HubConfig:
    codec: str = "vp8"
    fps: int = PLAYBACK_FPS
    ice_servers: list[RTCIceServer] = field(default_factory=list)
    max_sessions: int = 1
    max_peers_per_session: int = 16
    max_peers: int = 64  # peers of every session together
    session_idle: float = 600.0  # a session with no peer that is not running is freed after this long
    buffer_blocks: int = 1
    late_binding: bool = True  # each block starts just in time (see longlive_rtc.pacing); False: asap
    live_switch: str = "asap"  # a live prompt airs as soon as generated (skipping the rest on air), or "block-end"
    stamp_frames: bool = False  # the on-air clock stamps frame index and prompt number into every frame
    connect_timeout: float = 15.0  # a peer not connected by then (client gone after its offer) is closed

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"unknown codec {self.codec!r}; choose one of {', '.join(CODECS)}")
        if self.live_switch not in LIVE_SWITCHES:
            raise ValueError(f"live_switch must be one of {', '.join(LIVE_SWITCHES)}")


class LiveSession:
    """A session on the wire: the session, its on-air clock (feeding every viewer and output), its peers.

    The clock runs from creation until the hub frees the session, whether or not anyone watches.

    A *provisional* session was created by an offer and holds its generation slot only until a peer
    connects: a new session may take the slot of one whose peer never connected.
    """

    def __init__(
        self, session: Session, fps: int, codec: str, provisional: bool = False, config: HubConfig | None = None
    ) -> None:
        self.session = session
        config = config or HubConfig()
        session.engine.pacer.enabled = config.late_binding
        session.engine.pacer.asap = config.live_switch == "asap"
        self.clock = OnAirClock(session.engine, fps, on_shown=session.shown, stamp=config.stamp_frames)
        self.clock.start()
        self.codec = codec
        self.provisional = provisional
        self.peers: dict[str, Peer] = {}
        self.created = time.monotonic()
        self.idle_since: float | None = None  # since when it has had no peer and not been running
        #: A new H.264 viewer's track of already-encoded packets (set by outputs that encode once), or None
        self.packet_track: Callable[[], MediaStreamTrack] | None = None

    @property
    def id(self) -> str:
        return self.session.id

    @property
    def running(self) -> bool:
        return self.session.status is Status.RUNNING

    def count(self, role: Role) -> int:
        return sum(1 for p in self.peers.values() if p.role is role)

    def add_sink(self, sink: FrameSink) -> None:
        """Feed ``sink`` every frame from the next tick on (see :mod:`longlive_rtc.outputs`)."""
        self.clock.add_sink(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        """Stop feeding ``sink`` (no error when it is not fed, e.g. it failed and was removed)."""
        self.clock.remove_sink(sink)

    def summary(self) -> dict[str, object]:
        return {
            "session": self.id,
            "status": str(self.session.status),
            "current_start_frame": self.session.current_start_frame,
            "controllers": self.count(Role.CONTROLLER),
            "viewers": self.count(Role.VIEWER),
            "codec": self.codec,
            "frames_sent": self.clock.frames_sent,
            "stalls": self.session.engine.stalls,
            "frames_skipped": self.session.engine.frames_skipped,
        }


class Hub:
    """Creates, joins and frees sessions; one generator per session, capped by ``max_sessions``.

    Sessions live by themselves: peers join and leave them. A session is freed when it is deleted, or
    when it has had no peer and not been running for ``session_idle`` seconds.
    """

    def __init__(
        self,
        generator_factory: Callable[[], Generator],
        config: HubConfig | None = None,
        release: Callable[[Generator], None] | None = None,
        report: Callable[[], list[dict[str, object]]] | None = None,
    ) -> None:
        """``release`` takes back the generator of a freed session (e.g. to reuse loaded weights); ``report``
        says how the factory's capacity stands, one dict per part (a device pool's devices), for /health."""
        self.config = config or HubConfig()
        self._generator_factory = generator_factory
        self._release = release
        self._report = report
        self.sessions: dict[str, LiveSession] = {}
        self.on_freed: list[Callable[[str], None]] = []  # called with the id of every freed session
        self.on_created: list[Callable[[LiveSession], None]] = []  # called with every new session
        self._reaper: asyncio.Task | None = None
        self.reclaimer = Reclaimer()  # gives back what left peers and sessions held
        configure_aiortc(self.config.fps)

    # --- sessions ------------------------------------------------------------------------------------

    def get(self, session_id: str) -> LiveSession:
        live = self.sessions.get(session_id)
        if live is None:
            raise UnknownSession(f"no session {session_id!r}")
        return live

    def check_session_id(self, session_id: str) -> None:
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            raise HubError("a session id is 4..64 characters of A-Z, a-z, 0-9, '-' and '_'")

    def check_codec(self, codec: object) -> str:
        codec = codec if codec is not None else self.config.codec
        if not isinstance(codec, str) or codec not in CODECS:
            raise HubError(f"'codec' must be one of {', '.join(CODECS)}")
        return codec

    def create_session(
        self, session_id: str | None = None, codec: str | None = None, provisional: bool = False
    ) -> LiveSession:
        """A new session, under ``session_id`` when given (a name such as ``my-show``, or a controller
        recreating its session after a server restart, so that shared links work again)."""
        if session_id is not None:
            self.check_session_id(session_id)
            if session_id in self.sessions:
                raise SessionExists(f"session {session_id!r} already exists")
        codec = self.check_codec(codec)
        if len(self.sessions) >= self.config.max_sessions and not self._yield_provisional_slot():
            raise OverCapacity(
                f"all {self.config.max_sessions} generation slots are busy; try again later",
                retry_after=max(1, int(self.config.connect_timeout)),
            )
        session_id = session_id or secrets.token_urlsafe(8)
        try:
            generator = self._generator_factory()
        except NoFreeSlot as exc:  # e.g. the free slots are on a failed device, or a freed one not handed back yet
            retry = max(1, int(self.config.connect_timeout))
            raise OverCapacity(f"{exc}; try again later", retry_after=retry) from None
        session = Session(session_id, generator, buffer_blocks=self.config.buffer_blocks)
        live = LiveSession(session, self.config.fps, codec, provisional, self.config)
        self.sessions[session_id] = live
        for listener in self.on_created:
            listener(live)
        self._start_reaper()
        log.info("session %s created (%d/%d)", session_id, len(self.sessions), self.config.max_sessions)
        return live

    def _yield_provisional_slot(self) -> bool:
        """Free the oldest session whose creating peer never connected; False when there is none."""
        waiting = [live for live in self.sessions.values() if live.provisional and not live.running]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda live: live.created)
        log.info("session %s never connected; its slot goes to a new session", oldest.id)
        self._detach(oldest.id)
        return True

    def _detach(self, session_id: str) -> LiveSession | None:
        """Take a session off the hub at once (its slot is free) and close it in the background."""
        live = self.sessions.pop(session_id, None)
        if live is not None:
            for listener in self.on_freed:
                listener(session_id)
            asyncio.ensure_future(self._close_session(live))
        return live

    async def free_session(self, session_id: str) -> None:
        live = self.sessions.pop(session_id, None)
        if live is None:
            return
        for listener in self.on_freed:
            listener(session_id)
        await self._close_session(live)

    async def _close_session(self, live: LiveSession) -> None:
        await asyncio.gather(*(peer.close() for peer in list(live.peers.values())), return_exceptions=True)
        live.clock.stop()
        if await asyncio.to_thread(live.session.close):
            self._give_back(live)
        else:  # its engine is still inside a generator call: never two owners of one generator
            log.warning("session %s: its generator is still busy; it is reused once the call ends", live.id)
            threading.Thread(target=self._give_back_when_done, args=(live, asyncio.get_running_loop()),
                             name=f"release-{live.id}", daemon=True).start()  # fmt: skip
        log.info("session %s freed", live.id)
        self.reclaimer.soon()

    def _give_back(self, live: LiveSession) -> None:
        """The freed session's generator to the factory, for the next session (its engine has let go)."""
        if self._release is not None:
            self._release(live.session.engine.generator)

    def _give_back_when_done(self, live: LiveSession, loop: asyncio.AbstractEventLoop) -> None:
        """On a thread of its own (a wedged call never ends, and shutdown does not wait for it)."""
        live.session.engine.wait_closed()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to give it to
            loop.call_soon_threadsafe(self._give_back, live)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap_idle_sessions())

    async def _reap_idle_sessions(self) -> None:
        """Free sessions that have had no peer and not been running for ``session_idle`` seconds."""
        period = min(5.0, max(0.05, self.config.session_idle / 4))
        while self.sessions:
            now = time.monotonic()
            for live in list(self.sessions.values()):
                if live.peers or live.running:
                    live.idle_since = None
                elif live.idle_since is None:
                    live.idle_since = now
                elif now - live.idle_since >= self.config.session_idle:
                    log.info("session %s idle for %.0f s; freeing it", live.id, now - live.idle_since)
                    await self.free_session(live.id)
            await asyncio.sleep(period)

    def capacity_report(self) -> list[dict[str, object]]:
        """The generator factory's parts (devices) with their state and slots; empty when it reports none."""
        return self._report() if self._report is not None else []

    # --- peers ---------------------------------------------------------------------------------------

    async def connect(
        self, sdp: object, kind: object = "offer", session_id: str | None = None, role: Role | None = None,
        codec: object = None, create: bool = False, adapt: ChannelAdapter | None = None,
    ) -> tuple[Peer, str]:  # fmt: skip
        """Answer an offer: a new (provisional) session with the caller as controller, or a join.

        With ``create``, a controller naming an unknown session gets it created under that id.
        ``adapt`` wraps the session's ``join`` and ``handle`` for a peer whose data channel speaks another
        envelope (the Reactor SDK's). Returns the peer and its answer SDP.
        """
        quiet_vanished_peers(asyncio.get_running_loop())
        role = role or Role.CONTROLLER
        recreate = create and session_id is not None and session_id not in self.sessions
        if (session_id is None or recreate) and role is Role.VIEWER:
            raise HubError(
                "a viewer needs a session to join" if session_id is None else "only a controller can create a session"
            )
        if session_id is not None and not recreate:
            self.get(session_id)  # an unknown session is a 404 whatever the offer
        offer = check_offer(sdp, kind)
        if codec is not None:
            codec = self.check_codec(codec)
        wanted = codec or (self.sessions[session_id].codec if session_id in self.sessions else self.config.codec)
        chosen = choose_codec(offer, wanted)  # before any session is made: no codec in common is a plain 400
        if chosen != wanted:
            log.info("the offer has no %s; answering %s", wanted, chosen)
        if self.peer_count >= (cap := peer_cap(self.config.max_peers, role)):
            raise OverCapacity(f"too many viewers: the server has its maximum of {cap} peers", 10)
        created = session_id is None or recreate
        if created:
            live = self.create_session(session_id, codec, provisional=True)
        else:
            live = self.get(session_id)
            if len(live.peers) >= (cap := peer_cap(self.config.max_peers_per_session, role)):
                raise OverCapacity(
                    f"too many viewers: session {session_id} has its maximum of {cap} peers", retry_after=10
                )
        peer = Peer(live.id, role, RTCConfiguration(iceServers=self.config.ice_servers), self._forget, self._connected)
        live.peers[peer.id] = peer
        peer.bind_channels(*(adapt or _direct)(live.session.join, live.session.handle))
        try:
            packets = live.packet_track is not None and chosen == "h264"
            answer = await peer.answer(offer, live.packet_track() if packets else live.clock.track(), chosen)
        except Exception as exc:
            log.info("could not answer an offer for session %s: %s: %s", live.id, type(exc).__name__, exc)
            await peer.close()
            if created:
                await self.free_session(live.id)
            if isinstance(exc, OfferError):  # e.g. no codec in common: the message tells the client why
                raise
            raise HubError(f"could not answer the offer: {type(exc).__name__}") from None
        # a weak reference: the timer must not keep a closed peer's connection alive for connect_timeout
        loop = asyncio.get_running_loop()
        loop.call_later(self.config.connect_timeout, self._close_if_unconnected, weakref.ref(peer))
        return peer, answer.sdp

    def _connected(self, peer: Peer) -> None:
        live = self.sessions.get(peer.session_id)
        if live is not None:
            live.provisional = False

    def _close_if_unconnected(self, ref: weakref.ref[Peer]) -> None:
        peer = ref()
        if peer is not None and not peer.ever_connected and not peer.closed:  # a peer deleted meanwhile is not news
            log.info(
                "peer %s of session %s got an answer but did not connect within %.0f s; closing it. Its client"
                " left, or ICE found no path: check that UDP reaches this server, and give clients behind NAT a"
                " TURN server (serve --ice-server)",
                peer.id[:6],
                peer.session_id,
                self.config.connect_timeout,
            )
            asyncio.ensure_future(peer.close())

    def peer(self, session_id: str, peer_id: str) -> Peer:
        live = self.get(session_id)
        wanted = peer_id.encode("utf-8", "surrogatepass")  # client text: compare bytes (any character)
        peer = next((p for key, p in live.peers.items() if hmac.compare_digest(key.encode(), wanted)), None)
        if peer is None:
            raise UnknownSession(f"no peer {peer_id!r} in session {session_id!r}")
        return peer

    def _forget(self, peer: Peer) -> None:
        live = self.sessions.get(peer.session_id)
        if live is None or live.peers.pop(peer.id, None) is None:
            return
        if peer.member is not None:
            live.session.leave(peer.member)
        self.reclaimer.soon()
        if live.provisional and not live.peers and not live.running:
            log.info("session %s: its creating peer never connected; freeing it", live.id)
            self._detach(live.id)

    @property
    def peer_count(self) -> int:
        return sum(len(live.peers) for live in self.sessions.values())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await asyncio.gather(*(self.free_session(sid) for sid in list(self.sessions)), return_exceptions=True)
        self.reclaimer.cancel()
