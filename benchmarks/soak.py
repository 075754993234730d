"""Churn soak against a real ``serve`` process (synthetic generator, token mode): viewers and controllers join,
receive and drop abruptly, offers never complete ICE, while two shows run throughout. Every 30 s the
server's RSS, open fds, threads, sessions and peers are sampled; peers and sessions that outlive their
grace period are counted. At the end a fresh viewer and a fresh controller must connect and play.

    python benchmarks/soak.py --minutes 20 --json soak.json

Leaving: ``close`` (the client closes its connection), ``delete`` (DELETE of its peer resource, then close),
``vanish`` (its ICE transport stops without a word: the server must notice through ICE consent, 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' peers

import aiohttp  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402

from benchmarks.server_process import ServerProcess, report  # noqa: E402
from longlive_rtc.rtc.hub import HubConfig  # noqa: E402
from tests.fuzz_stage import ChannelPeer  # noqa: E402
from tests.rtc_client import Client  # noqa: E402

API_KEY = "soak-benchmark-api-key-0123"
SHOWS = ("show-one", "show-two")
SCHEDULE = [{"timestamp": 0, "prompt": "a red fox in the snow"}, {"timestamp": 60, "prompt": "a blue lake"}]
SESSION_IDLE = 30.0  # the grace period of a session nobody is in (--session-idle)
CONSENT = 30.0  # aioice: 6 failed consent checks 5 s apart before a vanished peer is closed
CONNECT_TIMEOUT = HubConfig().connect_timeout  # a peer that never connects is closed after this
SLACK = 15.0  # reaper period, check spacing, a loaded machine


def refusal(exc: Exception) -> str:
    """The HTTP status in a refused join's message, else the exception's type."""
    status = re.search(r'"status": (\d+)', str(exc))
    return status.group(1) if status else type(exc).__name__


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def vanish(pc: RTCPeerConnection) -> None:
    """Stop sending anything at all (as a crashed or unplugged client): ICE transports stop, nothing is said."""
    transports = [t.receiver.transport.transport for t in pc.getTransceivers() if t.receiver.transport]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport.transport)
    for ice in dict.fromkeys(transports):
        with contextlib.suppress(Exception):
            await ice.stop()


async def quietly_close(member: Client | ChannelPeer | RTCPeerConnection) -> None:
    """Close a client, a peer or a connection; give up after 10 s, and never raise."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(member.close(), 10)


