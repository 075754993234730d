"""The LongLive generator: the model pipeline behind the Generator protocol.

Each block: 4 denoising forwards + the t=0 cache pass on the DiT (default CUDA stream), then the
streaming decode on a side CUDA stream, uint8 frames copied device -> host through pinned memory.
Prompt embeddings are computed by the engine when a prompt is scheduled, ahead of its switch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..model import (
    CausalWanModel,
    StreamingDecoder,
    StreamingPipeline,
    longlive_1_3b,
    tiny,
)
from ..model.compile import compile_dit, compile_vae
from ..model.fp8 import PRECISIONS, float8_problem, is_float8, use_float8
from ..model.graphs import ForwardGraphs
from ..model.random_init import randomize_
from ..model.tae import TAEConfig, TAEDecoder
from ..model.vae import VAEConfig, WanVAEDecoder
from .base import Geometry

log = logging.getLogger(__name__)

INDUCTOR_CACHE = Path.home() / ".cache" / "longlive-rtc" / "inductor"


@dataclass
class LaunchedBlock:
    """A block queued on the device: its frames (CPU runs), or how many and the event after their copy."""

    frames: np.ndarray | None
    count: int = 0
    done: torch.cuda.Event | None = None


class LongLiveGenerator:
    """Streams LongLive video blocks as uint8 RGB frames."""

    name = "longlive"

    def __init__(
        self, pipeline: StreamingPipeline, encode: Callable[[str], torch.Tensor], decoder: StreamingDecoder
    ) -> None:
        cfg = pipeline.config
        self.pipeline = pipeline
        self.decoder = decoder
        self.geometry = Geometry(  # the model's own block size, so the engine's blocks are the pipeline's
            width=8 * cfg.latent_width, height=8 * cfg.latent_height, frames_per_block=cfg.num_frame_per_block
        )
        self._encode = encode
        self.device = pipeline.model.device
        cuda = self.device.type == "cuda"
        self._side = torch.cuda.Stream(self.device) if cuda else None
        most = self.geometry.max_video_frames_in_block
        shape = (most, self.geometry.height, self.geometry.width, 3)
        self._host = torch.empty(shape, dtype=torch.uint8, pin_memory=cuda)
        self.handover = None  # a LatentHandover when the decoder is on another device (handover.place_decoder)

    def check_prompt(self, prompt: str) -> None:
        """UTF-8 text that the umT5 tokenizer turns into at least one token once cleaned (as ``encode_prompt``
        cleans it: ftfy, HTML entities, whitespace). Tokenising costs well under a millisecond; encoding
        is left to the worker."""
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"the prompt is not valid Unicode text ({exc.reason} at index {exc.start})") from None
        tokenizer = getattr(self._encode, "tokenizer", None)  # a TextEncoder; the random stand-in has none
        if tokenizer is None:
            return
        try:
            _, mask = tokenizer([prompt])
        except Exception as exc:  # the tokenizer (Rust) or ftfy refusing the text
            raise ValueError(f"the umT5 tokenizer cannot encode the prompt: {type(exc).__name__}: {exc}") from None
        if int(mask.sum()) <= 1:  # the end-of-text token only
            raise ValueError("nothing is left of the prompt once cleaned (whitespace and HTML entities only)")

    def encode_prompt(self, prompt: str) -> torch.Tensor:
        return self._encode(prompt)

    @property
    def encodes_on_cpu(self) -> bool:
        """Whether the text encoder runs on the CPU (``--t5-device cpu``, or a CPU model)."""
        return torch.device(getattr(self._encode, "device", self.device)).type == "cpu"

    def begin(self, seed: int, prompt: torch.Tensor) -> None:
        self.decoder.reset()
        self.pipeline.begin(seed, prompt)

    def switch_prompt(self, prompt: torch.Tensor) -> None:
        self.pipeline.switch_prompt(prompt)

    def cut(self, prompt: torch.Tensor) -> None:
        """Hard cut: the KV cache is dropped (``StreamingPipeline.cut``); the decoder's causal cache goes on,
        so blocks keep decoding to 12 frames and the first frames after the cut may carry a trace of the
        last ones before it."""
        self.pipeline.cut(prompt)

    def set_prompt(self, prompt: torch.Tensor) -> None:
        self.pipeline.set_prompt(prompt)

    def next_block(self) -> np.ndarray:
        return self.collect(self.launch_block())

    @torch.no_grad()
    def launch_block(self) -> LaunchedBlock:
        """Queue the next block (DiT forwards, then the decode and host copy on the side stream) without
        waiting for it; ``collect`` waits. A GPU worker queues another session's block in between."""
        latents = self.pipeline.next_block()
        if self.handover is not None:
            latents = self.handover.send(latents)
        if self._side is None:
            return LaunchedBlock(self.decoder.decode(latents)[0].cpu().numpy())
        if self.handover is not None and self.handover.stream is not None:
            self._side.wait_stream(self.handover.stream)
        else:
            self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            latents.record_stream(self._side)
            frames = self.decoder.decode(latents)[0]
            count = frames.shape[0]
            self._host[:count].copy_(frames, non_blocking=True)
            done = torch.cuda.Event(enable_timing=True)  # a GPU worker times its sessions' blocks
            done.record(self._side)
        return LaunchedBlock(None, count, done)

    def collect(self, block: LaunchedBlock) -> np.ndarray:
        """The frames of a launched block, once the device has copied them out."""
        if block.done is None:
            assert block.frames is not None
            return block.frames
        block.done.synchronize()
        return self._host[: block.count].numpy().copy()  # the pinned buffer is reused by the next block

    def fork(self) -> LongLiveGenerator:
        """Another stream over the same weights, text encoder and decoder: its own KV cache, cross-attention
        cache, noise and decoder cache (one per session on a shared GPU)."""
        decoder = StreamingDecoder(self.decoder.model, self.decoder.frame_chunk)
        other = LongLiveGenerator(self.pipeline.fork(), self._encode, decoder)
        other.handover = self.handover.fork() if self.handover is not None else None
        other._side = self._side  # one decode stream: its memory pool is warm, and shared, from the warm-up
        return other

    def reset(self) -> None:
        self.pipeline.end()
        self.decoder.reset()


