"""HTTP routes of a session's outputs: recording, recordings and their download, clips, live MPEG-TS.

Access (docs/outputs.md): a controller token or the API key starts and stops recordings, makes clips,
lists, downloads and deletes files (they hold the session's past, which a viewer token shared for
watching does not entitle to); any token of the session reads the live ``stream.ts`` (the same
pictures as WHEP). Every refusal is a JSON error; none touches the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
from typing import Any

from aiohttp import web

from longlive_rtc.outputs.clips import NothingToClip
from longlive_rtc.outputs.manager import OutputConflict, OutputsConfig, SessionOutputs
from longlive_rtc.outputs.mpegts import TooManyReaders
from longlive_rtc.outputs.recording import Describe
from longlive_rtc.outputs.store import Store, StoreFull
from longlive_rtc.rtc.hub import Hub, LiveSession
from longlive_rtc.rtc.packet_track import PacketFanOut

from .routes import ACCESS_KEY, HUB_KEY, OUTPUT_ROUTES_KEY, _json_body, _limit, json_error
from .whip_out import WHIP_KEY, add_whip_routes

log = logging.getLogger(__name__)

TS_SEND_BUFFER = 128 * 1024  # the kernel's share of a live reader's backlog (the rest is ours, bounded)
MP4_TYPES = {".mp4": "video/mp4", ".json": "application/json"}
OUTPUT_ERRORS = (StoreFull, OutputConflict, NothingToClip, TooManyReaders)


class Outputs:
    """Every live session's outputs, made with the session when clips are on (the ring holds the past),
    otherwise at first use; closed when the hub frees the session."""

    def __init__(self, hub: Hub, config: OutputsConfig) -> None:
        self.hub, self.config = hub, config
        self.store = Store(config.recordings_dir, config.quota, config.min_free)
        self.sessions: dict[str, SessionOutputs] = {}
        self.viewers: dict[str, PacketFanOut] = {}  # H.264 viewers of each session, when encoding once
        self._closing: set[asyncio.Task] = set()
        hub.on_freed.append(self._freed)
        if config.clip_seconds > 0 or config.encode_once:
            hub.on_created.append(self._created)

    def _created(self, live: LiveSession) -> None:
        try:
            self.of(live)
        except Exception:  # outputs fail alone: the session goes on without them until asked again
            log.exception("could not start the outputs of session %s", live.id)

    def of(self, live: LiveSession) -> SessionOutputs:
        outputs = self.sessions.get(live.id)
        if outputs is None:
            geometry = live.session.geometry
            outputs = SessionOutputs(
                live.id, (geometry.width, geometry.height), self.hub.config.fps, self.config, self.store,
                describe(live, self.hub.config.fps), live.add_sink, live.remove_sink,
            )  # fmt: skip
            self.sessions[live.id] = outputs
            if self.config.encode_once:
                fan_out = self.viewers[live.id] = PacketFanOut(outputs.viewer_encoder)
                live.packet_track = fan_out.track
        return outputs

    def _freed(self, session_id: str) -> None:
        fan_out = self.viewers.pop(session_id, None)
        if fan_out is not None:
            fan_out.close()
        outputs = self.sessions.pop(session_id, None)
        if outputs is not None:
            task = asyncio.ensure_future(outputs.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        await asyncio.gather(*(outputs.close() for outputs in self.sessions.values()), *self._closing,
                             return_exceptions=True)  # fmt: skip
        self.sessions.clear()


OUTPUTS_KEY = web.AppKey("outputs", Outputs)


def describe(live: LiveSession, fps: int) -> Describe:
    """What the replay JSON needs of a session (plain values; called from the outputs' threads)."""
    session = live.session

    def snapshot() -> dict[str, Any]:
        return {
            "session": live.id, "generator": session.engine.generator.name, "geometry": session.geometry.to_dict(),
            "fps": fps, "seed": session.seed, "schedule": [entry.to_dict() for entry in session.schedule.snapshot()],
        }  # fmt: skip

    return snapshot


def output_error(exc: Exception) -> web.Response:
    """The JSON answer to a refused output request (``reason`` says which room ran out, for a full store)."""
    status = getattr(exc, "status", 400)
    body: dict[str, Any] = {"status": status, "message": str(exc)}
    if isinstance(exc, StoreFull):
        body["reason"] = exc.reason
    return web.json_response({"error": body}, status=status)


def _live(request: web.Request, *, control: bool) -> tuple[LiveSession, SessionOutputs]:
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id, control=control)
    live = request.app[HUB_KEY].get(session_id)
    return live, request.app[OUTPUTS_KEY].of(live)


