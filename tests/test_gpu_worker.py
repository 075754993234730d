"""Several LongLive sessions on one worker (shared weights), on tiny random models (CPU)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import numpy as np
import pytest
import torch

from longlive_rtc import bench
from longlive_rtc.bench import bench_sessions
from longlive_rtc.generators import base, gpu_worker
from longlive_rtc.generators.base import Generator
from longlive_rtc.generators.gpu_worker import START_GRACE, DeviceHung, GpuWorker, WorkerSession
from longlive_rtc.generators.longlive import LongLiveGenerator
from longlive_rtc.model.graphs import ForwardGraphs
from longlive_rtc.session import Role, Session

from .support import EventLog, rerun
from .test_longlive_generator import tiny_longlive

#: (seed, prompts by block: a switch where the prompt changes, None = reset then begin again)
PLANS = {
    "a": (3, ["fox", "fox", "fox", "lake", "lake", "lake", "sky", "sky"]),
    "b": (8, ["city", "rain", None, "city", "city", "night", "night", "night"]),
}


def record_latents(stream: LongLiveGenerator) -> list[torch.Tensor]:
    latents: list[torch.Tensor] = []
    next_block = stream.pipeline.next_block

    def recorded() -> torch.Tensor:
        x0 = next_block()
        latents.append(x0.clone())
        return x0

    stream.pipeline.next_block = recorded  # type: ignore[method-assign]
    return latents


def play(generator: Generator, seed: int, plan: list[str | None], after_block=None) -> list[np.ndarray]:
    """Stream the plan: begin with its first prompt, switch where it changes, reset and begin on None."""
    blocks, current = [], None
    for i, prompt in enumerate(plan):
        if prompt is None:
            generator.reset()
            current = None
            prompt = plan[i + 1]
        if current is None:
            generator.begin(seed, generator.encode_prompt(prompt))
        elif prompt != current:
            generator.switch_prompt(generator.encode_prompt(prompt))
        current = prompt
        blocks.append(generator.next_block())
        if after_block is not None:
            after_block(i)
    generator.reset()
    return blocks


def alone(name: str) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    generator = tiny_longlive("tae")
    latents = record_latents(generator)
    return play(generator, *PLANS[name]), latents


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "graphs"])
def test_sessions_interleaved_give_exactly_what_each_gives_alone(graphs: bool) -> None:
    """Also with each session's DiT calls replayed (its own graphs, forked from the template's: CPU replays run
    the call again on the static inputs, see test_model_graphs.py)."""
    want = {name: alone(name) for name in PLANS}
    template = tiny_longlive("tae")
    if graphs:
        template.pipeline.graphs = ForwardGraphs(template.pipeline.model, capture=rerun)
    worker = GpuWorker(template)
    try:
        handles = {name: worker.session() for name in PLANS}
        assert all(isinstance(h, Generator) for h in handles.values())
        latents = {name: record_latents(h.stream) for name, h in handles.items()}
        got: dict[str, list[np.ndarray]] = {}
        turns = {name: threading.Semaphore(0) for name in PLANS}

        def run(name: str, other: str) -> None:
            def hand_over(_: int) -> None:  # strict alternation block by block: the streams interleave
                turns[other].release()
                turns[name].acquire(timeout=30)

            got[name] = play(handles[name], *PLANS[name], after_block=hand_over)
            turns[other].release()

        threads = [threading.Thread(target=run, args=pair) for pair in (("a", "b"), ("b", "a"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert worker.requests > 2 * 8
        for name in PLANS:
            frames, x0 = want[name]
            assert len(got[name]) == len(frames) == 8
            assert all(np.array_equal(g, w) for g, w in zip(got[name], frames, strict=True)), name
            assert len(latents[name]) == len(x0)
            assert all(torch.equal(g, w) for g, w in zip(latents[name], x0, strict=True)), name
        assert not torch.equal(latents["a"][0], latents["b"][0])  # the two streams really differ
        if graphs:
            assert all(h.pipeline.graphs.replays > 0 for h in handles.values())
            assert len({id(h.pipeline.graphs) for h in handles.values()}) == 2
    finally:
        worker.close()


def test_sessions_share_the_weights_and_keep_their_own_state() -> None:
    template = tiny_longlive("wan")
    worker = GpuWorker(template)
    try:
        one, two = worker.session(), worker.session()
        assert one.pipeline.model is two.pipeline.model is template.pipeline.model
        assert one.decoder.model is two.decoder.model is template.decoder.model
        one.begin(1, one.encode_prompt("x"))
        one.next_block()
        assert one.pipeline.cache is not None and two.pipeline.cache is None
        assert one.decoder.state is not two.decoder.state and one.pipeline.noise is not two.pipeline.noise
        two.begin(2, two.encode_prompt("y"))
        assert one.pipeline.cache is not two.pipeline.cache
        assert (one.pipeline.current_start_frame, two.pipeline.current_start_frame) == (3, 0)
        one.reset()
        assert one.pipeline.cache is None and two.pipeline.cache is not None
    finally:
        worker.close()


def test_a_fork_keeps_the_settings_not_the_instance_wrappers() -> None:
    generator = tiny_longlive("tae")
    pipeline = generator.pipeline
    pipeline.global_sink, pipeline.context_noise = False, 0.25
    pipeline._step = None  # type: ignore[assignment]  # e.g. a profiler's wrapper
    pipeline.begin(0, generator.encode_prompt("p"))
    fork = pipeline.fork()
    assert (fork.global_sink, fork.context_noise, fork.sampler) == (False, 0.25, pipeline.sampler)
    assert fork._step is not None and fork.cache is None and fork.noise is not pipeline.noise
    assert type(fork.noise) is type(pipeline.noise)


def test_a_failing_request_fails_its_caller_only() -> None:
    worker = GpuWorker(tiny_longlive("tae"))
    try:
        broken, fine = worker.session(), worker.session()
        with pytest.raises(RuntimeError, match="begin"):
            broken.next_block()  # never begun
        fine.begin(0, fine.encode_prompt("ok"))
        assert len(fine.next_block()) == 9
    finally:
        worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        fine.encode_prompt("late")


def test_the_warm_up_runs_on_the_workers_own_thread() -> None:
    """PyTorch keeps cuDNN's tuned convolution plans per thread: warmed up elsewhere, the Wan VAE's first blocks
    on the worker autotuned again (1.3-1.5 s each on an H200: stalls at every stream's start)."""
    worker = GpuWorker(tiny_longlive("wan"))
    threads: set[str] = set()
    try:
        assert worker.warm_up(report=lambda line: threads.add(threading.current_thread().name)) > 0
    finally:
        worker.close()
    assert threads == {"longlive-gpu"}


def test_serve_streams_longlive_on_a_gpu_worker_warmed_up_there(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --devices, LongLive's sessions are streams on one GPU worker in a pool of its one --device: a
    freed session's stream serves the next one, and the pool's report (/health) shows the worker hung."""
    from longlive_rtc import cli
    from longlive_rtc.rtc.hub import HubConfig

    warm_flags: list[bool] = []  # the full-size model stands in for a tiny one; the rest is serve's own path
    monkeypatch.setattr(cli, "build_generator", lambda args, warm=True: warm_flags.append(warm) or tiny_longlive())
    args = cli.build_parser().parse_args(["serve", "--generator", "longlive", "--random-weights", "--device", "cpu",
                                          "--max-sessions", "2"])  # fmt: skip
    config = HubConfig()
    pool = cli.device_pool(args, config)
    session = pool()
    worker = session.inner.worker
    try:
        assert isinstance(session.inner, WorkerSession) and warm_flags == [False]  # not warmed up here
        assert "warm-up done in" in capsys.readouterr().out
        assert config.max_sessions == 2 and pool.report()[0] | {"error": None} == {
            "device": "cpu", "state": "ok", "slots": 2, "sessions": 1, "error": None}  # fmt: skip
        pool.release(session)
        assert pool() is session
        prompt = session.encode_prompt("p")
        worker.hung = "the device hung: a request has run for over 120 s"  # as GpuWorker._check_moving sets it
        with pytest.raises(DeviceHung):
            session.begin(0, prompt)
        assert [d["state"] for d in pool.report()] == ["failed"] and "hung" in pool.report()[0]["error"]
    finally:
        worker.close()


def record_deadlines(worker: GpuWorker) -> list[float | None]:
    """The deadline of every request made to ``worker`` from now on, in order (the requests still run)."""
    deadlines: list[float | None] = []
    call = worker.call

    def recorded(fn, *args, deadline=None, owner=None):
        deadlines.append(deadline)
        return call(fn, *args, deadline=deadline, owner=owner)

    worker.call = recorded  # type: ignore[method-assign]
    return deadlines


def test_a_session_back_from_a_pause_is_not_forever_due_at_once() -> None:
    """Deadlines count from a continuous playback; after a pause they count from the resume."""
    worker = GpuWorker(tiny_longlive("tae"))
    deadlines = record_deadlines(worker)
    try:
        session = WorkerSession(worker, worker.template.fork(), fps=5.0)  # block 0: 1.8 s, then 2.4 s each
        session.begin(0, session.encode_prompt("p"))
        session.next_block()
        time.sleep(3.0)  # paused: a continuous playback would have run out of frames 1.2 s ago
        deadlines.clear()
        resumed = time.monotonic()
        session.next_block()  # due at once: its buffer ran dry
        before_third = time.monotonic()
        session.next_block()
        second, third = deadlines
        assert second is not None and resumed <= second <= before_third
        assert third is not None and third - second == pytest.approx(2.4, abs=0.01), "12 frames after the resume"
    finally:
        worker.close()


def test_a_cpu_text_encoder_does_not_hold_up_the_device() -> None:
    """With the encoder on the CPU (``--t5-device cpu``) a prompt encodes on the session's thread."""
    worker = GpuWorker(tiny_longlive("tae"))
    gate = threading.Event()
    busy = threading.Thread(target=worker.call, args=(gate.wait, 10))  # another session's long block
    busy.start()
    try:
        session = WorkerSession(worker, worker.template.fork())
        assert session.stream.encodes_on_cpu
        encoded: list[torch.Tensor] = []
        encoding = threading.Thread(target=lambda: encoded.append(session.encode_prompt("p")))
        encoding.start()
        encoding.join(10)
        assert encoded and not gate.is_set(), "encoded while the device was busy"
    finally:
        gate.set()
        busy.join()
        worker.close()


def test_the_worker_serves_the_earliest_deadline_first() -> None:
    worker = GpuWorker(tiny_longlive("tae"))
    gate, order = threading.Event(), []
    try:
        blocker = threading.Thread(target=worker.call, args=(gate.wait,))
        blocker.start()
        while worker.requests < 1:  # the worker is busy with the blocker
            time.sleep(0.01)
        now = time.monotonic()
        threads = [
            threading.Thread(target=worker.call, args=(order.append, name), kwargs={"deadline": now + due})
            for name, due in (("late", 3.0), ("first", 1.0), ("second", 2.0))
        ]
        for thread in threads:
            thread.start()
        while len(worker._queue) < 3:
            time.sleep(0.01)
        gate.set()
        for thread in [blocker, *threads]:
            thread.join(10)
        assert order == ["first", "second", "late"]
    finally:
        gate.set()
        worker.close()


def test_a_block_is_due_when_the_sessions_playback_would_run_out() -> None:
    worker = GpuWorker(tiny_longlive("tae"))
    deadlines = record_deadlines(worker)
    try:
        session = WorkerSession(worker, worker.template.fork(), fps=1.0)  # a slow playback: far deadlines
        session.begin(0, session.encode_prompt("p"))
        deadlines.clear()
        asked = time.monotonic()
        session.next_block()
        delivered = time.monotonic()
        session.next_block()
        session.switch_prompt(session.encode_prompt("q"))  # runs with the block (see the test below)
        session.next_block()
        first, second, third = deadlines
        assert first is not None and asked + START_GRACE <= first <= delivered + START_GRACE
        assert second is not None and third is not None
        assert delivered < second <= delivered + 9.0 and third - second == pytest.approx(12.0)
    finally:
        worker.close()


def test_a_prompt_change_runs_in_the_same_turn_as_the_block_it_is_for() -> None:
    """No other session's request runs between a switch's recache and its block (it would make it late)."""
    worker = GpuWorker(tiny_longlive("tae"))
    try:
        session = WorkerSession(worker, worker.template.fork())
        session.begin(0, session.encode_prompt("p"))
        session.next_block()
        turns: list[tuple[str, int]] = []
        for name in ("switch_prompt", "cut", "set_prompt", "launch_block"):
            method = getattr(session.stream, name)
            setattr(session.stream, name, lambda *a, m=method, n=name: (turns.append((n, worker.requests)), m(*a))[1])
        prompt = session.encode_prompt("q")
        before = worker.requests
        session.switch_prompt(prompt)
        assert turns == [] and worker.requests == before, "nothing runs until the block is asked for"
        session.next_block()
        session.cut(prompt)
        session.set_prompt(prompt)
        session.next_block()
        names = [name for name, _ in turns]
        assert names == ["switch_prompt", "launch_block", "cut", "set_prompt", "launch_block"]
        assert turns[0][1] == turns[1][1] and turns[2][1] == turns[3][1] == turns[4][1], "one request each"
        session.switch_prompt(prompt)
        session.reset()  # a change still pending is dropped with the stream
        session.begin(1, prompt)
        session.next_block()
        assert [name for name, _ in turns[5:]] == ["launch_block"]
    finally:
        worker.close()


def test_frames_never_shown_bring_the_next_blocks_deadline_forward() -> None:
    """A live prompt's block replaced 5 queued frames: the frames after them air 5 frames sooner."""
    worker = GpuWorker(tiny_longlive("tae"))
    deadlines = record_deadlines(worker)
    try:
        session = WorkerSession(worker, worker.template.fork(), fps=1.0)
        session.begin(0, session.encode_prompt("p"))
        session.next_block()
        deadlines.clear()
        session.next_block()
        session.skip_frames(5)
        session.next_block()
        second, third = deadlines
        assert third - second == pytest.approx(12.0 - 5.0)
    finally:
        worker.close()


def test_a_stream_sharing_the_device_holds_its_first_frame_for_the_other_streams_blocks(monkeypatch) -> None:
    """With another stream on the device, its next block runs before this one's second: the lead is one of
    this stream's block times per other stream, and nothing alone."""
    monkeypatch.setattr(gpu_worker, "IDLE_AFTER", 600.0)  # a loaded machine's pauses never make one idle here
    worker = GpuWorker(tiny_longlive("tae"))
    try:
        first, second = (WorkerSession(worker, worker.template.fork()) for _ in range(2))
        first.begin(0, first.encode_prompt("p"))
        asked = time.monotonic()
        first.next_block()
        took = time.monotonic() - asked
        assert base.start_lead(first) == 0.0 and not base.shares_device(first), "alone on the device"
        second.begin(1, second.encode_prompt("q"))
        assert 0.0 < base.start_lead(first) <= took, "one other stream: one block time"
        assert base.shares_device(first) and base.shares_device(second)
        second.next_block()
        assert base.start_lead(second) > 0.0
        second.reset()
        assert base.start_lead(first) == 0.0 and not base.shares_device(first), "the other stream ended"
    finally:
        worker.close()


def test_a_stream_whose_block_failed_no_longer_counts_and_an_idle_one_keeps_only_the_lead(monkeypatch) -> None:
    """A failed block ends that stream on the device at once. A paused one stops sharing the device (live prompts
    may skip frames again) ``IDLE_AFTER`` after its last block, but the others keep their start lead: it may
    resume at any moment, and its block then runs before theirs."""
    monkeypatch.setattr(gpu_worker, "IDLE_AFTER", 600.0)
    worker = GpuWorker(tiny_longlive("tae"))
    try:
        first, second = (WorkerSession(worker, worker.template.fork()) for _ in range(2))
        for seed, session in enumerate((first, second)):
            session.begin(seed, session.encode_prompt("p"))
            session.next_block()
        assert base.shares_device(first) and base.start_lead(first) > 0.0
        second.switch_prompt(torch.zeros(2, 4, 8))  # a prompt of the wrong batch size: its block fails
        with pytest.raises(ValueError, match="batch size"):
            second.next_block()
        assert not base.shares_device(first) and base.start_lead(first) == 0.0, "the failed stream still counts"
        second.begin(5, second.encode_prompt("q"))
        second.next_block()
        assert base.shares_device(first) and base.start_lead(first) > 0.0, "a stream begun again counts again"
        monkeypatch.setattr(gpu_worker, "IDLE_AFTER", 0.05)
        time.sleep(0.1)  # neither asks for a block: both are idle (paused)
        assert not base.shares_device(first) and not base.shares_device(second)
        assert base.start_lead(first) > 0.0 and base.start_lead(second) > 0.0, "a paused stream may resume"
        first.next_block()
        assert base.shares_device(second), "the active one counts again"
        assert not base.shares_device(first), "the idle one does not"
    finally:
        worker.close()


def test_a_starting_stream_yields_to_the_block_a_playing_session_needs_first(monkeypatch) -> None:
    """A new stream's first block waits for a playing session's block due within ``START_GRACE``."""
    monkeypatch.setattr(gpu_worker, "START_GRACE", 30.0)  # far more than a loaded machine's thread delays
    worker = GpuWorker(tiny_longlive("tae"))
    gate, order = threading.Event(), []
    playing, starting = (WorkerSession(worker, worker.template.fork(), fps=15.0) for _ in range(2))
    for name, session in (("playing", playing), ("starting", starting)):
        launch = session.stream.launch_block
        session.stream.launch_block = lambda launch=launch, name=name: (order.append(name), launch())[1]
    try:
        playing.begin(0, playing.encode_prompt("p"))
        playing.next_block()  # on air: its next block is due 9 frames (0.6 s) after this one came
        starting.begin(1, starting.encode_prompt("q"))
        order.clear()
        blocker = threading.Thread(target=worker.call, args=(gate.wait,))
        blocker.start()
        while worker.requests < 4:  # begin, block, begin, and now the blocker
            time.sleep(0.01)
        threads = [threading.Thread(target=session.next_block) for session in (starting, playing)]
        for thread in threads:
            thread.start()
            while len(worker._queue) < threads.index(thread) + 1:  # queued in this order
                time.sleep(0.01)
        gate.set()
        for thread in [blocker, *threads]:
            thread.join(30)
        assert order == ["playing", "starting"]
    finally:
        gate.set()
        worker.close()


@pytest.mark.parametrize("fps, misses", [(1e-3, 0), (1e9, 2 * 7)])
def test_bench_sessions_counts_deadline_misses(fps: float, misses: int, monkeypatch) -> None:
    monkeypatch.setattr(bench, "start_lead", lambda generator: 0.0)  # playbacks from each first block
    worker = GpuWorker(tiny_longlive("tae"))
    try:
        result = bench_sessions(worker, sessions=2, blocks=8, runs=1, fps=fps)
    finally:
        worker.close()
    assert result["sessions"] == 2 and result["deadline_misses"] == misses
    assert len(result["runs"][0]["fps_per_session"]) == 2 and result["min_session_fps"] > 0
    assert result["block_p95_ms"] >= result["block_p50_ms"] > 0
    for session in result["runs"][0]["per_session"]:  # which blocks were late, and by how much at most
        assert session["late_blocks"] == (list(range(1, 8)) if misses else [])
        assert (session["latest_ms"] > 0) == bool(misses)


def test_bench_sessions_takes_medians_over_an_even_number_of_runs_and_reports_the_start_lead() -> None:
    worker = GpuWorker(tiny_longlive("tae"))
    try:
        result = bench_sessions(worker, sessions=2, blocks=7, runs=2, fps=15.0)
    finally:
        worker.close()
    runs = result["runs"]
    assert len(result["fps_per_session"]) == 2 and len(runs) == 2
    for i, fps in enumerate(result["fps_per_session"]):
        assert fps == pytest.approx((runs[0]["fps_per_session"][i] + runs[1]["fps_per_session"][i]) / 2)
    leads = [session["start_lead_s"] for run in runs for session in run["per_session"]]
    assert all(lead > 0 for lead in leads), "two streams on the device: each first frame waits for the other"


@pytest.mark.gpu
def test_two_full_size_sessions_on_one_gpu_equal_each_alone() -> None:
    """bf16, eager: two sessions interleaved on the worker (decodes overlapping the other's DiT) give the
    latents and frames of each stream alone, bit for bit."""
    from longlive_rtc.generators.longlive import random_longlive

    template = random_longlive("cuda", "tae")
    plans = {"a": (3, ["fox", "fox", "lake", "lake"]), "b": (8, ["city", "city", "city", "rain"])}
    want = {}
    for name, (seed, plan) in plans.items():
        stream = template.fork()
        latents = record_latents(stream)
        want[name] = (play(stream, seed, plan), latents)
    worker = GpuWorker(template)
    try:
        handles = {name: worker.session() for name in plans}
        latents = {name: record_latents(h.stream) for name, h in handles.items()}
        got: dict[str, list[np.ndarray]] = {}
        threads = [
            threading.Thread(target=lambda n=name: got.__setitem__(n, play(handles[n], *plans[n]))) for name in plans
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        worker.close()
    for name in plans:
        frames, x0 = want[name]
        assert all(np.array_equal(g, w) for g, w in zip(got[name], frames, strict=True)), name
        assert all(torch.equal(g, w) for g, w in zip(latents[name], x0, strict=True)), name


def command(session: Session, kind: str, **data) -> None:
    replies: list = []
    session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
    assert [r.type for r in replies] == ["ack"], [r.to_dict() for r in replies]


def start(session: Session, schedule: list[tuple[int, str]], seed: int) -> None:
    for timestamp, prompt in schedule:
        command(session, "schedule_prompt", new_prompt=prompt, timestamp=timestamp)
    command(session, "set_seed", seed=seed)
    command(session, "start")


async def pull(session: Session, frames: dict[int, np.ndarray]) -> None:
    item = session.engine.next_frame()
    if item.image is not None and item.index is not None:
        frames[item.index] = item.image
    await asyncio.sleep(0.002)


A_SCHEDULE = [(0, "first"), (3, "second"), (7, "third")]
WANT_FRAMES = 9 + 12 * 4


async def test_engines_on_one_worker_stream_undisturbed_by_each_other() -> None:
    """Session A streams through its engine while session B on the same worker pauses, resets and starts
    again: A's frames equal A's alone, frame by frame."""
    alone = Session("alone", tiny_longlive("tae"))
    alone.join(Role.CONTROLLER, EventLog())
    want: dict[int, np.ndarray] = {}
    try:
        start(alone, A_SCHEDULE, seed=5)
        for _ in range(4000):
            if len(want) >= WANT_FRAMES:
                break
            await pull(alone, want)
    finally:
        alone.close()
    assert len(want) >= WANT_FRAMES

    worker = GpuWorker(tiny_longlive("tae"))
    a, b = Session("a", worker.session()), Session("b", worker.session())
    b_log = EventLog()
    for session, log in ((a, EventLog()), (b, b_log)):
        session.join(Role.CONTROLLER, log)
    got: dict[int, np.ndarray] = {}
    b_frames: dict[int, np.ndarray] = {}
    try:
        start(b, [(0, "other")], seed=9)
        start(a, A_SCHEDULE, seed=5)
        steps = iter([(12, "pause"), (24, "reset"), (36, "restart")])
        at, action = next(steps)
        restarted = 0
        for _ in range(4000):
            if len(got) >= WANT_FRAMES:
                break
            await pull(a, got)
            await pull(b, b_frames)
            if action and len(got) >= at:
                if action == "restart":
                    restarted = b_log.mark()
                    start(b, [(0, "again")], seed=2)
                else:
                    command(b, action)
                at, action = next(steps, (0, None))
        assert action is None and len(got) >= WANT_FRAMES
        assert all(np.array_equal(got[i], want[i]) for i in range(WANT_FRAMES))
        await b_log.wait_for(lambda e: e.type == "progress", since=restarted)  # B streams again
    finally:
        a.close()
        b.close()
        worker.close()
    assert b_frames  # B streamed before its pause


async def test_a_closing_session_drops_its_queued_gpu_work_and_the_others_stream_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session freed while its request waits behind another's block: that request never runs (only the
    reset that clears its state does), and its generator serves the next session."""
    from longlive_rtc import engine

    monkeypatch.setattr(engine, "CLOSE_WAIT", 0.05)  # close does not wait for the reset behind the block
    worker = GpuWorker(tiny_longlive("tae"))
    gate, held = threading.Event(), threading.Event()
    busy = threading.Thread(target=worker.call, args=(lambda: (held.set(), gate.wait(20)),))  # another's block
    closing, other = worker.session(), worker.session()
    began: list[int] = []
    real_begin = closing.stream.begin
    closing.stream.begin = lambda seed, prompt: (began.append(seed), real_begin(seed, prompt))  # type: ignore
    a, b = Session("a", closing), Session("b", other)
    for session in (a, b):
        session.join(Role.CONTROLLER, EventLog())
    try:
        busy.start()
        assert await asyncio.to_thread(held.wait, 10)
        start(a, [(0, "dropped")], seed=4)
        while not any(request.owner is closing for request in worker._queue):  # a's begin waits behind the block
            await asyncio.sleep(0.01)
        a.close()
        gate.set()
        await asyncio.wait_for(asyncio.to_thread(a.engine.wait_closed), 20)
        start(b, [(0, "on")], seed=1)
        frames: dict[int, np.ndarray] = {}
        for _ in range(4000):
            if len(frames) >= 9:
                break
            await pull(b, frames)
        assert len(frames) >= 9, "the other session streams"
        assert began == [], "the closed session's begin never ran"
        closing.begin(2, closing.encode_prompt("reused"))  # the next session handed this generator
        assert len(closing.next_block()) == 9 and began == [2]
    finally:
        gate.set()
        a.close()
        b.close()
        busy.join(10)
        worker.close()


def test_a_dropped_request_of_a_pooled_session_does_not_fail_its_device() -> None:
    from longlive_rtc.generators.base import CallCancelled, cancel_pending
    from longlive_rtc.generators.devices import DevicePool

    worker = GpuWorker(tiny_longlive("tae"))
    pool = DevicePool(["cpu"], slots=2, opener=lambda _name: worker.session)
    gate, held = threading.Event(), threading.Event()
    busy = threading.Thread(target=worker.call, args=(lambda: (held.set(), gate.wait(20)),))
    try:
        placed = pool()
        prompt = placed.encode_prompt("p")  # the tiny model's encoder runs on the CPU: not queued
        busy.start()
        assert held.wait(10)
        errors: list[BaseException] = []

        def begin() -> None:
            try:
                placed.begin(0, prompt)
            except BaseException as exc:
                errors.append(exc)

        caller = threading.Thread(target=begin)
        caller.start()
        while not worker._queue:
            time.sleep(0.01)
        cancel_pending(placed)  # what a closing engine does
        caller.join(10)
        assert len(errors) == 1 and isinstance(errors[0], CallCancelled), errors
        assert [d["state"] for d in pool.report()] == ["ok"], "a dropped call is the session's, not the device's"
        gate.set()
        placed.begin(1, prompt)
        assert len(placed.next_block()) == 9
    finally:
        gate.set()
        busy.join(10)
        worker.close()


def test_a_hung_device_fails_its_waiting_and_later_requests_and_its_pooled_device() -> None:
    """A request that never ends (a kernel that hangs) no longer hangs every session on the device."""
    from longlive_rtc.generators.devices import DevicePool
    from longlive_rtc.generators.gpu_worker import DeviceHung

    worker = GpuWorker(tiny_longlive("tae"), stuck_after=0.3)
    pool = DevicePool(["cpu"], slots=2, opener=lambda _name: worker.session)
    release = threading.Event()
    try:
        assert worker.warm_up(report=lambda _line: time.sleep(0.2)) > 0, "the warm-up may take its time"
        placed = pool()
        prompt = placed.encode_prompt("p")

        def hang() -> None:
            with contextlib.suppress(DeviceHung):  # its caller gives up too
                worker.call(release.wait, 30)

        stuck = threading.Thread(target=hang)
        stuck.start()
        while worker.requests < 2:  # the warm-up, then the hung request
            time.sleep(0.01)
        began = time.monotonic()
        with pytest.raises(DeviceHung, match="hung"):
            placed.begin(0, prompt)  # waits behind the hung request, then gives up
        assert time.monotonic() - began < 20
        assert [d["state"] for d in pool.report()] == ["failed"] and "hung" in pool.report()[0]["error"]
        with pytest.raises(DeviceHung):
            worker.call(len, "refused at once")
    finally:
        release.set()
        worker.close()


class NeverDone:
    """A CUDA event of a copy that never finishes (what a hung device leaves a collecting session with)."""

    def query(self) -> bool:
        return False

    def synchronize(self) -> None:  # pragma: no cover - what the wait must never fall back to
        raise AssertionError("blocked for ever")


def test_a_blocks_frames_that_never_come_out_fail_their_session_and_the_device() -> None:
    """The wait for a launched block's frames (its event) is under the hang rule too, not only requests."""
    from longlive_rtc.generators.longlive import LaunchedBlock

    worker = GpuWorker(tiny_longlive("tae"), stuck_after=0.2)
    session = worker.session()
    try:
        began = time.monotonic()
        with pytest.raises(DeviceHung, match="frames took over 0.2 s"):
            worker.collect(session.stream, LaunchedBlock(None, 12, NeverDone()))  # type: ignore[arg-type]
        assert 0.2 <= time.monotonic() - began < 20
        with pytest.raises(DeviceHung, match="frames took"):  # every later request fails at once, same reason
            session.begin(0, session.encode_prompt("p"))
    finally:
        worker.close()


def test_a_closing_sessions_queued_reset_still_runs() -> None:
    """The reset that frees a closing session's state is never dropped (its engine's last call may race close)."""
    worker = GpuWorker(tiny_longlive("tae"))
    gate, held = threading.Event(), threading.Event()
    busy = threading.Thread(target=worker.call, args=(lambda: (held.set(), gate.wait(20)),))
    try:
        session = worker.session()
        session.begin(0, session.encode_prompt("p"))
        session.next_block()
        busy.start()
        assert held.wait(10)
        resetting = threading.Thread(target=session.reset)
        resetting.start()
        while not worker._queue:
            time.sleep(0.01)
        session.cancel_pending()
        gate.set()
        resetting.join(10)
        assert not resetting.is_alive() and session.pipeline.cache is None, "the reset ran"
    finally:
        gate.set()
        busy.join(10)
        worker.close()