@dataclass
class Soak:
    url: str
    tokens: dict[str, dict[str, str]]  # show -> {"controller", "viewer"}
    live: int = 0  # peers this soak holds open
    departures: list[tuple[float, float]] = field(default_factory=list)  # (when, grace) of dropped peers
    ephemeral: dict[str, float] = field(default_factory=dict)  # session -> deadline by which it must be gone
    counts: Counter = field(default_factory=Counter)
    frames: int = 0

    def left(self, grace: float) -> None:
        self.live -= 1
        self.departures.append((time.monotonic(), grace))

    async def leave(self, member: Client | ChannelPeer, vanished: bool, session: str | None = None) -> None:
        """Drop ``member``: close it, or make it vanish and keep it (silent) until the server must have noticed.
        ``session``, one that ``member`` created, must be gone once it is idle past ``--session-idle``."""
        gone = CONSENT if vanished else 0.0
        if vanished:
            await vanish(member.pc)
        else:
            await quietly_close(member)
        self.left(gone + SLACK)
        if session:
            self.ephemeral[session] = time.monotonic() + gone + SESSION_IDLE + SLACK
        if vanished:
            await asyncio.sleep(gone + SLACK)  # keep the object alive: it must not say goodbye
            await quietly_close(member)

    async def viewer(self, rng: random.Random) -> None:
        show = rng.choice(SHOWS)
        client = Client()
        whep = rng.random() < 0.3
        try:
            await client.connect(self.url, session=show, role="viewer", whep=whep, data_channel=not whep,
                                 token=self.tokens[show]["viewer"])  # fmt: skip
        except Exception as exc:  # 503 when full: counted, not fatal
            self.counts[f"viewer refused: {refusal(exc)}"] += 1
            await quietly_close(client)
            return
        self.live += 1
        self.counts["viewer joins"] += 1
        await asyncio.sleep(rng.uniform(5, 30))
        self.frames += len(client.frames)
        mode = rng.choice(["close", "delete", "vanish"])
        self.counts[f"viewer {mode}"] += 1
        if mode == "delete":
            location = getattr(client, "location", None) or f"/sessions/{show}/peers/{client.peer_id}"
            async with (
                aiohttp.ClientSession() as http,
                http.delete(self.url + location, headers=auth(self.tokens[show]["viewer"])) as r,
            ):
                self.counts[f"delete {r.status}"] += 1
        await self.leave(client, mode == "vanish")

    async def controller(self, rng: random.Random) -> None:
        """A controller that creates its own session, directs it a while, and drops."""
        peer = ChannelPeer()
        try:
            reply = await peer.connect(self.url, token=API_KEY)
        except Exception as exc:
            self.counts[f"controller refused: {refusal(exc)}"] += 1
            await quietly_close(peer)
            return
        session = reply["session"]
        self.live += 1
        self.counts["controller joins"] += 1
        started = rng.random() < 0.7
        if started:
            await peer.request("schedule_prompt", new_prompt="a passing storm", timestamp=0)
            await peer.request("start")
        for _ in range(rng.randrange(1, 8)):
            await asyncio.sleep(rng.uniform(1, 4))
            await peer.request("schedule_prompt", new_prompt=f"prompt {rng.randrange(10**6)}",
                               timestamp=rng.randrange(0, 3000))  # fmt: skip
        # (a running session outlives its controllers by design: it is stopped or deleted before they go)
        mode = rng.choice(["stop and vanish", "delete session", "stop and close"] if started else ["vanish", "close"])
        self.counts[f"controller {mode}"] += 1
        if mode == "delete session":
            async with aiohttp.ClientSession() as http, http.delete(f"{self.url}/sessions/{session}",
                                                                    headers=auth(API_KEY)) as r:  # fmt: skip
                self.counts[f"delete {r.status}"] += 1
            self.left(SLACK)
            self.ephemeral[session] = time.monotonic() + SLACK
            await quietly_close(peer)
            return
        if mode.startswith("stop"):
            await peer.request("stop")
        await self.leave(peer, mode.endswith("vanish"), session)

    async def show_controller(self, rng: random.Random) -> None:
        """A show's controller joins, schedules a little, and leaves (the show keeps running)."""
        show = rng.choice(SHOWS)
        peer = ChannelPeer()
        try:
            await peer.connect(self.url, show, "controller", self.tokens[show]["controller"])
        except Exception as exc:
            self.counts[f"show controller refused: {refusal(exc)}"] += 1
            await quietly_close(peer)
            return
        self.live += 1
        self.counts["show controller joins"] += 1
        for _ in range(rng.randrange(1, 5)):
            await peer.request("schedule_prompt", new_prompt=f"show prompt {rng.randrange(10**6)}",
                               timestamp=rng.randrange(0, 10**6))  # fmt: skip
            await asyncio.sleep(rng.uniform(0.5, 3))
        mode = rng.choice(["close", "vanish"])
        self.counts[f"show controller {mode}"] += 1
        await self.leave(peer, mode == "vanish")

    async def never_connects(self, rng: random.Random) -> None:
        """An offer whose answer is never applied: ICE never completes."""
        show = rng.choice(SHOWS)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": "offer", "session": show, "role": "viewer"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.url}/offer", json=body, headers=auth(self.tokens[show]["viewer"])) as r,
        ):
            self.counts[f"never-connecting offer {r.status}"] += 1
            if r.status == 200:
                self.departures.append((time.monotonic(), CONNECT_TIMEOUT + SLACK))
        await quietly_close(pc)

    def recent(self) -> int:
        """Dropped peers still within their grace period (the server may still hold them)."""
        now = time.monotonic()
        self.departures = [(at, grace) for at, grace in self.departures if now - at < grace]
        return len(self.departures)


async def churn(soak: Soak, seconds: float, rng: random.Random, max_viewers: int) -> None:
    """Start actors at random until ``seconds`` have passed; at most ``max_viewers`` viewers at once."""
    deadline = time.monotonic() + seconds
    tasks: set[asyncio.Task] = set()
    viewers: set[asyncio.Task] = set()
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.45 and len(viewers) < max_viewers:
            task = asyncio.ensure_future(soak.viewer(rng))
            viewers.add(task)
            task.add_done_callback(viewers.discard)
        elif roll < 0.65:
            task = asyncio.ensure_future(soak.controller(rng))
        elif roll < 0.8:
            task = asyncio.ensure_future(soak.show_controller(rng))
        else:
            task = asyncio.ensure_future(soak.never_connects(rng))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(rng.uniform(0.5, 3.0))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            soak.counts[f"actor failed: {type(result).__name__}: {str(result)[:80]}"] += 1


async def sample(server: ServerProcess, soak: Soak, began: float) -> dict:
    async with aiohttp.ClientSession(headers=auth(API_KEY)) as http:
        async with http.get(f"{server.url}/health") as r:
            health = await r.json()
        async with http.get(f"{server.url}/sessions") as r:
            listed = {s["session"]: s for s in (await r.json())["sessions"]}
    now = time.monotonic()
    overdue = [s for s, deadline in soak.ephemeral.items() if now > deadline and s in listed]
    for session in [s for s in soak.ephemeral if s not in listed]:
        del soak.ephemeral[session]
    recent = soak.recent()
    return {
        "t": round(now - began), "rss_mb": round(server.rss_mb(), 1), "fds": server.open_fds(),
        "threads": server.threads(), "cpu_s": round(server.cpu_seconds(), 1),
        "sessions": health["sessions"], "peers": health["peers"], "held": soak.live, "recently_dropped": recent,
        "stale_peers": max(0, health["peers"] - soak.live - recent), "overdue_sessions": overdue,
    }  # fmt: skip


