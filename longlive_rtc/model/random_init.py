"""Random weights for tests and benchmarks: a normal draw everywhere, RMSNorm scales around 1."""

from __future__ import annotations

import torch
from torch import nn

NORM_SUFFIXES = ("norm_q.weight", "norm_k.weight", "norm3.weight")


@torch.no_grad()
def randomize_(model: nn.Module, std: float = 0.02, norm_std: float = 0.0, seed: int = 0) -> nn.Module:
    """Fill every parameter from N(0, std) (norm scales from N(1, norm_std)) in place; returns the model.

    Trained-like magnitudes (std 0.02) keep a 30-layer bf16 stack finite; larger ones make small test
    models sensitive to their inputs.
    """
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith(NORM_SUFFIXES):
            parameter.normal_(1.0, norm_std, generator=generator) if norm_std else parameter.fill_(1.0)
        else:
            parameter.normal_(0.0, std, generator=generator)
    return model
