"""Self-attention KV cache of LongLive: a per-layer buffer of `window` latent frames whose first `sink`
slots (filled by block 0) are the frame sink; older non-sink frames are evicted by shifting.

The bookkeeping follows v1.0 `CausalWanSelfAttention` exactly (reference section 3.3), but in frames
instead of tokens, on host integers (no `.item()` syncs), and with the writes done in place:

* `global_end` (G): one past the last absolute frame written; `local_end` (L): one past the last used slot.
* A call for frames `[start, start+n)` is a *recompute* when `start+n <= G and start > origin` (origin: the
  frame the stream, or the take since a hard cut, began at; 0 in v1.0).
* It *rolls* when `start+n > G and n+L > window`: `evicted = n+L-window` frames leave, slots
  `[sink+evicted, sink+evicted+rolled)` move to `[sink, sink+rolled)` with `rolled = L-evicted-sink`.
* New keys go to `[write_start, L')`, `L' = L + (start+n-G) - evicted`; a recompute never writes into
  the sink unless `sink_recache` (the `global_sink=False` recache); leading frames that would land in
  the sink are dropped.
* Attention keys: sink slots `[0, sink)` plus `[max(sink, L'-(window-sink)), L')`, no mask.
* Pointers move only when the call is not a recompute.

Keys are stored rotated at their absolute frame position (`rope_mode="absolute"`, v1.0) or un-rotated
(`rope_mode="slot"`, the "infinite" variant, which rotates the gathered keys by slot index per call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .rope import apply_rope

ABSOLUTE = "absolute"
SLOT = "slot"


@dataclass(frozen=True)
class CachePlan:
    """What one forward call does to the cache; all values in latent frames."""

    start: int  # absolute frame of the first query frame
    num_frames: int
    is_recompute: bool
    evicted: int  # frames evicted by the roll (0: no roll)
    rolled: int  # frames shifted towards the sink by the roll
    local_start: int  # slot the first query frame maps to
    write_start: int  # first slot written
    local_end: int  # L' (one past the last slot written)
    key_ranges: tuple[tuple[int, int], ...]  # slot ranges attended, in order

    @property
    def key_offset(self) -> int:
        """Index of the first written frame among the call's frames."""
        return self.write_start - self.local_start

    @property
    def end(self) -> int:
        return self.start + self.num_frames

    @property
    def key_slots(self) -> list[int]:
        return [s for a, b in self.key_ranges for s in range(a, b)]


