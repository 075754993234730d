"""A recording of a paced stream: its frame count and duration (ffprobe), and whether recording stalls it.

A live session (engine, on-air clock) runs with its outputs; the stream plays ``--warm`` seconds, then
is recorded for ``--seconds``. Reports the MP4's frames against the frames that went on air meanwhile
(equal +-1; 900 for 60 s at 15 FPS unless the clock fell behind on a busy machine), the engine's stalls
before and during the recording, frames the encoder dropped and the process's CPU.

    python benchmarks/recording.py --seconds 60                      (CPU, synthetic generator)
    python benchmarks/recording.py --seconds 60 --generator longlive (GPU, random weights)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from longlive_rtc.outputs.manager import OutputsConfig, SessionOutputs
from longlive_rtc.outputs.store import Store
from longlive_rtc.protocol import Event
from longlive_rtc.rtc.hub import Hub, HubConfig
from longlive_rtc.session import Role
from signaling.outputs import describe


def build(args):
    if args.generator == "synthetic":
        from longlive_rtc.generators import SyntheticGenerator

        return SyntheticGenerator()
    from longlive_rtc.generators.longlive import random_longlive, warm_up

    generator = random_longlive("cuda", args.decoder)
    print(f"warm-up {warm_up(generator, report=lambda line: None):.1f} s", flush=True)
    return generator


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def probe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=r_frame_rate,nb_read_frames,duration,width,height", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)["streams"][0]


async def run(args, folder: Path) -> dict:
    generator = build(args)
    hub = Hub(lambda: generator, HubConfig(max_sessions=1))
    live = hub.create_session("bench")
    config = OutputsConfig(folder, quota=50 << 30, clip_seconds=args.clip_seconds)
    geometry = live.session.geometry
    size, fps = (geometry.width, geometry.height), hub.config.fps
    store = Store(folder, config.quota)
    outputs = SessionOutputs(live.id, size, fps, config, store, describe(live, fps), live.add_sink, live.remove_sink)

    def command(kind: str, **data) -> None:
        replies: list[Event] = []
        live.session.handle(json.dumps({"type": kind, "data": data}), Role.CONTROLLER, replies.append)
        assert replies[0].type == "ack", replies[0]

    command("schedule_prompt", new_prompt="prompt 0", timestamp=0)
    for i in range(1, int(args.seconds + args.warm) // 5):  # a switch every 5 s (20 generation frames)
        command("schedule_prompt", new_prompt=f"prompt {i}", timestamp=i * 20)
    command("start")
    await asyncio.sleep(args.warm)
    stalls_before, cpu0, started = live.session.engine.stalls, cpu_seconds(), time.monotonic()
    on_air = live.clock.frames_sent
    recording = await outputs.start_recording()
    await asyncio.sleep(args.seconds)
    on_air = live.clock.frames_sent - on_air  # ticks of the clock while recording (fewer if it fell behind)
    info = await outputs.stop_recording()
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu0
    stalls = live.session.engine.stalls - stalls_before
    dropped = outputs.encoder.dropped if outputs.encoder else None
    await outputs.close()
    await hub.close()
    return {
        "seconds": args.seconds, "generator": args.generator, "size": f"{geometry.width}x{geometry.height}",
        "frames": info["frames"], "on_air_frames": on_air, "wall_frames": round(args.seconds * fps),
        "probe": probe(recording.mp4),
        "stalls_before": stalls_before, "stalls_while_recording": stalls, "encoder_dropped": dropped,
        "bytes": info["bytes"], "cpu_cores": round(cpu / wall, 3), "reason": info["reason"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warm", type=float, default=3.0, help="seconds played before the recording starts")
    parser.add_argument("--generator", default="synthetic", choices=["synthetic", "longlive"])
    parser.add_argument("--decoder", default="tae", choices=["wan", "tae"])
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="the clip ring running beside (0: off)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = asyncio.run(run(args, Path(folder)))
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
