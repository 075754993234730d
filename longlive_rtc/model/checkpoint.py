"""Reading weight files and loading them strictly, with errors that name the offending keys.

Formats handled: torch pickles (`.pt`/`.pth`, always `weights_only=True`) and safetensors. LongLive files:
`longlive_base.pt` holds the generator under `generator` (or `generator_ema`) with every key prefixed
`model.`; the Wan DiT `diffusion_pytorch_model.safetensors` holds the same names without a prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]

GENERATOR_PREFIX = "model."
FSDP_TOKENS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
MAX_LISTED_KEYS = 20


class CheckpointError(RuntimeError):
    """A weight file is unreadable or does not match the model it is loaded into."""


def load_state_file(path: str | Path) -> dict:
    """Read a `.safetensors` file or a torch pickle (weights only, memory-mapped when possible) on CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    for mmap in (True, False):  # legacy (non-zip) pickles cannot be memory-mapped
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as error:
            if mmap and "mmap" in str(error):
                continue
            raise CheckpointError(f"cannot read {path} with weights_only=True: {error}") from error
    raise AssertionError("unreachable")


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """Remove `prefix` from every key; all keys must carry it (a mixed file is an error)."""
    lacking = [k for k in state if not k.startswith(prefix)]
    if lacking:
        raise CheckpointError(f"expected every key to start with {prefix!r}; these do not: {_listing(lacking)}")
    return {k[len(prefix) :]: v for k, v in state.items()}


def drop_wrapper_tokens(key: str) -> str:
    """Remove FSDP / activation-checkpoint / torch.compile wrapper names from a parameter name."""
    for token in FSDP_TOKENS:
        key = key.replace(token, "")
    return key


def split_known(state: Mapping[str, torch.Tensor], skip_prefixes: Iterable[str]) -> tuple[StateDict, list[str]]:
    """Separate keys that belong to parts we deliberately do not build (e.g. the VAE encoder)."""
    skip_prefixes = tuple(skip_prefixes)
    kept = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    skipped = [k for k in state if k.startswith(skip_prefixes)]
    return kept, skipped


def check_keys(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise a CheckpointError listing missing, unexpected and wrongly shaped keys (strict coverage)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if misshaped:
        problems.append(f"shape mismatches ({len(misshaped)}): {_listing(misshaped)}")
    if problems:
        raise CheckpointError(f"{what} does not match {type(model).__name__}: " + "; ".join(problems))


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, *, assign: bool = False) -> nn.Module:
    """Check key coverage (clear error), then `load_state_dict(strict=True)`.

    With `assign=True` the model may live on the meta device: its parameters become the file's tensors.
    """
    check_keys(model, state, what)
    model.load_state_dict(state, strict=True, assign=assign)
    return model


def read_generator_state(path: str | Path, use_ema: bool = False) -> StateDict:
    """The CausalWanModel state dict stored in `longlive_base.pt` (`generator`/`generator_ema`, `model.` prefix)."""
    checkpoint = load_state_file(path)
    key = "generator_ema" if use_ema else "generator"
    if not isinstance(checkpoint, dict) or key not in checkpoint:
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: no {key!r} entry (found {found})")
    state = {drop_wrapper_tokens(k): v for k, v in checkpoint[key].items()}
    return strip_prefix(state, GENERATOR_PREFIX)


def read_dit_safetensors(path: str | Path) -> StateDict:
    """The original Wan DiT weights (`diffusion_pytorch_model.safetensors`, unprefixed CausalWanModel names)."""
    return dict(load_state_file(path))


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown if len(keys) <= MAX_LISTED_KEYS else f"{shown}, ... (+{len(keys) - MAX_LISTED_KEYS} more)"
