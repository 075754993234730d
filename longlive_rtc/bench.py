"""`longlive-rtc bench`: full-size LongLive on the GPU, per-stage block times and sustained FPS.

Random weights unless ``--weights`` is given (speed does not depend on the values). Every number is the
median of ``--runs`` runs after warm-up; stage times come from CUDA events (``timing.py``), FPS from the
wall clock over whole blocks (generate + decode + device->host copy), exactly what the live engine calls.

``--sessions N`` runs N streams at once, placed over ``--devices`` by serve's own ``DevicePool`` (one GPU
worker per device); ``--decoder-device`` benchmarks the decoder on another device against the same-device
figure of the same call. ``--tiny`` runs tiny random configs (on ``--devices cpu,cpu`` too): it checks the
benchmark itself, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from .generators.base import Generator, start_lead
from .generators.devices import DevicePool, parse_devices
from .generators.gpu_worker import PLAYBACK_FPS, GpuWorker
from .generators.longlive import (
    LongLiveGenerator,
    enable_compile,
    enable_cuda_graphs,
    random_longlive,
    use_precision,
    warm_up,
)
from .timing import StageTimer, device_ms


def bench_generator(generator: LongLiveGenerator, blocks: int, runs: int) -> dict:
    """Medians over ``runs`` streams of ``blocks`` blocks, each with one prompt switch once the window is full."""
    switch_at = max(6, blocks // 2)  # from block 5 on a recache is the steady-state one (sink kept, 9 frames)
    if blocks < switch_at + 2:
        raise SystemExit(f"error: bench needs --blocks >= {switch_at + 2}")
    first, second = generator.encode_prompt("a red fox in the snow"), generator.encode_prompt("a blue lake at dusk")
    timer = StageTimer().attach(generator.pipeline)
    stage_ms: dict[str, list[float]] = {"denoise": [], "cache": [], "recache": []}
    decoder_device = generator.handover.target if generator.handover is not None else generator.device
    per_run = []
    for run in range(runs):
        _synchronize(generator.device)
        t0 = time.perf_counter()
        generator.begin(run, first)
        frames = len(generator.next_block())
        first_frame_s = time.perf_counter() - t0
        block_s, decode_ms, switch_block_s = [], [], []
        started = time.perf_counter()
        for i in range(1, blocks):
            switching = i == switch_at
            b0 = time.perf_counter()
            if switching:
                generator.switch_prompt(second)
            latents = generator.pipeline.next_block()
            if generator.handover is not None:  # the decoder on its own device: the copy the live path makes
                latents = generator.handover.send(latents)
                if generator.handover.stream is not None:
                    torch.cuda.current_stream(decoder_device).wait_stream(generator.handover.stream)
            decode_ms.append(device_ms(lambda latents=latents: generator.decoder.decode(latents), decoder_device))
            (switch_block_s if switching else block_s).append(time.perf_counter() - b0)
        steady_s = time.perf_counter() - started
        # end to end through the generator's own path (side-stream decode + pinned copy)
        e2e0, e2e_frames = time.perf_counter(), 0
        for _ in range(blocks):
            e2e_frames += len(generator.next_block())
        e2e_s = time.perf_counter() - e2e0
        generator.reset()
        for kind, times in stage_ms.items():
            times += timer.ms(kind)
        timer.clear()
        per_run.append({
            "time_to_first_frame_s": first_frame_s,
            "block_ms": 1e3 * statistics.median(block_s),
            "decode_ms": statistics.median(decode_ms),
            # a switch block against the median block: what a prompt switch adds to the stream
            "switch_ms": 1e3 * (statistics.median(switch_block_s) - statistics.median(block_s)),
            "fps": e2e_frames / e2e_s,
            "staged_fps": generator.geometry.max_video_frames_in_block * (blocks - 1) / steady_s,
            "first_block_frames": frames,
        })  # fmt: skip
    med = {key: statistics.median(r[key] for r in per_run) for key in per_run[0]}
    med["dit_forward_ms"] = statistics.median(stage_ms["denoise"])
    med["cache_pass_ms"] = statistics.median(stage_ms["cache"])
    med["recache_ms"] = statistics.median(stage_ms["recache"])
    med["runs"] = per_run
    graphs = generator.pipeline.graphs
    if graphs is not None:  # proof that the graphs ran: how many shapes were captured, how many calls replayed
        med["cuda_graphs"] = {"enabled": graphs.enabled, "captures": graphs.captures, "replays": graphs.replays}
    generator.pipeline.step_hook = None
    return med


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_sessions(
    source: GpuWorker | Callable[[], Generator], sessions: int, blocks: int, runs: int, fps: float = PLAYBACK_FPS
) -> dict:
    """``sessions`` streams at once, each driven from its own thread as an engine drives it (unpaced: each
    asks for its next block as soon as it has the last), all started together; one prompt switch each at
    the same block as ``bench_generator``. ``source`` is one GPU worker, or what serve's hub calls for a
    session's generator (a :class:`DevicePool` spreads the sessions over its devices; its ``release`` gets
    them back at the end). Per session: FPS over blocks 1.. (wall clock), block intervals, and *deadline
    misses*: blocks delivered after a ``fps`` playback would have run out of frames, one that started with
    block 0 once the engine's start lead (``base.start_lead``: on a shared device) was over (each run also
    lists, per session, the late blocks, by how much the latest was late, and the lead). Medians over runs,
    in all, per session and per device."""
    switch_at = max(6, blocks // 2)
    make = (lambda: source.session(fps)) if isinstance(source, GpuWorker) else source
    handles = [make() for _ in range(sessions)]
    devices = [_device_of(h) for h in handles]
    per_run = []
    try:
        with ThreadPoolExecutor(sessions) as pool:
            for run in range(runs):
                barrier = threading.Barrier(sessions, timeout=600)
                futures = [
                    pool.submit(_drive, h, run * sessions + i, switch_at, blocks, fps, barrier)
                    for i, h in enumerate(handles)
                ]
                results = [f.result() for f in futures]
                per_run.append(_sessions_run(results, devices))
    finally:
        release = getattr(source, "release", None)
        for handle in handles if release is not None else ():
            release(handle)
    keys = [k for k in per_run[0] if k not in ("per_session", "per_device", "fps_per_session")]
    med = {key: statistics.median(r[key] for r in per_run) for key in keys}
    by_session = zip(*(r["fps_per_session"] for r in per_run), strict=True)
    med["fps_per_session"] = [statistics.median(fps) for fps in by_session]
    med["sessions"] = sessions
    med["per_session"] = [
        {"device": label} | {k: statistics.median(r["per_session"][i][k] for r in per_run) for k in ("fps", "misses")}
        for i, label in enumerate(devices)
    ]
    med["per_device"] = {
        label: {k: statistics.median(r["per_device"][label][k] for r in per_run) for k in stats}
        for label, stats in per_run[0]["per_device"].items()
    }
    med["runs"] = per_run
    return med


def _sessions_run(results: list[dict], devices: list[str]) -> dict:
    """One run of ``bench_sessions``: in all, per session (in order) and per device."""
    intervals = sorted(x for r in results for x in r["intervals_s"])
    per_device: dict[str, dict] = {}
    for label, r in zip(devices, results, strict=True):
        d = per_device.setdefault(label, {"sessions": 0, "aggregate_fps": 0.0, "min_session_fps": math.inf,
                                          "deadline_misses": 0})  # fmt: skip
        d["sessions"] += 1
        d["aggregate_fps"] += r["fps"]
        d["min_session_fps"] = min(d["min_session_fps"], r["fps"])
        d["deadline_misses"] += r["misses"]
    return {
        "fps_per_session": [r["fps"] for r in results],
        "aggregate_fps": sum(r["fps"] for r in results),
        "min_session_fps": min(r["fps"] for r in results),
        "block_p50_ms": 1e3 * statistics.median(intervals),
        "block_p95_ms": 1e3 * intervals[round(0.95 * (len(intervals) - 1))],
        "deadline_misses": sum(r["misses"] for r in results),
        "first_frame_s": max(r["first_frame_s"] for r in results),
        "per_session": [
            {"device": label} | {k: r[k] for k in ("fps", "misses", "late_blocks", "latest_ms", "start_lead_s")}
            for label, r in zip(devices, results, strict=True)
        ],
        "per_device": per_device,
    }  # fmt: skip


def _device_of(handle: Generator) -> str:
    """The device a session's generator runs on: its pool placement, else its GPU worker's device."""
    placement = getattr(handle, "placement", None)
    if placement:
        return str(placement)
    worker = getattr(handle, "worker", None)
    return str(worker.device) if worker is not None else "?"


def _drive(handle, seed: int, switch_at: int, blocks: int, fps: float, barrier: threading.Barrier) -> dict:
    """One session's stream for ``bench_sessions``: delivery times and deadline misses."""
    try:  # each session encodes its own prompts: on its own device
        prompts = (handle.encode_prompt("a red fox in the snow"), handle.encode_prompt("a blue lake at dusk"))
        handle.begin(seed, prompts[0])
        barrier.wait()
    except BaseException:
        barrier.abort()  # the other sessions fail too instead of waiting
        raise
    started = time.perf_counter()
    times, frames, lead = [], [], 0.0
    for b in range(blocks):
        if b == switch_at:
            handle.switch_prompt(prompts[1])
        frames.append(len(handle.next_block()))
        times.append(time.perf_counter())
        if b == 0:  # as the engine holds a run's first frame: its playback starts that much later
            lead = start_lead(handle)
    handle.reset()
    due = [times[0] + lead + sum(frames[:k]) / fps for k in range(1, blocks)]
    lateness = [t - d for t, d in zip(times[1:], due, strict=True)]  # block k + 1's, seconds (> 0: a miss)
    return {
        "first_frame_s": times[0] - started,
        "start_lead_s": lead,
        "fps": sum(frames[1:]) / (times[-1] - times[0]),
        "intervals_s": [b - a for a, b in zip(times, times[1:], strict=False)],
        "misses": sum(late > 0 for late in lateness),
        "late_blocks": [k for k, late in enumerate(lateness, start=1) if late > 0],
        "latest_ms": 1e3 * max([0.0, *lateness]),
    }


