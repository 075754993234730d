"""`longlive-rtc bench`: full-size LongLive on the GPU, per-stage block times and sustained FPS.

Random weights unless ``--weights`` is given (speed does not depend on the values). Every number is the
median of ``--runs`` runs after warm-up; stage times come from CUDA events, FPS from the wall clock
over whole blocks (generate + decode + device->host copy), exactly what the live engine calls.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from .generators.gpu_worker import PLAYBACK_FPS, GpuWorker
from .generators.longlive import LongLiveGenerator, enable_compile, random_longlive, warm_up


@dataclass
class StageTimer:
    """CUDA-event timing of the pipeline's model calls by kind: denoising forwards, cache passes, recaches."""

    ms: dict[str, list[float]] = field(default_factory=lambda: {"denoise": [], "cache": [], "recache": []})
    pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)

    def wrap(self, pipeline) -> None:
        step = pipeline._step

        def timed(kind, x, t, start, **kw):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            out = step(kind, x, t, start, **kw)
            end.record()
            self.pending.append((kind, begin, end))
            return out

        pipeline._step = timed

    def collect(self) -> None:
        torch.cuda.synchronize()
        for kind, begin, end in self.pending:
            self.ms[kind].append(begin.elapsed_time(end))
        self.pending.clear()


def cuda_ms(fn) -> float:
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end)


