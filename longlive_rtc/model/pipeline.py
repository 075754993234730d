"""Streaming LongLive generation: one block of latent frames per call, prompt switches by KV-recache.

Per block (reference section 4.2): 4 denoising forwards at the warped timesteps, each predicting x0
and re-noising it with fresh noise, then one forward of the clean x0 at t=0 that rewrites the block's
keys/values in the cache. On a prompt switch (section 5.3) the cross-attention K/V are replaced and
the last `min(window, s)` clean frames are re-run at t=0 with the new prompt in one bidirectional
pass: with `global_sink` the sink is kept and the last frames are rewritten, without it the cache
is zeroed and the recached frames become the new sink and window.

A hard cut (`cut`) drops the cache and the recent frames and goes on with the new prompt exactly as a
stream begun at that frame does (`begin(..., start_frame=s)`): the next block's keys are written at
absolute RoPE positions s, s+1, ... into an empty cache and become its sink; a later recache re-runs
at most the frames since the cut. Only the noise differs: a cut keeps drawing from the run's source.
`set_prompt` changes the cross-attention conditioning alone (the steps of a blend), after the
deferred cache pass, which belongs to the previous conditioning.

Two exact reorderings make this cheaper than the official loop, with the same cache contents:

* The t=0 cache pass of a block is *deferred* to the start of the next call, so `next_block` returns
  the clean latents one forward earlier. A prompt switch in between rewrites those keys/values anyway
  (with the new prompt), so its recache *replaces* the deferred pass instead of following it.
* With `global_sink`, the leading recache frames whose keys would land in the sink slots are dropped
  from the recache: their keys are never written and nothing attends to them, so their queries are
  wasted work (9 of 12 frames remain in a full window).

Past `rope_max_frames` (1024) absolute RoPE positions leave the range the official code supports;
by default the stream then switches the cache to slot positions (the "infinite" variant), so a
live stream can run forever.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch
from torch import Tensor

from .dit import CausalWanModel, CrossAttnCache
from .graphs import ForwardGraphs
from .kv_cache import ABSOLUTE, KVCache
from .noise import NoiseSource, SeededNoise
from .sampler import DENOISING_STEPS, DenoisingSampler

#: Called around every model call of a pipeline as ``hook(kind, x)`` (``kind``: "denoise", "cache" or
#: "recache"; ``x``: the call's `[B, F, C, H, W]` input); the call runs inside the context it returns.
StepHook = Callable[[str, Tensor], AbstractContextManager[object]]


class StreamingPipeline:
    """Generates latent blocks `[B, F, C, H, W]` (F = 3) one at a time for a batch of B streams.

    ``step_hook`` (a :data:`StepHook`, None by default) observes every model call, e.g. to time it
    (``longlive_rtc.timing.StageTimer``); it changes nothing that is computed. A fork does not inherit it.
    """

    def __init__(
        self,
        model: CausalWanModel,
        *,
        noise: NoiseSource | None = None,
        global_sink: bool = True,
        denoising_steps: Sequence[int] = DENOISING_STEPS,
        timestep_shift: float = 5.0,
        context_noise: float = 0.0,
        beyond_rope_limit: str = "slot",
    ) -> None:
        if beyond_rope_limit not in ("slot", "absolute"):
            raise ValueError("beyond_rope_limit must be 'slot' or 'absolute'")
        self.model = model
        self.config = model.config
        self.noise: NoiseSource = noise if noise is not None else SeededNoise()
        self.global_sink = global_sink
        self.sampler = DenoisingSampler(denoising_steps, timestep_shift)
        self.context_noise = context_noise
        self.beyond_rope_limit = beyond_rope_limit
        self.cache: KVCache | None = None
        self.context: CrossAttnCache | None = None
        self.current_start_frame = 0
        self._history: list[Tensor] = []  # recent clean blocks, for recache
        self._cache_pass_due = False  # the last block's t=0 cache pass (its clean latents: _history[-1])
        self._t_steps: list[Tensor] = []
        self._t_clean: Tensor | None = None
        self.step_hook: StepHook | None = None
        #: Replays the model's calls as CUDA graphs once captured (`graphs.ForwardGraphs`); None: eager calls.
        self.graphs: ForwardGraphs | None = None

    def fork(self) -> StreamingPipeline:
        """A new, unstarted stream over the same model and settings (its own cache, context and noise)."""
        other = StreamingPipeline(
            self.model,
            noise=copy.copy(self.noise),  # every source replaces its generators on reset
            global_sink=self.global_sink,
            context_noise=self.context_noise,
            beyond_rope_limit=self.beyond_rope_limit,
        )
        other.sampler = self.sampler  # the same steps and shift (stateless); wrappers on this instance stay here
        other.graphs = None if self.graphs is None else self.graphs.fork()  # its own graphs (its own cache)
        return other

    @property
    def batch_size(self) -> int:
        return 0 if self.cache is None else self.cache.batch_size

    @property
    def block_shape(self) -> tuple[int, int, int, int, int]:
        cfg = self.config
        return (self.batch_size, cfg.num_frame_per_block, cfg.in_dim, cfg.latent_height, cfg.latent_width)

    def begin(self, seed: int | Sequence[int], prompt_embeds: Tensor, start_frame: int = 0) -> None:
        """Start a new stream: empty cache, frame `start_frame` (0), noise seeded (`seed + i` for sample i, or
        one seed each). A stream begun at s > 0 is what a hard cut at s continues with (see `cut`)."""
        b = prompt_embeds.shape[0]
        seeds = [seed + i for i in range(b)] if isinstance(seed, int) else list(seed)
        if len(seeds) != b:
            raise ValueError(f"{len(seeds)} seeds for a batch of {b}")
        model = self.model
        if self.cache is None or self.cache.batch_size != b or self.cache.k.device != model.device:
            self.cache = None  # free the old buffers before allocating new ones
            self.cache = model.new_kv_cache(b)
        self.cache.reset(start_frame)
        self.noise.reset(seeds, model.device)
        self.context = model.encode_context(prompt_embeds)
        self.current_start_frame = start_frame
        self._history = []
        self._cache_pass_due = False
        f = self.config.num_frame_per_block
        self._t_steps = [torch.full((b, f), float(t), device=model.device) for t in self.sampler.timesteps]
        self._t_clean = torch.full((b, f), float(self.context_noise), device=model.device)

    def end(self) -> None:
        """Drop the stream's state and free the cache."""
        self.cache = self.context = self._t_clean = None
        self._history, self._t_steps = [], []
        self._cache_pass_due = False
        self.current_start_frame = 0
        if self.graphs is not None:  # kept: the next stream's cache most likely gets the same memory (else dropped)
            self.graphs.release_prompt()

    def _require_started(self) -> KVCache:
        if self.cache is None or self.context is None:
            raise RuntimeError("call begin() first")
        return self.cache

    def _step(self, kind: str, x: Tensor, t: Tensor, start: int, **kw: bool) -> Tensor | None:
        """Model call on `[B, F, C, H, W]` latents; returns the flow in the same layout.

        `kind` ("denoise", "cache" or "recache") only labels the call, for ``step_hook``.
        """
        cache = self._require_started()
        forward = self.model if self.graphs is None else self.graphs
        if self.step_hook is None:
            flow = forward(x.transpose(1, 2), t, self.context, cache, start, **kw)
        else:
            with self.step_hook(kind, x):
                flow = forward(x.transpose(1, 2), t, self.context, cache, start, **kw)
        return None if flow is None else flow.transpose(1, 2)

    @torch.no_grad()
    def flush(self) -> None:
        """Run the deferred t=0 cache pass of the last block now (the next call would run it anyway)."""
        if self._cache_pass_due:
            self._cache_pass_due = False
            x0 = self._history[-1]
            self._step("cache", x0, self._t_clean, self.current_start_frame - x0.shape[1], compute_output=False)

    @torch.no_grad()
    def next_block(self) -> Tensor:
        """Generate the next block; returns its clean latents `[B, F, C, H, W]` (model dtype).

        The block's own t=0 cache pass is deferred (see the module docstring): it runs at the start of
        the next call, or is replaced by a switch's recache, or by `flush()`.
        """
        cache = self._require_started()
        self.flush()
        start = self.current_start_frame
        self._check_rope_range(start + self.config.num_frame_per_block)
        shape = self.block_shape
        dtype = self.model.dtype
        x = self.noise.block_noise(shape, dtype)
        sampler = self.sampler
        x0 = x
        for i in range(sampler.num_steps):
            flow = self._step("denoise", x, self._t_steps[i], start)
            x0 = sampler.to_x0(flow, x, i)
            if i + 1 < sampler.num_steps:
                x = sampler.renoise(x0, self.noise.step_noise(shape, dtype), i + 1)
        self._cache_pass_due = True  # write the clean K/V later (flush)
        self._remember(x0)
        self.current_start_frame = start + shape[1]
        assert cache.global_end == self.current_start_frame
        return x0

    @torch.no_grad()
    def cut(self, prompt_embeds: Tensor) -> None:
        """Hard cut: empty cache and history, the stream goes on at the same frame with `prompt_embeds`."""
        cache = self._require_started()
        self._check_batch(prompt_embeds)
        self._cache_pass_due = False  # the keys it would write are dropped with the cache
        cache.reset(self.current_start_frame)
        self._history = []
        self.context = self.model.encode_context(prompt_embeds)

    @torch.no_grad()
    def set_prompt(self, prompt_embeds: Tensor) -> None:
        """Condition the next blocks on `prompt_embeds`, no recache (the deferred cache pass runs first)."""
        self._require_started()
        self._check_batch(prompt_embeds)
        self.flush()
        self.context = self.model.encode_context(prompt_embeds)

    def _check_batch(self, prompt_embeds: Tensor) -> None:
        if prompt_embeds.shape[0] != self.batch_size:
            raise ValueError("prompt batch size differs from the stream's")

    @torch.no_grad()
    def switch_prompt(self, prompt_embeds: Tensor, *, global_sink: bool | None = None) -> None:
        """Use a new prompt from the next block on, recaching the recent frames (KV-recache)."""
        cache = self._require_started()
        self._check_batch(prompt_embeds)
        keep_sink = self.global_sink if global_sink is None else global_sink
        s = self.current_start_frame
        n = min(self.config.local_attn_size, s - cache.origin)
        self.context = self.model.encode_context(prompt_embeds)
        if not keep_sink:
            cache.clear_values()
        self._cache_pass_due = False  # the recache rewrites the last block's keys/values: its cache pass is moot
        if n == 0:
            return
        # frames whose keys would land in the sink are not written, and nothing attends to them: drop them
        skip = cache.plan(s - n, n, sink_recache=not keep_sink).key_offset
        assert n - skip >= self.config.num_frame_per_block  # holds for every valid window/sink
        frames = torch.cat(self._history, dim=1)[:, skip - n :]  # the last n - skip clean frames
        t = torch.full(frames.shape[:2], float(self.context_noise), device=frames.device)
        self._step("recache", frames, t, s - n + skip, sink_recache=not keep_sink, compute_output=False)

    def _remember(self, x0: Tensor) -> None:
        self._history.append(x0)
        f = self.config.num_frame_per_block
        keep = -(-self.config.local_attn_size // f)  # blocks needed to cover the window
        del self._history[:-keep]

    def _check_rope_range(self, end_frame: int) -> None:
        """Switch to slot RoPE before a call would need absolute positions >= rope_max_frames."""
        cache = self._require_started()
        if cache.rope_mode == ABSOLUTE and self.beyond_rope_limit == "slot" and end_frame > self.config.rope_max_frames:
            self.use_slot_positions()

    @torch.no_grad()
    def use_slot_positions(self) -> None:
        """Move the cache to slot RoPE now (automatic past `rope_max_frames`; warm-up calls it early)."""
        cache = self._require_started()
        if cache.rope_mode != ABSOLUTE:
            return
        self.flush()  # the deferred pass belongs to absolute mode
        h, w = self.config.grid_size
        unrotate = self.model.rope.freqs(cache.stored_positions(), h, w, self.model.device).conj()
        cache.to_slot_mode(unrotate)
