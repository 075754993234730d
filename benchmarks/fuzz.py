"""The reliability fuzz at scale, against a real ``serve`` process (synthetic generator, token mode).

Data channel: hostile controllers of a running session send >= ``--messages`` hypothesis-drawn messages
(each under its command budget, with bursts) while its legitimate controller keeps scheduling and a viewer
receives the video; every message must get exactly one acceptable reply. HTTP: >= ``--http`` hypothesis
cases over every route (the same strategies as tests/test_fuzz_http.py). Reports server tracebacks, 5xx,
replies per message, whether the legitimate schedule is intact, and the viewer's fps.

    python benchmarks/fuzz.py --messages 10000 --http 1000 --json fuzz.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fuzz helpers

import aiohttp  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import HypothesisDeprecationWarning  # noqa: E402

from benchmarks.server_process import ServerProcess, report  # noqa: E402
from longlive_rtc.rtc.hub import Hub  # noqa: E402
from signaling.app import create_app  # noqa: E402
from signaling.auth import Auth  # noqa: E402
from tests.fuzz_stage import LoopThread, Stage, fps  # noqa: E402
from tests.hostile_http import HttpCase, Targets, http_cases, judge, route_templates, send  # noqa: E402
from tests.hostile_messages import Batch, batches  # noqa: E402
from tests.rtc_client import real_offer  # noqa: E402

API_KEY = "fuzz-benchmark-api-key-0123"
QUICK = settings(deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))


def channel_fuzz(loop: LoopThread, stage: Stage, messages: int, fuzzers: int) -> dict:
    """Hypothesis batches dealt to the hostile peers until ``messages`` were sent."""
    began = time.monotonic()
    batches_done = 0

    @settings(QUICK, max_examples=300)
    @given(batch=batches(max_size=20 * fuzzers, burst_size=200))
    def step(batch: Batch) -> None:
        nonlocal batches_done
        if stage.stats.messages >= messages:
            return
        batches_done += 1
        if batches_done % 10 == 0:
            loop.run(stage.legit_step())
        loop.run(stage.fuzz(batch), timeout=300)

    while stage.stats.messages < messages:
        step()
        print(f"  {stage.stats.messages} messages, {len(stage.stats.problems)} problems", flush=True)
    unanswered = loop.run(stage.unanswered(settle=2.0))
    stats = stage.stats
    return {
        "messages": stats.messages, "bursts": stats.bursts, "batches": batches_done,
        "seconds": round(time.monotonic() - began, 1),
        "replies": sum(len(p.replies) for p in stage.fuzzers), "sent": sum(p.sent for p in stage.fuzzers),
        "replies_per_message": round(sum(len(p.replies) for p in stage.fuzzers) / max(1, stats.messages), 4),
        "unanswered": unanswered, "problems": stats.problems[:20], "problem_count": len(stats.problems),
        "codes": dict(stats.codes.most_common()), "kinds": dict(stats.kinds.most_common()),
        "schedule_problems": loop.run(stage.schedule_problems()), "legit_prompts": len(stage.prompts),
    }  # fmt: skip


def http_fuzz(loop: LoopThread, url: str, cases: int, keep: set[str]) -> dict:
    """``cases`` hypothesis HTTP cases over every route (sessions they create are freed after each)."""
    routes = route_templates(create_app(Hub(lambda: None), Auth("token", api_key=API_KEY)))
    http = loop.run(_client())
    targets = Targets(url, API_KEY, loop.run(real_offer()), keep=keep)
    loop.run(targets.ensure_session(http))
    statuses: Counter = Counter()
    problems: list[str] = []
    began = time.monotonic()

    async def one(case: HttpCase) -> None:
        status, content_type, headers, body = await send(http, url, case)
        statuses[status] += 1
        if content_type == "application/json" and body:
            with contextlib.suppress(ValueError):
                targets.learn(case, json.loads(body))
        await targets.cleanup(http)
        await targets.ensure_session(http)
        problem = judge(case, status, content_type, headers, body)
        if problem:
            problems.append(problem)

    @settings(QUICK, max_examples=cases)
    @given(case=http_cases(routes, targets))
    def step(case: HttpCase) -> None:
        loop.run(one(case))

    step()
    loop.run(http.close())
    return {
        "cases": sum(statuses.values()), "seconds": round(time.monotonic() - began, 1), "routes": len(routes),
        "statuses": dict(sorted(statuses.items())), "server_errors": sum(n for s, n in statuses.items() if s >= 500
                                                                         and s != 503),
        "problems": problems[:20], "problem_count": len(problems),
    }  # fmt: skip


async def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="hostile data-channel messages")
    parser.add_argument("--http", type=int, default=1000, help="hostile HTTP cases")
    parser.add_argument("--fuzzers", type=int, default=6, help="hostile data-channel peers (each has its budget)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    # aiortc uses the random module in the loop thread while hypothesis draws in this one
    warnings.filterwarnings("ignore", category=HypothesisDeprecationWarning)
    limits = ["--rate-limit", "6000", "--rate-burst", "1000"]  # the harness's own requests come from one address
    with ServerProcess("--max-sessions", "3", *limits, api_key=API_KEY) as server:
        rss_start = server.rss_mb()
        loop = LoopThread()
        stage = Stage(server.url, token=API_KEY)
        loop.run(stage.open(fuzzers=args.fuzzers))
        began = time.monotonic()
        print(f"data channel: {args.messages} messages over {args.fuzzers} peers", flush=True)
        channel = channel_fuzz(loop, stage, args.messages, args.fuzzers)
        channel_fps = fps([f.at for f in stage.viewer.frames], began)
        print(f"HTTP: {args.http} cases", flush=True)
        http_began = time.monotonic()
        http = http_fuzz(loop, server.url, args.http, keep={stage.session})
        frames = [f.at for f in stage.viewer.frames]
        http_fps, whole_fps = fps(frames, http_began), fps(frames, began)
        schedule_after = loop.run(stage.schedule_problems())
        loop.run(stage.close())
        loop.close()
        results = {
            "channel": channel, "http": http,
            "viewer": {"fps_mean": round(whole_fps[0], 2), "fps_lowest_5s": round(whole_fps[1], 2),
                       "channel_phase": [round(x, 2) for x in channel_fps],
                       "http_phase": [round(x, 2) for x in http_fps]},
            "schedule_problems_at_end": schedule_after,
            "server": server.summary(rss_start_mb=round(rss_start, 1), rss_end_mb=round(server.rss_mb(), 1)),
        }  # fmt: skip
    return report(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
