"""Hypothesis fuzz of every HTTP route (issue #19): hostile paths, credentials, content types, bodies and
mangled SDP offers against a real token-mode server with a live session. Never a 5xx (but 503 with
Retry-After), every refusal a JSON body, no server error logged. Sized for about a minute."""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings

from longlive_rtc.generators import Geometry
from longlive_rtc.rtc.hub import HubConfig
from signaling.auth import Auth

from .fuzz_stage import ChannelPeer, LoopThread
from .hostile_http import SESSION, HttpCase, Targets, http_cases, judge, route_templates, send
from .rtc_client import Server, real_offer

pytestmark = [
    pytest.mark.timeout(400),
    # aiortc uses the random module in the loop thread while hypothesis draws in this one
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

EXAMPLES = 6000
API_KEY = "fuzz-api-key-0123456789"
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


class HttpFuzz:
    """One server, its fuzzed session and a connected viewer; runs cases and tallies the answers."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        config = HubConfig(max_sessions=4, connect_timeout=2.0)
        self.server = Server(config, geometry=Geometry(width=320, height=192), auth=Auth("token", api_key=API_KEY))
        self.statuses: Counter = Counter()
        self.routes_hit: Counter = Counter()
        self.by_route: Counter = Counter()

    async def open(self) -> None:
        await self.server.__aenter__()
        self.http = aiohttp.ClientSession()
        self.targets = Targets(self.server.url, API_KEY, await real_offer())
        await self.targets.ensure_session(self.http)
        self.viewer = ChannelPeer()
        joined = await self.viewer.connect(self.server.url, SESSION, "viewer", self.targets.tokens["viewer"])
        self.targets.peer = joined["peer"]
        self.routes = route_templates(self.server.runner.app)

    async def case(self, case: HttpCase) -> str | None:
        status, content_type, headers, body = await send(self.http, self.server.url, case)
        self.statuses[status] += 1
        self.routes_hit[(case.method, case.template)] += 1
        self.by_route[(case.method, case.template, status)] += 1
        if content_type == "application/json" and body:
            with contextlib.suppress(ValueError):
                self.targets.learn(case, json.loads(body))
        await self.targets.cleanup(self.http)
        await self.targets.ensure_session(self.http)
        return judge(case, status, content_type, headers, body)

    async def close(self) -> None:
        await self.viewer.close()
        await self.http.close()
        await self.server.__aexit__(None, None, None)


def test_every_route_answers_hostile_requests_without_a_5xx_and_with_json_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    loop = LoopThread()
    fuzz = HttpFuzz(loop)
    try:
        loop.run(fuzz.open())

        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=SLOW)
        @given(case=http_cases(fuzz.routes, fuzz.targets))
        def run(case: HttpCase) -> None:
            problem = loop.run(fuzz.case(case))
            assert problem is None, problem

        run()
        print(f"\nHTTP fuzz: {sum(fuzz.statuses.values())} cases, statuses {dict(fuzz.statuses)}")
        assert len(fuzz.routes_hit) >= len(fuzz.routes) * 0.8, sorted(set(fuzz.routes) - set(fuzz.routes_hit))
        assert sum(n for s, n in fuzz.statuses.items() if s < 300) >= 10, fuzz.statuses  # some got all the way
    finally:
        loop.run(fuzz.close())
        loop.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors[:5]]
