"""torch.compile applied from outside, per module instance: the one place that compiles model code.

Eager, a DiT block's elementwise chains (dtype casts, norms, RoPE, modulation, gates) are a handful of
memory-bound kernels each, plus Python dispatch; in a steady block that costs about as much as all the
matmuls. :func:`compile_dit` replaces, on the given model's blocks only, the pure methods around the
KV-cache write and the attention kernel with ``torch.compile``d versions with fixed shapes (the same math;
Inductor keeps intermediates in fp32 registers, so results move within bf16 rounding). :func:`compile_vae`
does the same for the elementwise work between the Wan VAE's convolutions (norms, SiLU, conv biases,
causal padding, residual sums, upsampling). Other instances, and every model by default, stay eager.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

from .dit import CausalWanAttentionBlock, CausalWanModel
from .vae import Resample, ResidualBlock, WanVAEDecoder
from .vae import RMSNorm as VAERMSNorm

M = TypeVar("M", bound=nn.Module)

#: What :func:`compile_dit` compiles per block: the halves before and after the cache write and
#: self-attention (which stay eager: the cache is indexed by Python ints, and SDPA picks cuDNN there),
#: and the slot-mode RoPE of the gathered keys.
DIT_METHODS = ("attention_inputs", "attention_output", "rotate_keys")
#: What :func:`compile_vae` compiles in the Wan VAE decoder, per module of each type: the norm + SiLU (with
#: the bias of the conv before and the padding of the conv after), the residual sum (with a conv's bias),
#: the nearest-neighbour upsampling.
VAE_METHODS: dict[type[nn.Module], tuple[str, ...]] = {
    VAERMSNorm: ("padded_norm_silu",),
    ResidualBlock: ("residual_sum",),
    Resample: ("upsample",),
}

#: Compiled variants per function and device: query lengths 3/6/9/12 frames x cache-only or not x RoPE mode
#: (Dynamo's guards include the device, so ``serve --devices`` compiles every variant once per GPU).
RECOMPILE_LIMIT = 64


def raise_recompile_limit(per_device: int = RECOMPILE_LIMIT) -> None:
    """Let Dynamo keep `per_device` compiled variants per function on every CUDA device (never lowers it)."""
    import torch._dynamo.config as dynamo_config

    limit = per_device * max(1, torch.cuda.device_count() if torch.cuda.is_available() else 1)
    for name in ("recompile_limit", "cache_size_limit"):  # one is an alias of the other in newer torch
        if getattr(dynamo_config, name, limit) < limit:
            setattr(dynamo_config, name, limit)


@functools.cache
def _compiled(fn: Callable, options: tuple[tuple[str, object], ...]) -> Callable:
    """One compiled wrapper per function and options, shared by every instance compiled with them."""
    return torch.compile(fn, dynamic=False, **dict(options))


def compile_methods(module: M, names: Iterable[str], **options: object) -> M:
    """Make `module`'s methods `names` call compiled versions of its class's methods; returns `module`.

    The compiled function is bound to this instance only (as an instance attribute, so `copy.deepcopy`
    binds the copy to itself); `options` go to ``torch.compile`` (e.g. ``backend="aot_eager"``).
    """
    key = tuple(sorted(options.items()))
    for name in names:
        setattr(module, name, functools.partial(_compiled(getattr(type(module), name), key), module))
    return module


def is_compiled(module: nn.Module, name: str) -> bool:
    """Whether `module.name` was replaced by :func:`compile_methods`."""
    return isinstance(module.__dict__.get(name), functools.partial)


def compile_dit(model: CausalWanModel, **options: object) -> CausalWanModel:
    """Compile the pure halves of every block of `model` (fixed shapes, parameter names kept), with each FFN's
    GELU in its GEMM's epilogue on CUDA (`CausalWanAttentionBlock.feed_forward`) and RoPE applied in float32
    (the official float64 differs only at rare bf16 rounding ties); returns it."""
    raise_recompile_limit()
    model.rope.dtype = torch.float32
    model.config = model.config.with_(rope_dtype="float32")  # what the model now runs, for whoever reads it
    for block in model.modules():
        if isinstance(block, CausalWanAttentionBlock):
            block.gelu_in_gemm = True
            compile_methods(block, DIT_METHODS, **options)
    return model


def compile_vae(decoder: WanVAEDecoder, **options: object) -> WanVAEDecoder:
    """Compile the elementwise work between the Wan VAE `decoder`'s convolutions (`VAE_METHODS`): each norm +
    SiLU with the bias before it and the causal history after it, each residual sum with its conv's bias,
    each upsampling, one kernel each; returns it."""
    raise_recompile_limit()
    for module in decoder.modules():
        names = VAE_METHODS.get(type(module))
        if names:
            compile_methods(module, names, **options)
    return decoder
