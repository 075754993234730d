"""Server CPU per WebRTC viewer, per-viewer encoding against ``--encode-once`` (H.264 viewers, one session).

For each mode and viewer count, a fresh ``serve`` (synthetic generator, H.264) streams one running session
to N real aiortc viewers (spread over ``--processes`` processes of their own); the server's CPU (from
/proc) is measured over ``--seconds`` once every viewer receives frames, with each viewer's frame rate over
the same window, the viewers' processes' CPU and the machine's load (the machine may be shared: the
results say how busy it was), and with ``--encode-once`` the keyframes forced in the window.

``--light`` viewers do everything a viewer does (ICE, DTLS, SRTP, RTCP, NACK, jitter buffer: every frame
reassembled) but do not decode the pictures, so that many viewers fit beside the server on a small machine;
their fps counts the complete frames each one assembled.

    python benchmarks/viewers.py --viewers 1 4 --seconds 15
    python benchmarks/viewers.py --viewers 1 10 50 --modes encode-once --light --processes 2 --json viewers.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
import urllib.request
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiortc.rtcrtpreceiver
import av

from benchmarks.server_process import ServerProcess, report
from tests.rtc_client import Client

MODES = {"per-viewer": [], "encode-once": ["--encode-once"]}


class FrameCounter:
    """A decoder stand-in for ``--light`` viewers: one tiny picture per complete encoded frame, no decoding."""

    def decode(self, encoded_frame) -> list[av.VideoFrame]:
        frame = av.VideoFrame(16, 16, "yuv420p")
        frame.pts = encoded_frame.timestamp
        return [frame]


def light_viewers() -> None:
    """Viewers of this process stop decoding (aiortc's receiver asks ``get_decoder`` for its decoder)."""
    aiortc.rtcrtpreceiver.get_decoder = lambda codec: FrameCounter()


@dataclass
class CountingClient(Client):
    """A viewer that only counts the pictures its track gives (no per-picture analysis)."""

    pictures: int = 0

    async def _read_frames(self, track) -> None:
        try:
            while True:
                await track.recv()
                self.pictures += 1
                if not self.frames:
                    self.frames.append(None)  # wait_frames: the first picture came
        except Exception:
            return


def create_session(url: str) -> str:
    body = json.dumps({"start": True, "schedule": [{"timestamp": 0, "prompt": "a harbour at dawn"}]}).encode()
    request = urllib.request.Request(f"{url}/sessions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)["session"]


def shared_viewers(url: str, session: str) -> dict:
    """The encode-once viewers' counters (keyframes forced, packets skipped); empty with per-viewer encoding."""
    with urllib.request.urlopen(f"{url}/sessions/{session}/recording", timeout=10) as reply:
        return json.load(reply).get("webrtc_viewers") or {}


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


async def watch(url: str, session: str, viewers: int, control: Connection) -> None:
    """One process's viewers: connect, say ``ready``; count pictures between ``start`` and ``stop``."""
    loop = asyncio.get_running_loop()
    clients = [CountingClient(codec="h264") for _ in range(viewers)]
    try:
        for client in clients:
            await client.connect(url, session=session, role="viewer", data_channel=False)
        for client in clients:
            await client.wait_frames(1, timeout=60)
        control.send("ready")
        await loop.run_in_executor(None, control.recv)  # start
        counts, mine, started = [c.pictures for c in clients], time.process_time(), time.monotonic()
        await loop.run_in_executor(None, control.recv)  # stop
        wall = time.monotonic() - started
        fps = [(c.pictures - n) / wall for c, n in zip(clients, counts, strict=True)]
        control.send({"fps": fps, "cores": (time.process_time() - mine) / wall})
    finally:
        for client in clients:
            await client.close()


def viewer_process(url: str, session: str, viewers: int, control: Connection) -> None:
    asyncio.run(watch(url, session, viewers, control))


def measure(server: ServerProcess, viewers: int, seconds: float, processes: int) -> dict:
    """N viewers spread over ``processes`` processes (one event loop each), measured over ``seconds``."""
    session = create_session(server.url)
    context = multiprocessing.get_context("fork")  # the children keep --light's stand-in decoder
    workers = []
    for index in range(min(processes, viewers)):
        share = viewers // processes + (index < viewers % processes)
        mine, theirs = context.Pipe()
        process = context.Process(target=viewer_process, args=(server.url, session, share, theirs), daemon=True)
        process.start()
        workers.append((process, mine))
    try:
        for _, control in workers:
            if not control.poll(120) or control.recv() != "ready":
                raise RuntimeError("a viewer process did not connect its viewers")
        time.sleep(2.0)  # every viewer past its start
        cpu, machine, shared = server.cpu_seconds(), machine_busy(), shared_viewers(server.url, session)
        started = time.monotonic()
        for _, control in workers:
            control.send("start")
        time.sleep(seconds)
        for _, control in workers:
            control.send("stop")
        wall = time.monotonic() - started
        cores = (server.cpu_seconds() - cpu) / wall
        busy, total = (now - then for now, then in zip(machine_busy(), machine, strict=True))
        shared_after = shared_viewers(server.url, session)
        results = [control.recv() for _, control in workers]
    finally:
        for process, _ in workers:
            process.join(30)
            if process.is_alive():
                process.kill()
    fps = [rate for result in results for rate in result["fps"]]
    return {"viewers": viewers, "viewer_processes": len(workers), "server_cores": round(cores, 3),
            "fps_min": round(min(fps), 2), "fps_max": round(max(fps), 2),
            "viewers_cores": round(sum(r["cores"] for r in results), 3),
            "machine_busy_cores": round(busy / wall, 2), "machine_cores": round(total / wall, 1),
            "loadavg": os.getloadavg(),
            **{f"{key}_in_window": shared_after[key] - shared.get(key, 0) for key in ("keyframes_forced",
               "keyframe_requests", "packets_skipped") if key in shared_after}}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--light", action="store_true", help="viewers reassemble frames but do not decode them")
    parser.add_argument("--processes", type=int, default=1, help="processes the viewers are spread over")
    parser.add_argument("--bitrate", help="serve --bitrate (the shared encode's; default serve's 2M)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.light:
        light_viewers()
    runs = []
    most = max(args.viewers)
    for mode in args.modes:
        for viewers in args.viewers:
            size = ["--width", str(args.width), "--height", str(args.height)]
            size += ["--bitrate", args.bitrate] if args.bitrate else []
            peers = ["--max-peers", str(most + 8), "--max-peers-per-session", str(most + 8)]
            limits = ["--rate-limit", "6000", "--rate-burst", str(most + 8)]  # every viewer offers from here
            extra = [*MODES[mode], "--codec", "h264", "--clip-seconds", "0", *peers, *limits, *size]
            with ServerProcess(*extra) as server:
                result = measure(server, viewers, args.seconds, args.processes)
                runs.append({"mode": mode, **result, "server": server.summary()})
            print(json.dumps(runs[-1]), flush=True)
    for mode in args.modes:
        mine = [r for r in runs if r["mode"] == mode]
        if len(mine) > 1:
            first, last = mine[0], mine[-1]
            extra = (last["server_cores"] - first["server_cores"]) / (last["viewers"] - first["viewers"])
            print(f"{mode}: {extra:.4f} cores per extra viewer")
    size = f"{args.width}x{args.height}"
    result = {"size": size, "bitrate": args.bitrate or "2M", "seconds": args.seconds, "light": args.light, "runs": runs}
    return report(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
