"""What one command costs the server with a full schedule, and what a flood of commands does to the video.

Against a real ``serve`` process (synthetic generator): a running session with ``--prompts`` scheduled
prompts and ``--members`` members (one viewer receiving the video, the others data-channel controllers).
1. Server CPU per command: one controller sends ``--commands`` schedule changes under its command budget;
   the server's CPU time over that window, less its CPU time streaming without commands, per command.
2. A bounded flood: every controller sends its share of ``--flood`` commands at once; the viewer's fps
   during the flood, the replies, how many were accepted and how many refused over the budget.

    python benchmarks/command_cost.py --json command_cost.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' peers

from benchmarks.server_process import ServerProcess, report  # noqa: E402
from longlive_rtc.protocol import MAX_PROMPT_CHARS  # noqa: E402
from longlive_rtc.rtc.hub import HubConfig  # noqa: E402
from longlive_rtc.schedule import FRAMES_PER_BLOCK, MAX_SCHEDULED_PROMPTS  # noqa: E402
from tests.fuzz_stage import PACE, ChannelPeer, fps  # noqa: E402
from tests.rtc_client import Client  # noqa: E402

DRAIN = 6.0  # seconds for the last delayed events to go out before CPU is measured


def prompt(timestamp: int, chars: int, version: int = 0) -> str:
    text = f"prompt {version} at frame {timestamp}: a slow pan over a misty valley at dawn, "
    return (text * (chars // len(text) + 1))[:chars].strip()


async def paced(peer: ChannelPeer, messages: list[str], pace: float = PACE) -> None:
    for message in messages:
        peer.send(message)
        await asyncio.sleep(pace)


async def replies(peers: list[ChannelPeer], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while any(len(p.replies) < p.sent for p in peers):
        if time.monotonic() > deadline:
            raise TimeoutError("replies missing")
        await asyncio.sleep(0.02)


def schedule(timestamp: int, text: str) -> str:
    return json.dumps({"type": "schedule_prompt", "data": {"new_prompt": text, "timestamp": timestamp}})


async def cpu_rate(server: ServerProcess, seconds: float) -> float:
    """The server's CPU seconds per second over the next ``seconds``."""
    began, cpu = time.monotonic(), server.cpu_seconds()
    await asyncio.sleep(seconds)
    return (server.cpu_seconds() - cpu) / (time.monotonic() - began)


def tally(replies) -> Counter:
    """Replies counted as ``ack`` or by error code."""
    return Counter(r["type"] if r["type"] == "ack" else r["data"]["code"] for r in replies)


async def measure(args: argparse.Namespace, server: ServerProcess) -> dict:
    controllers = [ChannelPeer() for _ in range(args.members - 1)]
    await controllers[0].connect(server.url)
    session = controllers[0].session
    for peer in controllers[1:]:
        await peer.connect(server.url, session, "controller")
    viewer = Client()
    await viewer.connect(server.url, session=session, role="viewer")
    frames = list(range(0, args.prompts * FRAMES_PER_BLOCK, FRAMES_PER_BLOCK))
    loading = time.monotonic()
    shares = [frames[i :: len(controllers)] for i in range(len(controllers))]
    await asyncio.gather(*(paced(p, [schedule(t, prompt(t, args.prompt_chars)) for t in share])
                           for p, share in zip(controllers, shares, strict=True)))  # fmt: skip
    await replies(controllers)
    loaded = sum(1 for p in controllers for r in p.replies if r["type"] == "ack")
    assert (await controllers[0].request("start"))["type"] == "ack"
    print(f"{loaded} prompts scheduled in {time.monotonic() - loading:.1f} s; streaming", flush=True)
    await viewer.wait_frames(30, timeout=30)
    assert (await controllers[1].request("get_state"))["type"] == "ack"  # the snapshot a joiner gets
    await asyncio.sleep(1.0)
    snapshots = [s for s in controllers[1].states if "scheduled" in s]
    state_bytes = len(json.dumps(snapshots[-1], separators=(",", ":"), ensure_ascii=False).encode()) if snapshots else 0

    await asyncio.sleep(DRAIN)
    idle_began = time.monotonic()
    idle_rate = await cpu_rate(server, args.idle_seconds)

    commander = controllers[0]
    before = len(commander.replies)
    changes = [schedule(frames[i % len(frames)], prompt(frames[i % len(frames)], args.prompt_chars, 1 + i))
               for i in range(args.commands)]  # fmt: skip
    began, cpu = time.monotonic(), server.cpu_seconds()
    await paced(commander, changes)
    await replies([commander])
    window, used = time.monotonic() - began, server.cpu_seconds() - cpu
    await asyncio.sleep(DRAIN)
    idle_rate = (idle_rate + await cpu_rate(server, args.idle_seconds)) / 2  # streaming alone, before and after
    codes = tally(commander.replies[before:])
    per_command_ms = (used - idle_rate * window) / args.commands * 1000

    flood_sent = [len(p.replies) for p in controllers]
    flood = [schedule(frames[i % len(frames)], prompt(frames[i % len(frames)], args.prompt_chars, 10**6 + i))
             for i in range(args.flood)]  # fmt: skip
    flood_began, flood_cpu = time.monotonic(), server.cpu_seconds()
    for i, message in enumerate(flood):
        controllers[i % len(controllers)].send(message)
    await replies(controllers, timeout=300)
    answered = time.monotonic()
    await asyncio.sleep(5)
    flood_end = time.monotonic()
    flood_codes = tally(r for p, first in zip(controllers, flood_sent, strict=True) for r in p.replies[first:])
    frames = [f.at for f in viewer.frames]
    flood_fps, before_fps = fps(frames, flood_began, flood_end), fps(frames, idle_began, began)
    result = {
        "prompts": loaded, "members": args.members, "prompt_chars": args.prompt_chars, "state_event_bytes": state_bytes,
        "idle_cpu_per_s": round(idle_rate, 3),
        "commands": {"count": args.commands, "seconds": round(window, 1), "cpu_s": round(used, 2),
                     "cpu_ms_per_command": round(per_command_ms, 2), "replies": dict(codes)},
        "flood": {"count": args.flood, "answered_in_s": round(answered - flood_began, 2),
                  "cpu_s": round(server.cpu_seconds() - flood_cpu, 2), "replies": dict(flood_codes),
                  "viewer_fps_mean": round(flood_fps[0], 2), "viewer_fps_lowest_5s": round(flood_fps[1], 2)},
        "viewer_fps_before": round(before_fps[0], 2),
        "rss_mb": round(server.rss_mb(), 1),
    }  # fmt: skip
    for peer in controllers:
        await peer.close()
    await viewer.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prompts", type=int, default=MAX_SCHEDULED_PROMPTS, help="prompts scheduled (the default limit)"
    )
    parser.add_argument(
        "--prompt-chars", type=int, default=200, help=f"characters per prompt (at most {MAX_PROMPT_CHARS})"
    )
    parser.add_argument(
        "--members", type=int, default=HubConfig.max_peers_per_session, help="members of the session (the default cap)"
    )
    parser.add_argument("--commands", type=int, default=400, help="paced commands for the CPU measure")
    parser.add_argument("--flood", type=int, default=5000, help="commands of the flood")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="baseline: streaming without commands")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    with ServerProcess("--max-peers-per-session", str(args.members)) as server:
        result = asyncio.run(measure(args, server))
        result["server"] = server.summary()
    return report(result, args.json)


if __name__ == "__main__":
    sys.exit(main())
