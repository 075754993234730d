"""Long paced streams through the engine, on-air clock and a viewer track, each switching prompts every N seconds.

Per session: the engine's stalls (underruns after playback began), the track's repeated frames and what each
switch took from request to screen (live switches asap, as serve does, unless ``--live-switch block-end``).
Frames are VP8-encoded in a worker thread as aiortc's sender does.
``--sessions N`` runs N sessions at once, each with its own clock, viewer track and switches; with LongLive
they share one GPU worker (weights loaded once), as ``serve --max-sessions N`` does.

    python benchmarks/paced_stream.py --seconds 600 --switch-every 10 --decoder tae      (GPU, random weights)
    python benchmarks/paced_stream.py --sessions 2 --decoder wan --seconds 600           (two sessions, one GPU)
    python benchmarks/paced_stream.py --generator synthetic --seconds 20                 (CPU, checks the script)
    python benchmarks/paced_stream.py --generator tiny --sessions 2 --seconds 5          (CPU, the GPU-worker path)

``--generator synthetic --shared-device --block-ms B --switch-ms S`` puts synthetic sessions on the real GPU
worker (CPU): it runs their blocks one at a time, earliest deadline first, each taking B ms of its thread (a
recache S ms more). That tests the engines' pacing and the worker's scheduling of sessions that share a
device at a given load, not a model's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

import numpy as np
from aiortc.codecs.vpx import Vp8Encoder

from longlive_rtc.generators import SyntheticGenerator
from longlive_rtc.generators.base import Generator, Geometry
from longlive_rtc.protocol import Event
from longlive_rtc.rtc.hub import LIVE_SWITCHES
from longlive_rtc.rtc.track import OnAirClock
from longlive_rtc.session import Role, Session


class EmulatedStream(SyntheticGenerator):
    """A synthetic stream in the shape a GPU worker drives (``fork``, ``launch_block``, ``collect``), for
    ``--shared-device``: the worker runs the sessions' blocks one at a time, by deadline, each taking its
    emulated time on the worker's thread."""

    encodes_on_cpu = False

    @property
    def device(self):
        import torch

        return torch.device("cpu")

    def fork(self) -> EmulatedStream:
        return EmulatedStream(self.geometry, self.block_ms, self.switch_ms)

    def launch_block(self):
        from longlive_rtc.generators.longlive import LaunchedBlock

        return LaunchedBlock(SyntheticGenerator.next_block(self))

    def collect(self, block) -> np.ndarray:
        return block.frames


def build(args) -> tuple[list[Generator], object | None]:
    """One generator per session, and the GPU worker they share (None for the synthetic generator)."""
    if args.generator == "synthetic":
        geometry = Geometry(*args.size)
        if args.shared_device:  # the real GPU worker's scheduling, over emulated blocks
            from longlive_rtc.generators.gpu_worker import GpuWorker

            worker = GpuWorker(EmulatedStream(geometry, args.block_ms, args.switch_ms))
            return [worker.session() for _ in range(args.sessions)], worker
        return [SyntheticGenerator(geometry, args.block_ms, args.switch_ms) for _ in range(args.sessions)], None
    import torch

    from longlive_rtc.generators.gpu_worker import GpuWorker
    from longlive_rtc.generators.longlive import enable_compile, enable_cuda_graphs, random_longlive

    if args.generator == "tiny":  # tiny random configs on the CPU: the same path, numbers meaningless
        template = random_longlive("cpu", args.decoder, torch.float32, tiny_model=True)
    else:
        torch.backends.cudnn.benchmark = True
        template = random_longlive("cuda", args.decoder)
        if args.compile:
            enable_compile(template)
        if args.cuda_graphs:
            enable_cuda_graphs(template)  # each session's stream captures its own (model/graphs.py)
    worker = GpuWorker(template)  # as serve does: shared weights, one stream each, warmed up on the worker
    print(f"warm-up {worker.warm_up(report=lambda line: None):.1f} s", flush=True)
    return [worker.session() for _ in range(args.sessions)], worker