class RandomPromptEncoder:
    """Benchmark stand-in for umT5 when running on random weights: a fixed random embedding per prompt."""

    def __init__(self, device: torch.device, dtype: torch.dtype, text_len: int = 512, dim: int = 4096) -> None:
        self.device, self.dtype, self.shape = device, dtype, (1, text_len, dim)

    def __call__(self, prompt: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randn(self.shape, generator=generator, device=self.device).to(self.dtype)


def random_longlive(
    device: str = "cuda", decoder: str = "wan", dtype: torch.dtype = torch.bfloat16, *, tiny_model: bool = False
) -> LongLiveGenerator:
    """Full-size LongLive with random weights (benchmarks and GPU tests; no files needed).

    ``tiny_model``: tiny configs instead (48x32 frames; pass ``dtype=torch.float32`` on the CPU), to check a
    benchmark itself in seconds; their numbers mean nothing.
    """
    config = tiny().with_(in_dim=16, out_dim=16, latent_height=4, latent_width=6) if tiny_model else longlive_1_3b()
    with torch.device("meta"):
        model = CausalWanModel(config)
    model = randomize_(model.to_empty(device=device), std=0.02).to(dtype).eval().requires_grad_(False)
    torch.manual_seed(0)
    with torch.device(device):
        if decoder == "wan":
            frames = WanVAEDecoder(VAEConfig.tiny() if tiny_model else VAEConfig.wan2_1())
        else:
            frames = TAEDecoder(TAEConfig.tiny() if tiny_model else TAEConfig.taew2_1())
        frames = frames.to(dtype).eval().requires_grad_(False)
    encoder = RandomPromptEncoder(torch.device(device), dtype, model.config.text_len, model.config.text_dim)
    return LongLiveGenerator(StreamingPipeline(model), encoder, StreamingDecoder(frames))


def enable_compile(generator: LongLiveGenerator) -> None:
    """The speed path: compile the two halves of every DiT block around its cache write (fixed shapes,
    names kept) and, for the Wan VAE, channels-last convolutions with the work between them compiled.

    The Inductor cache lives in ``~/.cache/longlive-rtc/inductor`` so restarts skip most compile time.
    """
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(INDUCTOR_CACHE))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    compile_dit(generator.pipeline.model)
    if isinstance(generator.decoder.model, WanVAEDecoder):
        compile_vae(generator.decoder.model.optimize(channels_last=True))


def enable_cuda_graphs(generator: LongLiveGenerator) -> None:
    """Replay the DiT's calls as CUDA graphs once captured (``model/graphs.py``): one launch per forward in place
    of hundreds, for this stream and every stream forked from it. Raises ValueError off CUDA."""
    if generator.device.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, not {generator.device}")
    generator.pipeline.graphs = ForwardGraphs(generator.pipeline.model)


def use_precision(generator: LongLiveGenerator, precision: str) -> None:
    """Run the DiT in `precision` (`PRECISIONS`): "bf16" changes nothing (a converted model stays FP8), "fp8"
    converts the blocks' linears (`model/fp8.py`) in place, for every stream over this model. Raises
    ValueError where it cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if precision == "fp8" and not is_float8(generator.pipeline.model):
        problem = float8_problem(generator.device, generator.pipeline.model.dtype)
        if problem:
            raise ValueError(problem)
        use_float8(generator.pipeline.model)


#: Warm-up switches after these blocks: recaches of 6 and 12 frames from the stream start, then the
#: steady-state one (sink kept, 9 frames); every compiled shape is met before the first real stream.
WARM_UP_SWITCHES = (1, 3, 5)


def warm_up(generator: LongLiveGenerator, blocks: int = 7, report: Callable[[str], None] = log.info) -> float:
    """Run every KV-window and recache shape once, in absolute and slot RoPE mode, so no stream compiles."""
    started = time.perf_counter()
    prompts = [generator.encode_prompt(f"warm-up prompt {i}") for i in range(2)]
    generator.begin(0, prompts[0])
    for i in range(blocks + 2):
        if i == blocks:  # what a stream meets past rope_max_frames (minutes in): slot positions
            generator.pipeline.use_slot_positions()
        t0 = time.perf_counter()
        generator.next_block()
        report(f"warm-up block {i + 1}/{blocks + 2}: {time.perf_counter() - t0:.2f} s")
        if i in WARM_UP_SWITCHES or i == blocks:
            generator.switch_prompt(prompts[(i + 1) % 2])
    generator.pipeline.flush()  # the last block's deferred cache pass: the slot-mode one
    generator.reset()
    return time.perf_counter() - started
