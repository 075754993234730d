"""How long a live prompt takes to reach the screen, seen by a real WebRTC client.

A controller (aiortc) schedules a new prompt at the current frame every ``--every`` seconds (plus a uniform
random ``--jitter``, seeded: a fixed period can lock onto the block cycle, which a user's prompts do not;
``--jitter 0`` for a fixed period) and measures,
from the moment it sends ``schedule_prompt``: the ``prompt_applied`` event, the ``on_air`` event, and the
first received video frame showing the new prompt (read from the stamp band of each decoded frame: the
synthetic generator stamps its prompt number; ``serve --stamp-frames`` makes the on-air clock stamp frames of
any generator). p50/p95/max over ``--switches`` switches, the received fps, the server's stalls and frames
skipped (``--live-switch asap``: the rest of the block on air that a live prompt's block replaced; counted in
``frames_not_received`` too, beside what the encoder or the network dropped).

Against a server it starts itself (``serve`` on a free port; extra flags after ``--``)::

    python benchmarks/switch_latency.py --switches 30 -- --block-ms 310                          # asap, the default
    python benchmarks/switch_latency.py --switches 30 -- --block-ms 310 --live-switch block-end
    python benchmarks/switch_latency.py --switches 30 -- --block-ms 310 --late-binding off
    python benchmarks/switch_latency.py --startup-timeout 900 -- --generator longlive --random-weights \\
        --decoder tae --stamp-frames

or against a running one: ``--url http://host:8080 [--api-key KEY]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' peers

from benchmarks.server_process import ServerProcess, report  # noqa: E402
from tests.rtc_client import Client, allow_loopback_ice, loopback_only  # noqa: E402

PROMPT_NUMBERS = 256  # the stamp carries the prompt number mod 256


class Switch:
    """One live prompt and when each of its marks reached the client (monotonic seconds)."""

    def __init__(self, number: int, text: str, timestamp: int, requested: float) -> None:
        self.number, self.text, self.timestamp, self.requested = number, text, timestamp, requested
        self.applied: float | None = None
        self.on_air: float | None = None
        self.frame: float | None = None
        self.applied_frame: int | None = None

    def delays(self) -> dict[str, float | None]:
        def since(at: float | None) -> float | None:
            return None if at is None else round(at - self.requested, 4)

        return {"prompt_applied": since(self.applied), "on_air": since(self.on_air), "frame": since(self.frame)}


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"count": len(ordered), "p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3)}  # fmt: skip


class Probe:
    """The controller: events timed on arrival, frames timed by the test client's reader."""

    def __init__(self) -> None:
        self.client = Client()
        self.current_start_frame = 0
        self.switches: list[Switch] = []
        self.events: list[tuple[float, dict]] = []

    async def connect(self, url: str, api_key: str | None) -> None:
        await self.client.connect(url, token=api_key)
        assert self.client.channel is not None
        self.client.channel.on("message", self._on_message)

    def _on_message(self, message: str) -> None:
        at, event = time.monotonic(), json.loads(message)
        self.events.append((at, event))
        kind, data = event["type"], event.get("data", {})
        if kind == "progress":
            self.current_start_frame = data["current_start_frame"]
        for switch in self.switches:
            if kind == "prompt_applied" and switch.applied is None and data["prompt"] == switch.text:
                switch.applied, switch.applied_frame = at, data["frame"]
            elif kind == "on_air" and switch.on_air is None and switch.applied_frame == data["frame"]:
                switch.on_air = at

    def match_frames(self) -> None:
        """Each switch's first received frame stamped with its prompt number, after its request."""
        for switch in self.switches:
            wanted = switch.number % PROMPT_NUMBERS
            switch.frame = next(
                (f.at for f in self.client.frames if f.at > switch.requested and f.stamp and f.stamp.prompt == wanted),
                None,
            )

    async def command(self, kind: str, message_id: str, **data) -> dict:
        self.client.send(kind, message_id, **data)
        return await self.client.reply_to(message_id, timeout=30)


async def measure(args: argparse.Namespace, url: str) -> dict:
    probe = Probe()
    await probe.connect(url, args.api_key)
    try:
        assert (await probe.command("schedule_prompt", "p0", new_prompt="prompt 0", timestamp=0))["type"] == "ack"
        reply = await probe.command("start", "go")
        assert reply["type"] == "ack", reply
        await probe.client.wait_frames(1, timeout=args.startup_timeout)
        await asyncio.sleep(args.warmup)
        began, frames_before = time.monotonic(), len(probe.client.frames)
        gaps = random.Random(args.seed)
        for number in range(1, args.switches + 1):
            text = f"prompt {number}: " + ("a red fox in snow" if number % 2 else "a blue lake at night")
            switch = Switch(number, text, probe.current_start_frame, time.monotonic())
            probe.switches.append(switch)
            probe.client.send("schedule_prompt", f"s{number}", new_prompt=text, timestamp=switch.timestamp)
            await asyncio.sleep(args.every + gaps.uniform(0.0, args.jitter))
        await asyncio.sleep(3.0)  # the last switch reaches the screen
        elapsed = time.monotonic() - began
        received = len(probe.client.frames) - frames_before
        indices = [f.stamp.frame for f in probe.client.frames[frames_before:] if f.stamp is not None]
        missing = sum(max(0, b - a - 1) for a, b in zip(indices, indices[1:], strict=False))
        out_of_order = sum(b <= a for a, b in zip(indices, indices[1:], strict=False))
        await probe.command("get_state", "end")
        await asyncio.sleep(0.5)  # the state follows its ack
        state = next(e for _, e in reversed(probe.events) if e["type"] == "state")
        probe.match_frames()
    finally:
        await probe.client.close()
    rows = [s.delays() for s in probe.switches]
    return {
        "switches": len(rows),
        "every_s": args.every,
        "jitter_s": args.jitter,
        "request_to_prompt_applied_s": percentiles([r["prompt_applied"] for r in rows if r["prompt_applied"]]),
        "request_to_on_air_s": percentiles([r["on_air"] for r in rows if r["on_air"]]),
        "request_to_frame_s": percentiles([r["frame"] for r in rows if r["frame"]]),
        "received_fps": round(received / elapsed, 2),
        "frames_not_received": missing,  # video frames between the first and last received: skipped or lost
        "frames_out_of_order": out_of_order,  # received frames whose index is not above the one before
        "frames_skipped": state["data"].get("frames_skipped"),  # by the server: replaced by asap switches, never sent
        "stalls": state["data"].get("stalls"),
        "generator": state["data"].get("generator"),
        "per_switch": rows,
    }


async def main_async(args: argparse.Namespace) -> dict:
    if args.url:
        if loopback_only():
            allow_loopback_ice()
        return {"server": args.url, **await measure(args, args.url)}
    server = ServerProcess(*args.serve_args, startup_timeout=args.startup_timeout)
    with server:
        result = await measure(args, server.url)
        return {"serve_args": args.serve_args, **result, "server": server.summary()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start `serve` with the flags after --)")
    parser.add_argument("--api-key", help="for a server in token mode")
    parser.add_argument("--switches", type=int, default=30, help="live prompts to schedule (>= 30 for the report)")
    parser.add_argument("--every", type=float, default=2.3, help="seconds between live prompts")
    parser.add_argument("--jitter", type=float, default=0.8, help="up to this many seconds more, at random")
    parser.add_argument("--seed", type=int, default=1, help="of the jitter")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds streamed before the first switch")
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds for serve and the 1st frame")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("serve_args", nargs="*", help="flags for `serve` (after --)")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    return report(result, args.json, hide=("per_switch",))


if __name__ == "__main__":
    sys.exit(main())
