"""Optional FP8 linears for the DiT's transformer blocks (``--precision fp8``); bf16 stays the exact default.

W8A8 with row-wise scales, the scheme of the official LongLive FP8 path (TorchAO's dynamic float8 with
per-row granularity): each weight row (output channel) and each token's activations get their own
float32 scale into float8 e4m3, and ``torch._scaled_mm`` multiplies them with float32 accumulation into the
activation dtype. The weights are quantized once; the activations on every call (under ``compile_dit`` the
scale reduction and the cast fuse into the kernels before each GEMM). Only the blocks' projections and FFN
are converted: the embeddings, time projections and head stay bf16 as in the official configuration
(small, and numerically sensitive), and so do the cross-attention's key/value projections, which run once
per prompt. ``Module.to(dtype)`` afterwards moves the float8 weights and their scales but keeps their dtypes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .dit import CausalWanAttentionBlock, CausalWanModel

FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max
#: The linears of each transformer block that run in FP8 (paths inside `CausalWanAttentionBlock`).
FLOAT8_LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.o",
                  "ffn.0", "ffn.2")  # fmt: skip
#: Least CUDA compute capability with FP8 tensor cores (Ada, Hopper and later).
FLOAT8_CAPABILITY = (8, 9)
PRECISIONS = ("bf16", "fp8")


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """Float8 values of a 2-D `x` and their float32 scales `[rows, 1]`: one scale per row, its max to 448."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / FLOAT8_MAX
    return (xf / scale).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(FLOAT8), scale


class Float8Linear(nn.Module):
    """A `nn.Linear` whose weight is stored in float8 with one scale per output channel."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        values, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight", values)  # [out, in]: its transpose is the column-major operand
        self.register_buffer("weight_scale", scale.view(1, -1))
        self.bias = linear.bias

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Float8Linear:
        """Moves and casts apply to the bias; the float8 weight and float32 scales only move."""
        weight, scale = self.weight, self.weight_scale
        super()._apply(fn, recurse)
        self.weight, self.weight_scale = weight.to(self.weight.device), scale.to(self.weight_scale.device)
        return self

    def forward(self, x: Tensor) -> Tensor:
        values, scale = quantize_rows(x.reshape(-1, self.in_features))
        out = torch._scaled_mm(values, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, float8_e4m3fn"


def float8_problem(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> str | None:
    """Why FP8 linears cannot run on `device` for a model in `dtype`, or None: CUDA needs compute capability
    8.9 and a bf16 model (the row-wise kernel writes bf16); torch's CPU kernels run any (tests, tiny models)."""
    if device.type != "cuda":
        return None
    capability = torch.cuda.get_device_capability(device)
    if capability < FLOAT8_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        need = ".".join(map(str, FLOAT8_CAPABILITY))
        return f"--precision fp8 needs FP8 tensor cores (compute capability >= {need}); {name} has {capability}"
    if dtype != torch.bfloat16:
        return f"--precision fp8 on CUDA runs a bfloat16 model; this one is {str(dtype).removeprefix('torch.')}"
    return None


@torch.no_grad()
def use_float8(model: CausalWanModel) -> CausalWanModel:
    """Replace the `FLOAT8_LINEARS` of every block of `model` with `Float8Linear`s in place; returns it."""
    for block in model.modules():
        if isinstance(block, CausalWanAttentionBlock):
            for path in FLOAT8_LINEARS:
                parent, _, name = path.rpartition(".")
                linear = block.get_submodule(path)
                if isinstance(linear, nn.Linear):
                    block.get_submodule(parent).register_module(name, Float8Linear(linear))
    return model


def is_float8(model: nn.Module) -> bool:
    """Whether `use_float8` converted `model`."""
    return any(isinstance(m, Float8Linear) for m in model.modules())