def sessions_row(decoder: str, r: dict) -> str:
    row = (
        f"{decoder:>4} x{r['sessions']} | {r['min_session_fps']:5.1f} FPS per session (min) | "
        f"{r['aggregate_fps']:5.1f} FPS in all | block p50 {r['block_p50_ms']:6.1f} ms "
        f"p95 {r['block_p95_ms']:6.1f} ms | "
        f"misses {r['deadline_misses']:.0f} | first frame {r['first_frame_s']:.3f} s | peak {r['peak_gib']:.1f} GiB"
    )
    if len(r["per_device"]) > 1:
        row += "".join(
            f"\n       {label}: {d['sessions']:.0f} session(s), {d['min_session_fps']:5.1f} FPS per session (min), "
            f"{d['aggregate_fps']:5.1f} in all, misses {d['deadline_misses']:.0f}, "
            f"peak {r['peak_gib_per_device'].get(label, 0.0):.1f} GiB"
            for label, d in r["per_device"].items()
        )
    return row


def bench_devices(args) -> list[str]:
    """The devices the bench runs on (``--devices``, else the current CUDA device), checked."""
    try:
        names = parse_devices(args.devices) if args.devices else ["cuda"]
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    used = names + ([args.decoder_device] if args.decoder_device else [])
    if any(str(n).startswith("cuda") for n in used) and not torch.cuda.is_available():
        raise SystemExit("error: bench needs a CUDA GPU (or --tiny --devices cpu for a check of the bench itself)")
    if any(not str(n).startswith("cuda") for n in used) and not args.tiny:
        raise SystemExit("error: bench runs the full-size model on CUDA devices only (--tiny runs on the CPU)")
    return names


