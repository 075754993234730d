"""Few-step flow-matching sampler of LongLive v1.0 (reference section 4).

Schedule: Wan `FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True)` with 1000 training steps,
float32: `sigma = linspace(1, 0, 1001)[:-1]`, shifted `5s / (1 + 4s)`, `t = 1000 * sigma`.
The config steps `[1000, 750, 500, 250]` are warped to table indices `1000 - step`, giving
t = [1000, 937.5, 833.33, 625] and sigma = [1, 0.9375, 0.8333, 0.625].

Per step the model predicts a velocity `v`; `x0 = x_t - sigma_t * v` in float64 (cast back), and the
next input is `(1 - sigma') * x0 + sigma' * eps` computed in float32 (cast to eps's dtype).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

DENOISING_STEPS = (1000, 750, 500, 250)


class FlowMatchSchedule:
    """Sigma and timestep tables (float32, 1000 entries, descending)."""

    def __init__(self, shift: float = 5.0, num_train_timesteps: int = 1000) -> None:
        sigmas = torch.linspace(1.0, 0.0, num_train_timesteps + 1, dtype=torch.float32)[:-1]
        self.sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.timesteps = self.sigmas * num_train_timesteps
        self.num_train_timesteps = num_train_timesteps

    def index(self, t: float) -> int:
        """Table index nearest to timestep `t` (Wan's argmin lookup)."""
        return int(torch.argmin((self.timesteps.double() - t).abs()))

    def sigma(self, t: float) -> float:
        """Sigma (a float32 value) used for timestep `t`."""
        return float(self.sigmas[self.index(t)])


def warped_timesteps(schedule: FlowMatchSchedule, steps: Sequence[int] = DENOISING_STEPS) -> Tensor:
    """`warp_denoising_step`: read `timesteps ++ [0]` at indices `num_train_timesteps - step` (float32)."""
    table = torch.cat([schedule.timesteps, torch.zeros(1, dtype=torch.float32)])
    return table[schedule.num_train_timesteps - torch.tensor(list(steps), dtype=torch.long)]


class DenoisingSampler:
    """The per-block denoising arithmetic; step `i` runs the model at `timesteps[i]`."""

    def __init__(self, steps: Sequence[int] = DENOISING_STEPS, shift: float = 5.0, warp: bool = True) -> None:
        self.schedule = FlowMatchSchedule(shift)
        self.timesteps = (
            warped_timesteps(self.schedule, steps) if warp else torch.tensor(list(steps), dtype=torch.float32)
        )
        self.sigmas = [self.schedule.sigma(float(t)) for t in self.timesteps]
        # 1 - sigma rounded to float32, as the official add_noise computes it on a float32 tensor
        self._keep = [float(1 - torch.tensor(s, dtype=torch.float32)) for s in self.sigmas]

    @property
    def num_steps(self) -> int:
        return len(self.sigmas)

    def to_x0(self, flow: Tensor, x_t: Tensor, step: int) -> Tensor:
        """`x0 = x_t - sigma_t * flow` in float64, returned in `flow`'s dtype."""
        return (x_t.double() - self.sigmas[step] * flow.double()).to(flow.dtype)

    def renoise(self, x0: Tensor, noise: Tensor, step: int) -> Tensor:
        """Input of step `step`: `(1 - sigma) * x0 + sigma * noise`, in at least float32, cast to noise's dtype."""
        acc = torch.promote_types(torch.promote_types(x0.dtype, noise.dtype), torch.float32)
        return (x0.to(acc) * self._keep[step] + noise.to(acc) * self.sigmas[step]).to(noise.dtype)