def _with_url(request: web.Request, info: dict[str, Any]) -> dict[str, Any]:
    session_id = request.match_info["session"]
    return {**info, "url": f"/sessions/{session_id}/recordings/{info['name']}"}


# --- recording -------------------------------------------------------------------------------------------


async def start_recording(request: web.Request) -> web.Response:
    """Start recording what goes on air -> 201 with the recording (507 when the quota or disk is full)."""
    _live_session, outputs = _live(request, control=True)
    _limit(request, "recordings started")
    try:
        recording = await outputs.start_recording()
    except OUTPUT_ERRORS as exc:
        return output_error(exc)
    info = _with_url(request, recording.info())
    return web.json_response(info, status=201, headers={"Location": info["url"]})


async def stop_recording(request: web.Request) -> web.Response:
    """Stop the recording -> 200 with the finished file (409 when none runs)."""
    _live_session, outputs = _live(request, control=True)
    try:
        info = await outputs.stop_recording()
    except OUTPUT_ERRORS as exc:
        return output_error(exc)
    return web.json_response(_with_url(request, info))


async def recording_status(request: web.Request) -> web.Response:
    """The recording in progress (or the last one, with why it ended), clips, readers, storage."""
    live, outputs = _live(request, control=True)
    status = outputs.status()
    fan_out = request.app[OUTPUTS_KEY].viewers.get(live.id)
    if fan_out is not None:  # --encode-once: the H.264 viewers on the shared encode, their keyframes
        status["webrtc_viewers"] = fan_out.stats()
    status["whip_outputs"] = request.app[WHIP_KEY].listing(live.id)  # WHIP out (GET /sessions/{id}/outputs)
    last = outputs.recording
    status["last_recording"] = _with_url(request, last.info()) if last is not None else None
    return web.json_response(status)


# --- files -----------------------------------------------------------------------------------------------


def _entry(request: web.Request, mp4) -> dict[str, Any]:
    """A file's listing entry, from its JSON (a file whose JSON is missing or bad: what the disk says)."""
    entry: dict[str, Any] = {"name": mp4.name, "kind": "clip" if mp4.name.startswith("clip-") else "recording"}
    try:
        document = json.loads(mp4.with_suffix(".json").read_text(encoding="utf-8"))
        entry.update(document.get("recording", {}))
        entry["replay"] = document.get("replay")
    except (OSError, ValueError, AttributeError):
        pass
    entry.pop("file", None)
    entry["bytes"] = mp4.stat().st_size
    entry = _with_url(request, entry)
    entry["json"] = entry["url"][: -len(".mp4")] + ".json"
    return entry