class KVCache:
    """K/V buffers `[layers, B, window*frame_len, heads, head_dim]` plus host-side bookkeeping."""

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        head_dim: int,
        frame_seq_len: int,
        window: int = 12,
        sink: int = 3,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
    ) -> None:
        if not 0 <= sink < window:
            raise ValueError("need 0 <= sink < window")
        self.window, self.sink, self.frame_seq_len = window, sink, frame_seq_len
        shape = (num_layers, batch_size, window * frame_seq_len, num_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.global_end = 0
        self.local_end = 0
        self.origin = 0  # first frame of the take in the cache (0, or the frame of a hard cut)
        self.rope_mode = ABSOLUTE
        self.slot_frames: list[int] = [-1] * window  # absolute frame held by each slot (-1: zeros)
        self.trace: list[tuple[int, int, list[int]]] | None = None  # set to [] to record (start, n, attended)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def reset(self, origin: int = 0) -> None:
        """Empty the cache for a stream (or a take, after a hard cut) whose first frame is ``origin``."""
        self.clear_values()
        self.global_end, self.local_end, self.origin = origin, 0, origin
        self.rope_mode = ABSOLUTE

    def clear_values(self) -> None:
        """Zero K and V of every layer, keeping the pointers (recache with `global_sink=False`)."""
        self.k.zero_()
        self.v.zero_()
        self.slot_frames = [-1] * self.window

    # --- planning (host only) -------------------------------------------------------------------

    def plan(self, start: int, num_frames: int, sink_recache: bool = False) -> CachePlan:
        """Plan a call for frames `[start, start+num_frames)`; see the module docstring."""
        n, g, loc, cap, sink = num_frames, self.global_end, self.local_end, self.window, self.sink
        end = start + n
        is_recompute = end <= g and start > self.origin
        evicted = rolled = 0
        if end > g and n + loc > cap:
            evicted = n + loc - cap
            rolled = loc - evicted - sink
            if rolled < 0:
                raise ValueError(f"a call of {n} frames does not fit a window of {cap} with sink {sink}")
        local_end = loc + (end - g) - evicted
        local_start = local_end - n
        if local_start < 0 or local_end > cap:
            raise ValueError(f"frames [{start}, {end}) do not fit the cache (G={g}, L={loc})")
        write_start = local_start
        if is_recompute and not sink_recache:
            write_start = max(local_start, sink)
        if sink > 0:
            ranges = [(0, sink)]
            lo = max(sink, local_end - (cap - sink))
            if local_end > lo:
                ranges.append((lo, local_end))
            if len(ranges) == 2 and ranges[1][0] == sink:  # contiguous: one view, no concat
                ranges = [(0, local_end)]
        else:
            ranges = [(max(0, local_end - cap), local_end)]
        return CachePlan(
            start=start,
            num_frames=n,
            is_recompute=is_recompute,
            evicted=evicted,
            rolled=rolled,
            local_start=local_start,
            write_start=write_start,
            local_end=local_end,
            key_ranges=tuple(ranges),
        )

    def commit(self, plan: CachePlan) -> None:
        """Apply a plan's effect on the bookkeeping once all layers have run it."""
        frames = self.slot_frames
        if plan.evicted:
            s, e, r = self.sink, plan.evicted, plan.rolled
            frames[s : s + r] = frames[s + e : s + e + r]
        for slot in range(plan.write_start, plan.local_end):
            frames[slot] = plan.start + plan.key_offset + slot - plan.write_start
        if not plan.is_recompute:
            self.global_end, self.local_end = plan.end, plan.local_end
        if self.trace is not None:
            self.trace.append((plan.start, plan.num_frames, self.attended_frames(plan)))

    def attended_frames(self, plan: CachePlan) -> list[int]:
        """Absolute frames whose keys a call attends to (valid after `commit`)."""
        return [self.slot_frames[s] for s in plan.key_slots]

    # --- per-layer tensor work ------------------------------------------------------------------

    def _tok(self, frames: int) -> int:
        return frames * self.frame_seq_len

    def _roll(self, buf: Tensor, plan: CachePlan) -> None:
        """Shift `rolled` frames from `sink+evicted` down to `sink`, in place, in non-overlapping pieces."""
        s, e, r = self.sink, plan.evicted, plan.rolled
        for j in range(0, r, e):
            c = min(e, r - j)
            buf[:, self._tok(s + j) : self._tok(s + j + c)].copy_(
                buf[:, self._tok(s + e + j) : self._tok(s + e + j + c)]
            )

    def update(self, layer: int, plan: CachePlan, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Roll and write this call's `k, v [B, n*frame_len, H, D]` into `layer`; return the attention keys/values."""
        kb, vb = self.k[layer], self.v[layer]
        if plan.evicted:
            self._roll(kb, plan)
            self._roll(vb, plan)
        if plan.local_end > plan.write_start:
            src = slice(self._tok(plan.key_offset), self._tok(plan.num_frames))
            dst = slice(self._tok(plan.write_start), self._tok(plan.local_end))
            kb[:, dst].copy_(k[:, src])
            vb[:, dst].copy_(v[:, src])
        return self.gather(layer, plan)

    def gather(self, layer: int, plan: CachePlan) -> tuple[Tensor, Tensor]:
        """Keys and values of the attended slots (a view when they are contiguous)."""
        kb, vb = self.k[layer], self.v[layer]
        parts = [slice(self._tok(a), self._tok(b)) for a, b in plan.key_ranges]
        if len(parts) == 1:
            return kb[:, parts[0]], vb[:, parts[0]]
        return torch.cat([kb[:, p] for p in parts], 1), torch.cat([vb[:, p] for p in parts], 1)

    # --- RoPE positions ---------------------------------------------------------------------------

    def query_positions(self, plan: CachePlan) -> list[int]:
        """RoPE frame positions of the call's queries (and of its new keys in absolute mode)."""
        if self.rope_mode == ABSOLUTE:
            first = plan.start
        else:  # slot index the query frames occupy (the last `n` slots after a roll, as in v1.0)
            first = self.window - plan.num_frames if plan.evicted else plan.local_start
        return list(range(first, first + plan.num_frames))

    def key_positions(self, plan: CachePlan) -> list[int] | None:
        """RoPE frame positions to rotate gathered keys by (slot mode), or None (stored rotated)."""
        return plan.key_slots if self.rope_mode == SLOT else None

    def stored_positions(self) -> list[int]:
        """RoPE frame position each slot's keys are rotated at in absolute mode (0 for empty slots)."""
        return [max(f, 0) for f in self.slot_frames]

    def to_slot_mode(self, unrotate: Tensor) -> None:
        """Switch to slot RoPE: un-rotate every stored key by `unrotate [window*frame_len, 1, D/2]`
        (the conjugate rotations of `stored_positions()`), in place, layer by layer."""
        if self.rope_mode == SLOT:
            return
        for layer in range(self.k.shape[0]):
            self.k[layer].copy_(apply_rope(self.k[layer], unrotate))
        self.rope_mode = SLOT