async def fresh_clients_play(url: str, tokens: dict[str, dict[str, str]]) -> dict:
    """A fresh viewer of a show and a fresh controller of a new session: both get video."""
    viewer, controller = Client(), Client()
    try:
        await viewer.connect(url, session=SHOWS[0], role="viewer", token=tokens[SHOWS[0]]["viewer"])
        await viewer.wait_frames(30, timeout=30)
        await controller.connect(url, token=API_KEY)
        controller.send("schedule_prompt", "p", new_prompt="the end", timestamp=0)
        controller.send("start", "s")
        assert (await controller.reply_to("s"))["type"] == "ack"
        await controller.wait_frames(30, timeout=30)
        return {"viewer_frames": len(viewer.frames), "controller_frames": len(controller.frames), "ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        await viewer.close()
        await controller.close()


async def warm_up(url: str, tokens: dict[str, dict[str, str]], seconds: float) -> None:
    """One viewer per show for ``seconds``, then a pause: the shows' frames flow (as they will from now on)."""
    viewers = [Client() for _ in SHOWS]
    for viewer, show in zip(viewers, SHOWS, strict=True):
        await viewer.connect(url, session=show, role="viewer", token=tokens[show]["viewer"])
    await asyncio.sleep(seconds)
    for viewer in viewers:
        await viewer.close()
    await asyncio.sleep(15)  # the peers gone and reclaimed


def table(samples: list[dict]) -> str:
    columns = ["t", "rss_mb", "fds", "threads", "sessions", "peers", "held", "recently_dropped", "stale_peers"]
    rows = [columns] + [[str(s[c]) for c in columns] for s in samples]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


async def run(args: argparse.Namespace, server: ServerProcess) -> dict:
    tokens = {}
    async with aiohttp.ClientSession(headers=auth(API_KEY)) as http:
        for show in SHOWS:
            body = {"id": show, "schedule": SCHEDULE, "start": True}
            async with http.post(f"{server.url}/sessions", json=body) as r:
                created = await r.json()
                assert r.status == 201, created
            tokens[show] = created["tokens"]
    soak = Soak(server.url, tokens)
    at_start = server.rss_mb()
    await warm_up(server.url, tokens, args.warmup)  # the baseline: both shows streaming, nobody watching
    began = time.monotonic()
    samples = [await sample(server, soak, began)]
    print(table(samples), flush=True)
    work = asyncio.ensure_future(churn(soak, args.minutes * 60, random.Random(args.seed), args.max_viewers))
    while not work.done():
        await asyncio.wait({work}, timeout=args.sample_every)
        samples.append(await sample(server, soak, began))
        print(table(samples).splitlines()[-1], flush=True)
    churned = time.monotonic()
    await asyncio.sleep(CONSENT + SESSION_IDLE + SLACK)  # every grace period over
    samples.append(await sample(server, soak, began))
    print(table(samples).splitlines()[-1], flush=True)
    fresh = await fresh_clients_play(server.url, tokens)
    settled = samples[-1]
    return {
        "minutes": args.minutes, "churn_seconds": round(churned - began), "counts": dict(sorted(soak.counts.items())),
        "frames_received_by_churn_viewers": soak.frames, "samples": samples,
        "rss_mb": {"server_start": round(at_start, 1), "start": samples[0]["rss_mb"],
                   "peak": max(s["rss_mb"] for s in samples), "settled": settled["rss_mb"],
                   "growth": round(settled["rss_mb"] - samples[0]["rss_mb"], 1),
                   "growth_after_first_2_min": round(settled["rss_mb"] - _at(samples, 120)["rss_mb"], 1)},
        "fds": {"start": samples[0]["fds"], "settled": settled["fds"], "max": max(s["fds"] for s in samples)},
        "stale_peers_max": max(s["stale_peers"] for s in samples),
        "overdue_sessions": sorted({x for s in samples for x in s["overdue_sessions"]}),
        "settled": {"sessions": settled["sessions"], "peers": settled["peers"]},
        "fresh_clients": fresh,
    }  # fmt: skip


def _at(samples: list[dict], t: float) -> dict:
    return next((s for s in samples if s["t"] >= t), samples[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="minutes of churn")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--max-viewers", type=int, default=3, help="churning viewers at once (each one an encoder)")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds the shows stream before the baseline")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra flag for serve (repeatable)")
    args = parser.parse_args()
    flags = ["--max-sessions", "5", "--session-idle", str(SESSION_IDLE), *args.serve_arg]
    with ServerProcess(*flags, api_key=API_KEY) as server:
        results = asyncio.run(run(args, server))
        results["server"] = server.summary()
    print(table(results["samples"]))
    return report(results, args.json, hide=["samples"])


if __name__ == "__main__":
    sys.exit(main())
