"""LongLive's LoRA (`lora.pt`), merged into the base generator weights once at load.

The file holds `{"generator_lora": <PEFT state dict>, ...}` with keys such as
`base_model.model.blocks.0.self_attn.q.lora_A.weight` (A: [rank, in], B: [out, rank]) for every
nn.Linear inside the transformer blocks: self_attn/cross_attn q, k, v, o and ffn.0, ffn.2, i.e. 10 per
block, 300 for the 30-block model. PEFT computes `W x + b + (alpha / rank) * B (A x)`; merging replaces W by
`W + (alpha / rank) * B @ A`, computed in float32 and cast back to W's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, StateDict, _listing, drop_wrapper_tokens, load_state_file

LORA_ENTRY = "generator_lora"
LORA_RANK = 256
LORA_ALPHA = 256.0
PEFT_PREFIXES = ("base_model.model.", "model.")
ADAPTER_NAME = ".default"


def lora_targets(model: nn.Module, under: str = "blocks.") -> list[str]:
    """Names of the Linear layers LongLive adapts: every nn.Linear inside the transformer blocks."""
    return sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith(under))


def read_lora_state(path: str | Path) -> StateDict:
    """The PEFT state dict of the generator (`generator_lora`, or the whole file if that entry is absent)."""
    checkpoint = load_state_file(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(checkpoint).__name__}")
    return dict(checkpoint.get(LORA_ENTRY, checkpoint))


def parse_lora_key(key: str) -> tuple[str, str] | None:
    """`base_model.model.blocks.0.ffn.0.lora_A.weight` -> (`blocks.0.ffn.0`, "A"); None if not a LoRA key."""
    key = drop_wrapper_tokens(key).replace(ADAPTER_NAME + ".weight", ".weight")
    for part in ("A", "B"):
        suffix = f".lora_{part}.weight"
        if key.endswith(suffix):
            module = key[: -len(suffix)]
            for prefix in PEFT_PREFIXES:
                if module.startswith(prefix):
                    module = module[len(prefix) :]
                    break
            return module, part
    return None


def pair_lora(lora: Mapping[str, torch.Tensor], targets: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Match the file's lora_A/lora_B tensors to the target layers; every target must get exactly one pair."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    unexpected: list[str] = []
    for key, tensor in lora.items():
        parsed = parse_lora_key(key)
        if parsed is None or parsed[0] not in targets:
            unexpected.append(key)
            continue
        found.setdefault(parsed[0], {})[parsed[1]] = tensor
    missing = [f"{t}.lora_{p}.weight" for t in targets for p in "AB" if p not in found.get(t, {})]
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing ({len(missing)}): {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected ({len(unexpected)}): {_listing(unexpected)}")
        raise CheckpointError(
            f"LoRA does not cover the {len(targets)} target layers ({2 * len(targets)} tensors expected, "
            f"{len(lora)} in file): " + "; ".join(problems)
        )
    return {t: (found[t]["A"], found[t]["B"]) for t in targets}


def merge_lora(
    state: StateDict,
    lora: Mapping[str, torch.Tensor],
    targets: list[str],
    *,
    rank: int = LORA_RANK,
    alpha: float = LORA_ALPHA,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> StateDict:
    """Return `state` with `W + (alpha/rank) B A` for every target.

    The sum is computed in float32 on `device` (default: where W is) and cast to `dtype` (default: W's);
    the merged tensors stay on `device`.
    """
    pairs = pair_lora(lora, targets)
    scale = alpha / rank
    merged = dict(state)
    for name, (a, b) in pairs.items():
        key = f"{name}.weight"
        if key not in state:
            raise CheckpointError(f"LoRA target {name} has no base weight {key}")
        weight = state[key]
        out_features, in_features = weight.shape
        if tuple(a.shape) != (rank, in_features) or tuple(b.shape) != (out_features, rank):
            raise CheckpointError(
                f"LoRA shapes for {name}: A {tuple(a.shape)}, B {tuple(b.shape)}; expected "
                f"A ({rank}, {in_features}), B ({out_features}, {rank}) for rank {rank}"
            )
        work = device if device is not None else weight.device
        delta = b.to(work, torch.float32) @ a.to(work, torch.float32)
        merged[key] = (weight.to(work, torch.float32) + scale * delta).to(dtype or weight.dtype)
    return merged
