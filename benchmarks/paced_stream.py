"""A long paced stream through the engine, on-air clock and a viewer track, with a prompt switch every N seconds.

Counts the engine's stalls (underruns after playback began), the track's repeated frames and what each
switch took from request to screen. Frames are VP8-encoded in a worker thread as aiortc's sender does.

    python benchmarks/paced_stream.py --seconds 600 --switch-every 10 --decoder tae      (GPU, random weights)
    python benchmarks/paced_stream.py --generator synthetic --seconds 20                 (CPU, checks the script)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from aiortc.codecs.vpx import Vp8Encoder

from longlive_rtc.protocol import Event
from longlive_rtc.rtc.track import OnAirClock
from longlive_rtc.session import Role, Session


def build(args):
    if args.generator == "synthetic":
        from longlive_rtc.generators import SyntheticGenerator

        return SyntheticGenerator()
    import torch

    from longlive_rtc.generators.longlive import enable_compile, random_longlive, warm_up

    torch.backends.cudnn.benchmark = True
    generator = random_longlive("cuda", args.decoder)
    if args.compile:
        enable_compile(generator)
    print(f"warm-up {warm_up(generator, report=lambda line: None):.1f} s", flush=True)
    return generator


async def run(args) -> dict:
    session = Session("paced", build(args), buffer_blocks=args.buffer_blocks)
    events: list[tuple[float, Event]] = []
    session.join(Role.CONTROLLER, lambda e: events.append((time.monotonic(), e)))

    def command(kind: str, **data) -> None:
        replies: list[Event] = []
        session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
        assert replies[0].type == "ack", replies[0]

    command("schedule_prompt", new_prompt="prompt 0", timestamp=0)
    command("start")
    clock = OnAirClock(session.engine)
    clock.start()
    track = clock.track()
    encoder = Vp8Encoder()
    loop = asyncio.get_running_loop()
    requested: dict[str, float] = {}
    shown: dict[str, float] = {}
    started = time.monotonic()
    next_switch, number = started + args.switch_every, 1
    frames = encoded_bytes = 0
    while time.monotonic() - started < args.seconds:
        frame = await track.recv()
        payloads, _ = await loop.run_in_executor(None, encoder.encode, frame)
        frames += 1
        encoded_bytes += sum(len(p) for p in payloads)
        if time.monotonic() >= next_switch:
            prompt = f"prompt {number}"
            command("schedule_prompt", new_prompt=prompt, timestamp=session.current_start_frame)
            requested[prompt], next_switch, number = time.monotonic(), next_switch + args.switch_every, number + 1
        for at, event in events:
            if event.type == "prompt_applied" and event.data["prompt"] not in shown:
                shown[event.data["prompt"]] = at
    elapsed = time.monotonic() - started
    clock.stop()
    session.close()
    delays = [shown[p] - requested[p] for p in requested if p in shown]
    return {
        "generator": args.generator,
        "decoder": args.decoder,
        "seconds": round(elapsed, 1),
        "frames_sent": frames,
        "fps": round(frames / elapsed, 3),
        "stalls": session.engine.stalls,
        "repeated_frames": clock.repeats,
        "blocks_generated": session.engine.blocks_generated,
        "switches_requested": len(requested),
        "switches_applied": len(delays),
        "switch_request_to_applied_s_median": round(statistics.median(delays), 3) if delays else None,
        "buffer_high_water_frames": session.engine.buffer.high_water,
        "vp8_kbps": round(8 * encoded_bytes / elapsed / 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="longlive", choices=["longlive", "synthetic"])
    parser.add_argument("--decoder", default="tae", choices=["wan", "tae"])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--switch-every", type=float, default=10)
    parser.add_argument("--buffer-blocks", type=int, default=1)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