def open_generator(args, device: str, decoder: str) -> tuple[LongLiveGenerator, float]:
    """A warmed-up random LongLive on ``device`` as the bench flags ask (compiled, decoder placed), and the
    seconds its warm-up took."""
    cuda = torch.device(device).type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    generator = random_longlive(device, decoder, dtype, tiny_model=args.tiny)
    if args.decoder_device:
        from .generators.handover import place_decoder

        place_decoder(generator, args.decoder_device)
    try:
        use_precision(generator, args.precision)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.compile == "on" and cuda:
        enable_compile(generator)
    if args.cuda_graphs == "on":
        try:
            enable_cuda_graphs(generator)
        except ValueError as exc:
            raise SystemExit(f"error: --cuda-graphs on: {exc}") from None
    seconds = warm_up(generator, report=lambda line: print(f"  {device}: {line}", flush=True))
    return generator, seconds


def run_bench(args) -> dict:
    names = bench_devices(args)
    cuda = torch.cuda.is_available() and any(n.startswith("cuda") for n in names)
    torch.backends.cudnn.benchmark = True
    results = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
        "devices": names, "decoder_device": args.decoder_device, "precision": args.precision,
        "compile": args.compile, "cuda_graphs": args.cuda_graphs, "configs": {},
    }  # fmt: skip
    for decoder in args.decoders:
        _empty_caches(names)
        _reset_peaks(names)
        t5 = _resident_t5() if args.with_t5 and cuda and not args.tiny else None
        same_device = argparse.Namespace(**(vars(args) | {"decoder_device": None}))
        generator, warm_s = open_generator(same_device, names[0], decoder)
        _reset_peaks(names)  # steady-state peak, not compile/autotune workspaces
        result = bench_generator(generator, args.blocks, args.runs)
        result["warm_up_s"] = warm_s
        if t5 is not None:
            result["t5_encode_ms"] = statistics.median(device_ms(t5) for _ in range(5))
        result["peak_gib"] = _peak_gib(names)
        results["configs"][decoder] = result
        print(table_row(decoder, result), flush=True)
        if args.decoder_device:  # the same generator, its decoder moved: the same call's same-device figure
            from .generators.handover import place_decoder

            place_decoder(generator, args.decoder_device)
            warm_up(generator, report=lambda line: print(f"  decoder on {args.decoder_device}: {line}", flush=True))
            _reset_peaks(names + [args.decoder_device])
            moved = bench_generator(generator, args.blocks, args.runs)
            moved["peak_gib"] = _peak_gib(names + [args.decoder_device])
            moved |= {"decoder_device": args.decoder_device, "same_device_fps": result["fps"],
                      "fps_vs_same_device": moved["fps"] / result["fps"]}  # fmt: skip
            results["configs"][f"{decoder} decoder on {args.decoder_device}"] = moved
            print(table_row(decoder, moved) + f" | decoder on {args.decoder_device}: "
                  f"{moved['fps']:5.1f} FPS against {result['fps']:5.1f} on {names[0]}", flush=True)  # fmt: skip
        if args.sessions:
            _bench_sessions_on(args, names, decoder, generator, results)
        del generator, t5
    return results