async def run_one(session: Session, args, started: float, joins_at: float = 0.0, is_last: bool = False) -> dict:
    """Stream one session from ``joins_at`` seconds after ``started`` until ``args.seconds`` after it, switching
    every ``args.switch_every`` s; with ``is_last`` (the last session), paused for ``args.pause_for`` s every
    ``args.pause_every`` s, and stopped and started again every ``args.restart_every`` s (0: never)."""
    await asyncio.sleep(max(0.0, started + joins_at - time.monotonic()))
    joined = time.monotonic()
    events: list[tuple[float, Event]] = []
    session.join(Role.CONTROLLER, lambda e: events.append((time.monotonic(), e)))

    def command(kind: str, **data) -> None:
        replies: list[Event] = []
        session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
        assert replies[0].type == "ack", replies[0]

    command("schedule_prompt", new_prompt=f"{session.id} prompt 0", timestamp=0)
    command("start")
    clock = OnAirClock(session.engine)
    clock.start()
    track = clock.track()
    encoder = Vp8Encoder()
    loop = asyncio.get_running_loop()
    requested: dict[str, float] = {}
    shown: dict[str, float] = {}
    next_switch, number = joined + args.switch_every, 1
    next_report = started + args.report_every
    frames = encoded_bytes = 0
    next_pause = joined + args.pause_every if is_last and args.pause_every else float("inf")
    resume_at, paused_times = float("inf"), 0
    next_restart, restarts = (joined + args.restart_every if is_last and args.restart_every else float("inf")), 0
    try:
        while time.monotonic() - started < args.seconds:
            if time.monotonic() >= next_report:  # progress on a long run: what it saw so far survives a cut
                next_report += args.report_every
                print(f"{session.id} {time.monotonic() - started:.0f} s: {frames} frames, "
                      f"{session.engine.stalls} stalls, {len(requested)} switches, "
                      f"{session.engine.frames_skipped} frames skipped", file=sys.stderr, flush=True)  # fmt: skip
            frame = await track.recv()
            payloads, _ = await loop.run_in_executor(None, encoder.encode, frame)
            frames += 1
            encoded_bytes += sum(len(p) for p in payloads)
            if time.monotonic() >= next_restart:  # a new run: it begins again, and joins the device again
                command("stop")
                command("start")
                next_restart, restarts = time.monotonic() + args.restart_every, restarts + 1
            if time.monotonic() >= next_pause:
                command("pause")
                next_pause, resume_at, paused_times = float("inf"), time.monotonic() + args.pause_for, paused_times + 1
            elif time.monotonic() >= resume_at:
                command("resume")
                next_pause, resume_at = time.monotonic() + args.pause_every, float("inf")
            if time.monotonic() >= next_switch:
                prompt = f"{session.id} prompt {number}"
                command("schedule_prompt", new_prompt=prompt, timestamp=session.current_start_frame)
                requested[prompt], next_switch, number = time.monotonic(), next_switch + args.switch_every, number + 1
            for at, event in events:
                if event.type == "prompt_applied" and event.data["prompt"] not in shown:
                    shown[event.data["prompt"]] = at
    finally:
        clock.stop()
    elapsed = time.monotonic() - joined
    delays = [shown[p] - requested[p] for p in requested if p in shown]
    engine = session.engine
    return {
        "session": session.id,
        "joined_at_s": round(joined - started, 1),
        "seconds": round(elapsed, 1),
        "pauses": paused_times,
        "restarts": restarts,
        "frames_sent": frames,
        "fps": round(frames / elapsed, 3),
        "stalls": engine.stalls,
        "repeated_frames": clock.repeats,
        "blocks_generated": engine.blocks_generated,
        "frames_skipped": engine.frames_skipped,
        "switches_requested": len(requested),
        "switches_applied": len(delays),
        "switch_request_to_applied_s_median": round(statistics.median(delays), 3) if delays else None,
        "buffer_high_water_frames": engine.buffer.high_water,
        "vp8_kbps": round(8 * encoded_bytes / elapsed / 1000, 1),
    }


async def run(args) -> dict:
    generators, worker = build(args)
    sessions = [Session(f"s{i}", g, buffer_blocks=args.buffer_blocks) for i, g in enumerate(generators)]
    for session in sessions:  # as serve's hub sets it
        session.engine.pacer.asap = args.live_switch == "asap"
    try:
        started = time.monotonic()
        last = len(sessions) - 1
        per_session = await asyncio.gather(*(
            run_one(s, args, started, i * args.stagger, is_last=i == last)
            for i, s in enumerate(sessions)
        ))  # fmt: skip
    finally:
        for session in sessions:
            session.close()
        if worker is not None:
            worker.close()
    return {
        "generator": args.generator,
        "decoder": args.decoder,
        "sessions": len(sessions),
        "live_switch": args.live_switch,
        "stalls": [r["stalls"] for r in per_session],  # one number per session
        "per_session": per_session,
    }


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    if size[0] < 16 or size[1] < 64 or size[0] % 16 or size[1] % 16:  # the synthetic card's least height: 64
        raise argparse.ArgumentTypeError(f"{text!r}: both sides multiples of 16, at least 16 wide and 64 high")
    return size


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="longlive", choices=["longlive", "synthetic", "tiny"])
    parser.add_argument("--decoder", default="tae", choices=["wan", "tae"])
    parser.add_argument("--sessions", type=int, default=1, help="sessions at once (LongLive: on one GPU worker)")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--switch-every", type=float, default=10)
    parser.add_argument("--buffer-blocks", type=int, default=1)
    parser.add_argument("--live-switch", default="asap", choices=LIVE_SWITCHES, help="as serve's flag")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--cuda-graphs", action="store_true", help="replay the DiT's forwards as CUDA graphs")
    parser.add_argument("--block-ms", type=float, default=0.0, help="synthetic: each block's emulated time")
    parser.add_argument("--switch-ms", type=float, default=0.0, help="synthetic: a recache's emulated time")
    parser.add_argument("--shared-device", action="store_true",
                        help="synthetic: the sessions' blocks take turns on one emulated device, as on one GPU")
    parser.add_argument("--size", type=_size, default=(832, 480), help="synthetic: WIDTHxHEIGHT (default 832x480)")
    parser.add_argument("--report-every", type=float, default=60, help="seconds between progress lines (stderr)")
    parser.add_argument("--stagger", type=float, default=0.0, help="session i joins i x this many seconds late")
    parser.add_argument("--pause-every", type=float, default=0.0,
                        help="the last session pauses this many seconds after it joined or resumed (0: never)")
    parser.add_argument("--pause-for", type=float, default=5.0, help="seconds each of those pauses lasts")
    parser.add_argument("--restart-every", type=float, default=0.0,
                        help="the last session stops and starts again (a new run) this often, in seconds (0: never)")
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error("--sessions must be >= 1")
    if args.report_every <= 0:
        parser.error("--report-every must be > 0")
    if min(args.stagger, args.pause_every, args.restart_every) < 0 or args.pause_for <= 0:
        parser.error("--stagger, --pause-every and --restart-every must be >= 0, --pause-for > 0")
    if args.stagger * (args.sessions - 1) >= args.seconds:
        parser.error("the last session would join after --seconds")
    return args


def main() -> None:
    print(json.dumps(asyncio.run(run(parse_args())), indent=2))


if __name__ == "__main__":
    main()