async def list_recordings(request: web.Request) -> web.Response:
    """``{recordings: [...], storage}``: the session's recordings and clips, oldest first."""
    session_id = request.match_info["session"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    outputs = request.app[OUTPUTS_KEY]
    entries, used = await asyncio.to_thread(_listing, request, outputs.store, session_id)  # the disk: off the loop
    if not entries and session_id not in request.app[HUB_KEY].sessions:
        request.app[HUB_KEY].get(session_id)  # an unknown session with nothing on disk: 404
    live = outputs.sessions.get(session_id)
    recording = live.recording_now if live is not None else None
    for entry in entries:
        if recording is not None and entry["name"] == recording.mp4.name:
            entry.update(_with_url(request, recording.info()))
    return web.json_response({"recordings": entries, "storage": {"used": used, "quota": outputs.store.quota}})


def _listing(request: web.Request, store: Store, session_id: str) -> tuple[list[dict[str, Any]], int]:
    """A session's files' entries and the bytes used (on a worker thread)."""
    entries = []
    for mp4 in store.files(session_id):
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
            entries.append(_entry(request, mp4))
    return entries, store.used


async def download(request: web.Request) -> web.StreamResponse:
    """A recording's or clip's MP4 (range requests work) or its JSON."""
    session_id, name = request.match_info["session"], request.match_info["name"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    path = request.app[OUTPUTS_KEY].store.path(session_id, name)
    if path is None:
        return json_error(404, f"session {session_id!r} has no recording {name[:100]!r}")
    headers = {"Content-Type": MP4_TYPES[path.suffix], "Content-Disposition": f'attachment; filename="{name}"',
               "Cache-Control": "no-store"}  # fmt: skip
    return web.FileResponse(path, headers=headers)


async def delete_recording(request: web.Request) -> web.Response:
    """Delete a recording or clip (its MP4 and JSON) -> 204; the one being recorded: 409."""
    session_id, name = request.match_info["session"], request.match_info["name"]
    request.app[ACCESS_KEY].session(request, session_id, control=True)
    outputs = request.app[OUTPUTS_KEY]
    live = outputs.sessions.get(session_id)
    recording = live.recording_now if live is not None else None
    if recording is not None and name in (recording.mp4.name, recording.json.name):
        return json_error(409, "this recording is in progress: stop it first")
    if not await asyncio.to_thread(outputs.store.delete, session_id, name):
        return json_error(404, f"session {session_id!r} has no recording {name[:100]!r}")
    return web.Response(status=204)


# --- clips -----------------------------------------------------------------------------------------------


async def make_clip(request: web.Request) -> web.Response:
    """``{"seconds": N}`` -> 201 with the clip of the last N seconds (from the keyframe nearest its start)."""
    _live_session, outputs = _live(request, control=True)
    _limit(request, "clips")
    body = await _json_body(request)
    limit = outputs.config.clip_seconds
    seconds = body.get("seconds")
    unknown = sorted(set(body) - {"seconds"})
    if unknown:
        return json_error(400, f"unknown fields: {', '.join(map(str, unknown))[:200]}")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 1 <= seconds <= max(limit, 1)
    ):
        return json_error(400, f"'seconds' must be a number from 1 to {limit:g} (the clip ring's length)")
    try:
        info = await outputs.clip(float(seconds))
    except OUTPUT_ERRORS as exc:
        return output_error(exc)
    info = _with_url(request, info)
    return web.json_response(info, status=201, headers={"Location": info["url"]})


# --- live MPEG-TS ----------------------------------------------------------------------------------------


async def stream_ts(request: web.Request) -> web.StreamResponse:
    """H.264 in MPEG-TS, chunked, live from the next keyframe; a reader that lags is cut off."""
    _live_session, outputs = _live(request, control=False)
    _limit(request, "stream readers")
    try:
        reader = outputs.open_ts()
    except OUTPUT_ERRORS as exc:
        return output_error(exc)
    response = web.StreamResponse(headers={"Content-Type": "video/mp2t", "Cache-Control": "no-store"})
    response.enable_chunked_encoding()
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TS_SEND_BUFFER)
    try:
        await response.prepare(request)
        while (data := await reader.next()) is not None:
            async with asyncio.timeout(outputs.config.ts_max_lag):  # a reader this far behind is dropped
                await response.write(data)
        if reader.lagged and request.transport is not None:
            request.transport.abort()  # its backlog was dropped: no clean end to wait for
    except TimeoutError:
        log.info("an MPEG-TS reader of session %s did not keep up; dropped", outputs.session_id)
        reader.drop(f"too slow: its connection took over {outputs.config.ts_max_lag:g} s to take the stream")
        if request.transport is not None:
            request.transport.abort()
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        outputs.leave_ts(reader)
    return response


def add_output_routes(app: web.Application, hub: Hub, config: OutputsConfig) -> None:
    """Mount the outputs' routes on ``app``; its outputs close with it."""
    outputs = Outputs(hub, config)
    app[OUTPUTS_KEY] = outputs
    app[OUTPUT_ROUTES_KEY] = True  # sessions' urls name the recordings and stream.ts (the director's panel)
    app.router.add_post("/sessions/{session}/recording", start_recording)
    app.router.add_delete("/sessions/{session}/recording", stop_recording)
    app.router.add_get("/sessions/{session}/recording", recording_status)
    app.router.add_get("/sessions/{session}/recordings", list_recordings)
    app.router.add_get("/sessions/{session}/recordings/{name}", download)
    app.router.add_delete("/sessions/{session}/recordings/{name}", delete_recording)
    app.router.add_post("/sessions/{session}/clips", make_clip)
    app.router.add_get("/sessions/{session}/stream.ts", stream_ts)
    add_whip_routes(app, hub, allow_private=config.whip_private)

    async def measure_storage(_app: web.Application) -> None:
        await asyncio.to_thread(lambda: outputs.store.used)  # the first measure walks every file: off the loop

    async def close_outputs(_app: web.Application) -> None:
        await outputs.close()

    app.on_startup.append(measure_storage)

    app.on_shutdown.insert(0, close_outputs)  # before the hub closes: recordings end complete
