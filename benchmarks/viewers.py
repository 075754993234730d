"""Server CPU per WebRTC viewer, per-viewer encoding against ``--encode-once`` (H.264 viewers, one session).

For each mode and viewer count, a fresh ``serve`` (synthetic generator, H.264) streams one running session
to N real aiortc viewers; the server's CPU (from /proc) is measured over ``--seconds`` once every viewer
receives frames, with each viewer's frame rate over the same window.

    python benchmarks/viewers.py --viewers 1 4 --seconds 15
    python benchmarks/viewers.py --viewers 1 10 50 --width 832 --height 480 --json viewers.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request

from benchmarks.server_process import ServerProcess, report
from tests.rtc_client import Client


def create_session(url: str) -> str:
    body = json.dumps({"start": True, "schedule": [{"timestamp": 0, "prompt": "a harbour at dawn"}]}).encode()
    request = urllib.request.Request(f"{url}/sessions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)["session"]


async def measure(server: ServerProcess, viewers: int, seconds: float) -> dict:
    session = create_session(server.url)
    clients = [Client(codec="h264") for _ in range(viewers)]
    try:
        for client in clients:
            await client.connect(server.url, session=session, role="viewer", data_channel=False)
        for client in clients:
            await client.wait_frames(15, timeout=60)
        counts, cpu, started = [len(c.frames) for c in clients], server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - started
        cores = (server.cpu_seconds() - cpu) / wall
        fps = [(len(c.frames) - n) / wall for c, n in zip(clients, counts, strict=True)]
    finally:
        for client in clients:
            await client.close()
    return {"viewers": viewers, "server_cores": round(cores, 3), "fps_min": round(min(fps), 2),
            "fps_max": round(max(fps), 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--width", type=int, default=416)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    runs = []
    for mode, flags in (("per-viewer", []), ("encode-once", ["--encode-once"])):
        for viewers in args.viewers:
            size = ["--width", str(args.width), "--height", str(args.height)]
            extra = [*flags, "--codec", "h264", "--clip-seconds", "0", "--max-peers-per-session", "64", *size]
            with ServerProcess(*extra) as server:
                result = asyncio.run(measure(server, viewers, args.seconds))
                runs.append({"mode": mode, **result, "server": server.summary()})
            print(json.dumps(runs[-1]), flush=True)
    for mode in ("per-viewer", "encode-once"):
        mine = [r for r in runs if r["mode"] == mode]
        if len(mine) > 1:
            first, last = mine[0], mine[-1]
            extra = (last["server_cores"] - first["server_cores"]) / (last["viewers"] - first["viewers"])
            print(f"{mode}: {extra:.4f} cores per extra viewer")
    return report({"size": f"{args.width}x{args.height}", "seconds": args.seconds, "runs": runs}, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
