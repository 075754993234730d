"""Late binding: when the engine starts the next block, so that its prompt is read as late as possible.

A block generated as early as the buffer allows reads its prompt a whole block (0.8 s at 15 FPS) before it
is needed; started *just in time* (the measured block time plus a safety margin before the tick that would
find the buffer empty) it reads the prompt only that long before its first frame is on air. Zero stalls stays
the first rule, so the margin adapts to measured jitter: the estimate is the longest of the recent blocks, and
the margin never falls below the largest recent *overshoot* (how much a block took longer than the estimate
it started with: what a loaded machine, a second session on the GPU or a slower decoder adds), with 25 %
headroom, plus a third of a frame; above that floor it doubles after a near-stall (a block ready less than a third of a
frame early) or a stall, and shrinks by 2 % per block on time.

Even just in time, a prompt waits for the block on air to end: up to a block more. With ``asap`` (``serve``'s
default, ``--live-switch asap``; the Pacer's own default is off) a *live*
prompt (one scheduled at or before the next block to generate) starts its block at once and that block
replaces what is left of the one on air, so the prompt airs one block time after it came (two at most, when a
block had just begun); the frames skipped are never shown.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Pacer:
    """Just-in-time block starts from measured block times and an adaptive safety margin (seconds)."""

    enabled: bool = True
    asap: bool = False  # live prompts: their block airs as soon as it is generated (skipping queued frames)
    margin: float = 0.15
    min_margin: float = 0.04
    max_margin: float = 1.0
    shrink: float = 0.98  # per block on time
    window: int = 8  # blocks whose longest time is the estimate
    jitter_window: int = 64  # blocks whose largest overshoot sets the margin's floor (51 s at 15 FPS)
    jitter_headroom: float = 1.25  # the floor: this times that overshoot, plus a third of a frame
    durations: deque[float] = field(default_factory=deque)
    switch_durations: deque[float] = field(default_factory=deque)  # blocks that switched a prompt in
    overshoots: deque[float] = field(default_factory=deque)  # seconds past the estimate each block started with
    near_stalls: int = 0

    def estimate(self) -> float | None:
        """The time the next block may take: the longest of the recent ones and of recent prompt switches."""
        recent = [*self.durations, *self.switch_durations]
        return max(recent) if recent else None

    def floor(self, period: float) -> float:
        """The least margin: ``min_margin``, or the recent jitter if more: the largest overshoot of the last
        ``jitter_window`` blocks times ``jitter_headroom``, plus a third of a frame (what a near-stall is)."""
        worst = max(self.overshoots, default=0.0)
        jitter = self.jitter_headroom * worst + period / 3 if worst > 0.0 else 0.0
        return min(self.max_margin, max(self.min_margin, jitter))

    def start_in(
        self, now: float, buffered: int, last_shown: float | None, period: float, ahead: float = 0.0
    ) -> float:
        """Seconds to wait before starting the next block (0: at once).

        ``buffered`` frames wait to go on air, one per ``period``; the last frame went on air at ``last_shown``
        (None: playback has not begun, so there is nothing to wait for). ``ahead``: seconds of other streams'
        blocks that may run on a shared device before this one (``base.start_lead``): it starts that much
        earlier.
        """
        estimate = self.estimate()
        if not self.enabled or estimate is None or last_shown is None or buffered == 0:
            return 0.0
        needed = last_shown + (buffered + 1) * period  # the first tick that would find the buffer empty
        return max(0.0, needed - estimate - self.margin - ahead - now)

    def slack(self, now: float, buffered: int, last_shown: float | None, period: float) -> float | None:
        """How long before it is needed a block finished at ``now`` is ready (negative: too late)."""
        if last_shown is None:
            return None
        return last_shown + (buffered + 1) * period - now

    def record(self, duration: float, slack: float | None, period: float, switched: bool, stalled: bool) -> None:
        """A block took ``duration`` s and was ready ``slack`` s early; adapt the estimate and the margin."""
        estimate = self.estimate()
        if estimate is not None:
            self.overshoots.append(max(0.0, duration - estimate))
            while len(self.overshoots) > self.jitter_window:
                self.overshoots.popleft()
        kept = self.switch_durations if switched else self.durations
        kept.append(duration)
        while len(kept) > (self.window // 2 if switched else self.window):
            kept.popleft()
        floor = self.floor(period)
        if slack is None:
            self.margin = max(self.margin, floor)
            return
        if stalled or slack < period / 3:
            self.near_stalls += 1
            self.margin = min(self.max_margin, max(2 * self.margin, self.margin + period / 3 - slack, floor))
        else:
            self.margin = max(floor, self.margin * self.shrink)
