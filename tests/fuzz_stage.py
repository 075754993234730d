"""The stage of a fuzz run: a running session with a legitimate controller, a viewer receiving its video,
and hostile data-channel peers whose every message must get exactly one reply. Real aiortc peers, real HTTP.

Used by tests/test_fuzz_channel.py (an in-process server) and benchmarks/fuzz.py (a ``serve`` process).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from longlive_rtc.protocol import COMMAND_RATE

from .hostile_messages import Batch
from .rtc_client import Client

#: Seconds between two paced messages of one peer: just under its command budget.
PACE = 1.0 / (COMMAND_RATE * 0.95)
LEGIT_PROMPTS = {0: "a red fox in the snow", 30: "a blue lake at dawn", 60: "green aurora over pines"}


def fps(times: Iterable[float], start: float, end: float = math.inf, window: float = 5.0) -> tuple[float, float]:
    """(mean, lowest) frame rate of the frames received at ``times`` (monotonic seconds) within [start, end].

    Mean: frames after the first per second from the first to the last. Lowest: the fewest frames in one of
    the back-to-back ``window``-second windows that start at the first frame (only whole windows that end by
    the last frame; a shorter tail is left out), divided by ``window``; the mean when no whole window fits.
    """
    within = sorted(t for t in times if start <= t <= end)
    if len(within) < 2 or within[-1] == within[0]:
        return 0.0, 0.0
    mean = (len(within) - 1) / (within[-1] - within[0])
    lowest, begin = mean, within[0]
    while begin + window <= within[-1]:
        lowest = min(lowest, sum(1 for t in within if begin <= t < begin + window) / window)
        begin += window
    return mean, lowest


class LoopThread:
    """An event loop in a thread of its own, for hypothesis tests (plain functions) that drive real peers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class ChannelPeer:
    """A data-channel peer whose video section is inactive (the server spends no encoder on it)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.replies: list[dict] = []  # ack and error events, in order
        self.states: list[dict] = []
        self.sent = 0
        self.last: list[dict] = []  # the replies to the last batch
        self.session = ""
        self._ids = itertools.count(1)

    async def connect(self, url: str, session: str | None = None, role: str = "controller",
                      token: str | None = None) -> dict:  # fmt: skip
        self.pc.addTransceiver("video", direction="inactive")
        self.channel = self.pc.createDataChannel("commands")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self._on_message)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body: dict[str, Any] = {"sdp": self.pc.localDescription.sdp, "type": "offer", "role": role}
        if session:
            body["session"] = session
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(headers=headers) as http, http.post(f"{url}/offer", json=body) as r:
            assert r.status == 200, await r.text()
            reply = await r.json()
        self.session = reply["session"]
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        await asyncio.wait_for(opened.wait(), 15)
        return reply

    def _on_message(self, raw: str | bytes) -> None:
        event = json.loads(raw)
        if event["type"] in ("ack", "error"):
            self.replies.append(event)
        elif event["type"] == "state":
            self.states.append(event["data"])

    def send(self, payload: str | bytes) -> None:
        self.channel.send(payload)
        self.sent += 1

    async def request(self, kind: str, timeout: float = 10.0, **data: Any) -> dict:
        """A legitimate command; its reply (matched by id)."""
        message_id = f"legit-{next(self._ids)}"
        seen = len(self.replies)
        self.send(json.dumps({"type": kind, "data": data, "id": message_id}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reply in self.replies[seen:]:
                if reply.get("id") == message_id:
                    return reply
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no reply to {kind}")

    async def run(self, batch: Batch, pace: float = PACE, timeout: float = 30.0) -> list[str]:
        """Send a batch; what is wrong with its replies (none missing, each acceptable, in order)."""
        first, count = len(self.replies), len(batch.messages)
        for message in batch.messages:
            self.send(message.payload)
            if not batch.burst:
                await asyncio.sleep(pace)
        deadline = time.monotonic() + timeout
        while len(self.replies) < first + count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        replies = self.last = self.replies[first : first + count]
        problems = [f"{count - len(replies)} of {count} messages got no reply"] if len(replies) < count else []
        for message, reply in zip(batch.messages, replies, strict=False):
            problem = message.judge(reply)
            if problem:
                problems.append(problem)
        return problems

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class FuzzStats:
    messages: int = 0
    bursts: int = 0
    codes: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, batch: Batch, peer: ChannelPeer, problems: list[str]) -> None:
        self.messages += len(batch.messages)
        self.bursts += batch.burst
        self.kinds.update(m.kind for m in batch.messages)
        for reply in peer.last:
            self.codes[reply["data"].get("code", "ack") if reply["type"] == "error" else "ack"] += 1
        self.problems.extend(problems)


class Stage:
    """A session streaming to a viewer, its legitimate controller, and ``fuzzers`` hostile controllers."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.token = url, token
        self.legit = ChannelPeer()
        self.viewer = Client()
        self.fuzzers: list[ChannelPeer] = []
        self.prompts = dict(LEGIT_PROMPTS)
        self.session = ""
        self.stats = FuzzStats()
        self._next_frame = 300
        self._bursts = 0

    async def open(self, fuzzers: int = 1) -> Stage:
        reply = await self.legit.connect(self.url, token=self.token)
        self.session = reply["session"]
        tokens = reply.get("tokens") or {}
        for timestamp, prompt in self.prompts.items():
            reply = await self.legit.request("schedule_prompt", new_prompt=prompt, timestamp=timestamp)
            assert reply["type"] == "ack", reply
        assert (await self.legit.request("start"))["type"] == "ack"
        await self.viewer.connect(self.url, session=self.session, role="viewer", token=tokens.get("viewer"))
        await self.viewer.wait_frames(5)
        for _ in range(fuzzers):
            peer = ChannelPeer()
            await peer.connect(self.url, self.session, "controller", tokens.get("controller"))
            self.fuzzers.append(peer)
        return self

    async def fuzz(self, batch: Batch, pace: float = PACE) -> list[str]:
        """One batch, its messages dealt round-robin to the hostile peers, which send at the same time (a burst
        goes to one peer, the next in turn, so that it overruns that peer's command budget)."""
        if batch.burst:
            self._bursts += 1
            runs = [(self.fuzzers[self._bursts % len(self.fuzzers)], batch)]
        else:
            shares = [Batch(batch.messages[i :: len(self.fuzzers)]) for i in range(len(self.fuzzers))]
            runs = [(peer, share) for peer, share in zip(self.fuzzers, shares, strict=True) if share.messages]
        results = await asyncio.gather(*(peer.run(share, pace) for peer, share in runs))
        problems = [p for result in results for p in result]
        for (peer, share), result in zip(runs, results, strict=True):
            self.stats.add(share, peer, result)
        return problems

    async def legit_step(self) -> None:
        """The legitimate controller schedules one more prompt, as a director would during a fuzz."""
        timestamp, prompt = self._next_frame, f"legit prompt at {self._next_frame}"
        self._next_frame += 30
        reply = await self.legit.request("schedule_prompt", new_prompt=prompt, timestamp=timestamp)
        assert reply["type"] == "ack", reply
        self.prompts[timestamp] = prompt

    async def server_state(self) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession(headers=headers) as http, http.get(f"{self.url}/sessions/{self.session}") as r:
            assert r.status == 200, await r.text()
            return (await r.json())["state"]

    async def schedule_problems(self) -> list[str]:
        """What differs between the server's schedule and what the legitimate controller made."""
        state = await self.server_state()
        scheduled = {entry["timestamp"]: entry["prompt"] for entry in state["scheduled"]}
        problems = [] if scheduled == self.prompts else [f"schedule changed: {scheduled} != {self.prompts}"]
        if state["status"] != "running":
            problems.append(f"the stream is {state['status']}")
        return problems

    async def unanswered(self, settle: float = 1.0) -> list[str]:
        """Peers that got more or fewer replies than messages sent (after ``settle`` seconds)."""
        await asyncio.sleep(settle)
        return [f"peer {i}: {p.sent} messages, {len(p.replies)} replies"
                for i, p in enumerate(self.fuzzers) if len(p.replies) != p.sent]  # fmt: skip

    async def close(self) -> None:
        for peer in [*self.fuzzers, self.legit]:
            await peer.close()
        await self.viewer.close()