def bench_generator(generator: LongLiveGenerator, blocks: int, runs: int) -> dict:
    """Medians over ``runs`` streams of ``blocks`` blocks, each with one prompt switch once the window is full."""
    switch_at = max(6, blocks // 2)  # from block 5 on a recache is the steady-state one (sink kept, 9 frames)
    if blocks < switch_at + 2:
        raise SystemExit(f"error: bench needs --blocks >= {switch_at + 2}")
    first, second = generator.encode_prompt("a red fox in the snow"), generator.encode_prompt("a blue lake at dusk")
    timer = StageTimer()
    timer.wrap(generator.pipeline)
    per_run = []
    for run in range(runs):
        torch.cuda.synchronize()
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
            decode_ms.append(cuda_ms(lambda latents=latents: generator.decoder.decode(latents)))
            (switch_block_s if switching else block_s).append(time.perf_counter() - b0)
        steady_s = time.perf_counter() - started
        # end to end through the generator's own path (side-stream decode + pinned copy)
        e2e0, e2e_frames = time.perf_counter(), 0
        for _ in range(blocks):
            e2e_frames += len(generator.next_block())
        e2e_s = time.perf_counter() - e2e0
        generator.reset()
        timer.collect()
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
    med["dit_forward_ms"] = statistics.median(timer.ms["denoise"])
    med["cache_pass_ms"] = statistics.median(timer.ms["cache"])
    med["recache_ms"] = statistics.median(timer.ms["recache"])
    med["runs"] = per_run
    return med


def bench_sessions(worker: GpuWorker, sessions: int, blocks: int, runs: int, fps: float = PLAYBACK_FPS) -> dict:
    """``sessions`` streams at once on one GPU worker, each driven from its own thread as an engine drives
    it (unpaced: each asks for its next block as soon as it has the last), all started together; one prompt
    switch each at the same block as ``bench_generator``. Per session: FPS over blocks 1.. (wall clock),
    block intervals, and *deadline misses*: blocks delivered after a ``fps`` playback that started with
    block 0 would have run out of frames. Medians over runs."""
    switch_at = max(6, blocks // 2)
    handles = [worker.session(fps) for _ in range(sessions)]
    prompts = (handles[0].encode_prompt("a red fox in the snow"), handles[0].encode_prompt("a blue lake at dusk"))
    per_run = []
    with ThreadPoolExecutor(sessions) as pool:
        for run in range(runs):
            barrier = threading.Barrier(sessions, timeout=600)
            futures = [
                pool.submit(_drive, h, run * sessions + i, prompts, switch_at, blocks, fps, barrier)
                for i, h in enumerate(handles)
            ]
            results = [f.result() for f in futures]
            intervals = sorted(x for r in results for x in r["intervals_s"])
            per_run.append({
                "fps_per_session": [r["fps"] for r in results],
                "aggregate_fps": sum(r["fps"] for r in results),
                "min_session_fps": min(r["fps"] for r in results),
                "block_p50_ms": 1e3 * statistics.median(intervals),
                "block_p95_ms": 1e3 * intervals[round(0.95 * (len(intervals) - 1))],
                "deadline_misses": sum(r["misses"] for r in results),
                "first_frame_s": max(r["first_frame_s"] for r in results),
            })  # fmt: skip
    keys = [k for k in per_run[0] if k != "fps_per_session"]
    med = {key: statistics.median(r[key] for r in per_run) for key in keys}
    med["sessions"] = sessions
    med["runs"] = per_run
    return med


def _drive(handle, seed: int, prompts, switch_at: int, blocks: int, fps: float, barrier: threading.Barrier) -> dict:
    """One session's stream for ``bench_sessions``: delivery times and deadline misses."""
    try:
        handle.begin(seed, prompts[0])
        barrier.wait()
    except BaseException:
        barrier.abort()  # the other sessions fail too instead of waiting
        raise
    started = time.perf_counter()
    times, frames = [], []
    for b in range(blocks):
        if b == switch_at:
            handle.switch_prompt(prompts[1])
        frames.append(len(handle.next_block()))
        times.append(time.perf_counter())
    handle.reset()
    due = [times[0] + sum(frames[:k]) / fps for k in range(1, blocks)]
    return {
        "first_frame_s": times[0] - started,
        "fps": sum(frames[1:]) / (times[-1] - times[0]),
        "intervals_s": [b - a for a, b in zip(times, times[1:], strict=False)],
        "misses": sum(t > d for t, d in zip(times[1:], due, strict=True)),
    }


def sessions_row(decoder: str, r: dict) -> str:
    return (
        f"{decoder:>4} x{r['sessions']} | {r['min_session_fps']:5.1f} FPS per session (min) | "
        f"{r['aggregate_fps']:5.1f} FPS in all | block p50 {r['block_p50_ms']:6.1f} ms "
        f"p95 {r['block_p95_ms']:6.1f} ms | "
        f"misses {r['deadline_misses']:.0f} | first frame {r['first_frame_s']:.3f} s | peak {r['peak_gib']:.1f} GiB"
    )


def run_bench(args) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("error: bench needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "configs": {}}
    for decoder in args.decoders:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t5 = _resident_t5() if args.with_t5 else None
        generator = random_longlive("cuda", decoder)
        if args.compile == "on":
            enable_compile(generator)
        warm_s = warm_up(generator, report=lambda line: print("  " + line, flush=True))
        torch.cuda.reset_peak_memory_stats()  # steady-state peak, not compile/autotune workspaces
        result = bench_generator(generator, args.blocks, args.runs)
        result["warm_up_s"] = warm_s
        if t5 is not None:
            result["t5_encode_ms"] = statistics.median(cuda_ms(t5) for _ in range(5))
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        results["configs"][decoder] = result
        print(table_row(decoder, result), flush=True)
        if getattr(args, "sessions", None):
            worker = GpuWorker(generator)
            try:
                for count in args.sessions:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    shared = bench_sessions(worker, count, args.blocks, args.runs)
                    shared["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                    results["configs"][f"{decoder} x{count}"] = shared
                    print(sessions_row(decoder, shared), flush=True)
            finally:
                worker.close()
        del generator, t5
    return results


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
    return (
        f"{decoder:>4} | DiT fwd {r['dit_forward_ms']:6.1f} ms | cache {r['cache_pass_ms']:6.1f} ms | "
        f"decode {r['decode_ms']:6.1f} ms | block {r['block_ms']:6.1f} ms | {r['fps']:5.1f} FPS | "
        f"first frame {r['time_to_first_frame_s']:.3f} s | switch +{r['switch_ms']:5.1f} ms "
        f"(recache {r['recache_ms']:5.1f}) | "
        f"peak {r['peak_gib']:.1f} GiB"
    )


def main(args) -> int:
    results = run_bench(args)
    print(json.dumps(results, indent=2, default=float))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
    return 0