def _bench_sessions_on(args, names: list[str], decoder: str, first: LongLiveGenerator, results: dict) -> None:
    """``--sessions``: each count of streams placed over the devices by a DevicePool, as serve places them."""
    workers: list[GpuWorker] = []

    def open_device(name: str) -> Callable[[], Generator]:
        template = first if not workers else open_generator(args, name, decoder)[0]  # the first one is loaded
        workers.append(GpuWorker(template))
        workers[-1].warm_up(report=lambda line: None)  # cuDNN's tuned plans are per thread: the worker's own
        return workers[-1].session

    pool = DevicePool(names, math.ceil(max(args.sessions) / len(names)), open_device)
    try:
        pool.open_all()
        for count in args.sessions:
            _empty_caches(names)
            _reset_peaks(names)
            shared = bench_sessions(pool, count, args.blocks, args.runs)
            shared["peak_gib_per_device"] = {
                label: _peak_gib([name]) for label, name in zip(pool_labels(pool), names, strict=True)
            }
            shared["peak_gib"] = _peak_gib(names)
            results["configs"][f"{decoder} x{count}"] = shared
            print(sessions_row(decoder, shared), flush=True)
    finally:
        for worker in workers:
            worker.close()


def pool_labels(pool: DevicePool) -> list[str]:
    return [device.label for device in pool.devices]


def _cuda_names(names: list[str]) -> list[str]:
    return sorted({n for n in names if n.startswith("cuda")})


def _reset_peaks(names: list[str]) -> None:
    for name in _cuda_names(names):
        torch.cuda.reset_peak_memory_stats(name)


def _empty_caches(names: list[str]) -> None:
    for name in _cuda_names(names):
        with torch.cuda.device(name):
            torch.cuda.empty_cache()


def _peak_gib(names: list[str]) -> float:
    """The highest peak of allocated memory over the CUDA devices among ``names`` (0 without any)."""
    return max((torch.cuda.max_memory_allocated(n) / 2**30 for n in _cuda_names(names)), default=0.0)


def _resident_t5():
    """A full-size random umT5-XXL on the GPU, placed as `load_umt5` places it (token table in host
    memory), so peak memory counts it; returns an encode call."""
    from .model.t5 import T5Config, UMT5Encoder

    with torch.device("cuda"):
        encoder = UMT5Encoder(T5Config.umt5_xxl()).to(torch.bfloat16).eval().requires_grad_(False)
    encoder.place("cuda", embedding_device="cpu")
    ids = torch.randint(0, 256384, (1, 512), device="cuda")
    mask = torch.ones_like(ids)
    mask[:, 40:] = 0

    @torch.no_grad()
    def encode():
        return encoder(ids[:, :40], mask[:, :40])

    return encode


def table_row(decoder: str, r: dict) -> str:
    graphs = r.get("cuda_graphs")
    replayed = ""
    if graphs is not None:  # whether the graphs ran at all: a failed capture turns them off
        state = "on" if graphs["enabled"] else "OFF (a capture failed)"
        replayed = f" | CUDA graphs {state}: {graphs['captures']} captured, {graphs['replays']} calls replayed"
    return (
        f"{decoder:>4} | DiT fwd {r['dit_forward_ms']:6.1f} ms | cache {r['cache_pass_ms']:6.1f} ms | "
        f"decode {r['decode_ms']:6.1f} ms | block {r['block_ms']:6.1f} ms | {r['fps']:5.1f} FPS | "
        f"first frame {r['time_to_first_frame_s']:.3f} s | switch +{r['switch_ms']:5.1f} ms "
        f"(recache {r['recache_ms']:5.1f}) | "
        f"peak {r['peak_gib']:.1f} GiB{replayed}"
    )


def main(args) -> int:
    results = run_bench(args)
    print(json.dumps(results, indent=2, default=float))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
    return 0
