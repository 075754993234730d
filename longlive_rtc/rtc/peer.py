"""One RTCPeerConnection per client: video from the session's on-air clock, the protocol on its data channel."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from ..protocol import Event
from ..session import Member, Role
from .codecs import prefer_codec
from .ice import accept_remote_candidates, answer_dtls_passive
from .outbox import Outbox
from .packet_track import PacketTrack, forward_keyframe_requests

log = logging.getLogger(__name__)


class Peer:
    """A client connection to a session, as controller or viewer."""

    def __init__(
        self,
        session_id: str,
        role: Role,
        configuration: RTCConfiguration,
        on_closed: Callable[[Peer], None],
        on_connected: Callable[[Peer], None] | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(16)  # 128 random bits: the WHEP resource URL is a capability
        self.session_id = session_id
        self.role = role
        self.pc = RTCPeerConnection(configuration)
        self.member: Member | None = None
        self.channel: RTCDataChannel | None = None
        self.outbox: Outbox | None = None
        self.codec: str | None = None  # what answer() chose
        self._on_closed = on_closed
        self._on_connected = on_connected
        self._closed = False
        self.ever_connected = False
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def closed(self) -> bool:
        """Closed (left, deleted or dropped): nothing more to do for it."""
        return self._closed

    async def answer(self, offer_sdp: str, track, codec: str) -> RTCSessionDescription:
        """Attach the video track and answer the client's offer in ``codec`` (one it can receive:
        :func:`~.codecs.choose_codec`); ICE and DTLS as any client needs them."""
        self.codec = codec
        offer_sdp = await accept_remote_candidates(offer_sdp)
        sender = self.pc.addTrack(track)
        if isinstance(track, PacketTrack):  # encoded once: the viewer's PLI/FIR goes to the shared encoder
            forward_keyframe_requests(sender, track)
        transceiver = next(t for t in self.pc.getTransceivers() if t.sender is sender)
        prefer_codec(transceiver, self.codec)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer_dtls_passive(self.pc, offer_sdp)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    def bind_channels(self, join: Callable[[Role, Callable[[Event], None]], Member], handle) -> None:
        """On the client's data channel (any label): join the session, route messages to ``handle``."""

        @self.pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if self.channel is not None:
                log.info("peer %s opened a second data channel; using the first", self.id[:6])
                return
            self.channel = channel
            self.outbox = Outbox(channel, self._stalled)

            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                handle(message, self.role, self.send, member=self.member)

            @channel.on("close")
            def on_close() -> None:
                asyncio.ensure_future(self.close())

            self.member = join(self.role, self.send)

    def send(self, event: Event) -> None:
        """Queue an event on the data channel (state snapshots coalesced, see :class:`Outbox`); a client that
        stopped reading is dropped, never buffered for."""
        if self.outbox is not None and not self._closed:
            self.outbox.send(event)

    def _stalled(self, queued: int) -> None:
        log.warning("peer %s of %s stopped reading its data channel (%d bytes queued); dropping it",
                    self.id[:6], self.session_id, queued)  # fmt: skip
        asyncio.ensure_future(self.close())

    async def close(self) -> None:
        """Close the connection and leave the session; never raises (a half-built connection is torn down)."""
        if self._closed:
            return
        self._closed = True
        if self.outbox is not None:
            self.outbox.close()
        try:
            await self.pc.close()
        except Exception as exc:  # aiortc cannot close a connection whose offer it failed to apply
            log.info("peer %s: closing failed (%s: %s); stopping its transports", self.id[:6], type(exc).__name__, exc)
            await self._stop_transports()
        finally:
            self._on_closed(self)

    async def _stop_transports(self) -> None:
        """Stop every DTLS and ICE transport the connection made (their sockets), each on its own."""
        dtls = [t.receiver.transport for t in self.pc.getTransceivers()]
        if self.pc.sctp is not None:
            dtls.append(self.pc.sctp.transport)
        for transport in dict.fromkeys(t for t in dtls if t is not None):
            for part in (transport, transport.transport):
                try:
                    await part.stop()
                except Exception as exc:  # keep going: the next one holds sockets too
                    log.debug("peer %s: stopping %s failed: %s", self.id[:6], type(part).__name__, exc)
        self.pc.remove_all_listeners()

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        log.info("peer %s (%s of %s): %s", self.id[:6], self.role, self.session_id, state)
        if state == "connected" and not self.ever_connected:
            self.ever_connected = True
            if self._on_connected is not None:
                self._on_connected(self)
        if state in ("failed", "closed"):
            await self.close()


def ice_servers_json(servers: list[RTCIceServer]) -> list[dict[str, object]]:
    """RTCIceServer objects as browsers' ``RTCConfiguration.iceServers`` JSON."""
    out = []
    for server in servers:
        entry: dict[str, object] = {"urls": server.urls}
        if server.username:
            entry["username"] = server.username
        if server.credential:
            entry["credential"] = server.credential
        out.append(entry)
    return out
