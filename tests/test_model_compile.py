"""Compilation from outside (model/compile.py): per instance, equal to the plain model within float32 tolerance.

Inductor needs a C++ compiler on the CPU; without one these tests compile with the ``aot_eager`` backend
(Dynamo's tracing and the per-instance wiring are then checked, not Inductor's kernels).
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Callable

import pytest
import torch

from longlive_rtc.model import CausalWanModel, tiny
from longlive_rtc.model.compile import DIT_METHODS, VAE_METHODS, compile_dit, compile_vae, is_compiled
from longlive_rtc.model.decode import StreamingDecoder
from longlive_rtc.model.random_init import randomize_
from longlive_rtc.model.vae import VAEConfig, WanVAEDecoder

BACKEND = "inductor" if shutil.which(os.environ.get("CXX", "g++")) or shutil.which("clang++") else "aot_eager"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_dit() -> CausalWanModel:
    cfg = tiny(num_layers=2).with_(rope_dtype="float32")
    return randomize_(CausalWanModel(cfg).float(), std=0.25, norm_std=0.25).eval()


def two_calls(model: CausalWanModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A denoising call on an empty cache, its cache-only pass, and the next block's call: outputs and keys."""
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    context = model.encode_context(torch.randn(1, cfg.text_len, cfg.text_dim, generator=g))
    x = torch.randn(2, 1, cfg.in_dim, 3, cfg.latent_height, cfg.latent_width, generator=g)
    t = torch.full((1, 3), 937.5)
    cache = model.new_kv_cache(1)
    first = model(x[0], t, context, cache, 0)
    model(x[0], t * 0, context, cache, 0, compute_output=False)
    second = model(x[1], t, context, cache, 3)
    return first, second, cache.k.clone()


class CountingBackend:
    """A Dynamo backend (``inductor`` or ``aot_eager`` by name) whose compiled graphs count their calls."""

    def __init__(self, name: str) -> None:
        self.backend = torch._dynamo.lookup_backend(name)
        self.calls = 0

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> Callable:
        run = self.backend(graph, example_inputs)

        def counted(*args: object) -> object:
            self.calls += 1
            return run(*args)

        counted._boxed_call = getattr(run, "_boxed_call", False)  # type: ignore[attr-defined]
        return counted


def test_a_dit_compiled_from_outside_matches_the_plain_one_and_others_stay_plain() -> None:
    model, other = tiny_dit(), tiny_dit()
    want = two_calls(model)
    assert want[0].abs().mean() > 0.1 and want[1].abs().mean() > 0.1  # not a zero head: the blocks matter

    backend = CountingBackend(BACKEND)
    assert compile_dit(model, backend=backend) is model
    got = two_calls(model)
    # 2 layers x 3 calls, each through its two compiled halves but the cache-only pass's last layer (no output)
    assert backend.calls == 11
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

    plain = two_calls(other)  # the same class, not compiled: eager code, bit-identical to the model before
    assert backend.calls == 11
    for a, b in zip(plain, want, strict=True):
        assert torch.equal(a, b)
    assert all(is_compiled(b, name) for b in model.blocks for name in DIT_METHODS)
    assert not any(is_compiled(b, name) for b in other.blocks for name in DIT_METHODS)


def test_compiling_applies_rope_in_float32_within_float32_tolerance_of_the_official_float64() -> None:
    official = randomize_(CausalWanModel(tiny(num_layers=2)).float(), std=0.25, norm_std=0.25).eval()
    assert official.rope.dtype == torch.float64
    want = two_calls(official)
    compile_dit(official, backend=BACKEND)
    assert official.rope.dtype == torch.float32
    for a, b in zip(two_calls(official), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_copy_of_a_compiled_model_calls_its_own_weights() -> None:
    model = compile_dit(tiny_dit(), backend=BACKEND)
    clone = copy.deepcopy(model)
    for block, original in zip(clone.blocks, model.blocks, strict=True):
        assert all(getattr(block, name).args == (block,) for name in DIT_METHODS)
        assert block is not original


def test_a_wan_vae_compiled_from_outside_decodes_the_same_frames() -> None:
    """Its elementwise work between convolutions compiled (``aot_eager``: the tiny decoder has many shapes to
    compile), the other decoder untouched."""
    torch.manual_seed(0)
    plain = WanVAEDecoder(VAEConfig.tiny()).eval()
    backend = CountingBackend("aot_eager")
    fast = compile_vae(copy.deepcopy(plain).optimize(channels_last=True), backend=backend)
    z = torch.randn(1, 6, 16, 4, 6, generator=torch.Generator().manual_seed(4))
    a, b = StreamingDecoder(plain), StreamingDecoder(fast)
    with torch.no_grad():
        got = torch.cat([b.decode_float(z[:, :3]), b.decode_float(z[:, 3:])], 1)
        calls = backend.calls
        want = torch.cat([a.decode_float(z[:, :3]), a.decode_float(z[:, 3:])], 1)
    assert calls > 0 and backend.calls == calls
    methods = [(m, name) for m in fast.modules() for name in VAE_METHODS.get(type(m), ())]
    assert all(is_compiled(m, name) for m, name in methods)
    assert {type(m) for m, _ in methods} == set(VAE_METHODS)  # norms, residual sums, upsamplers all met
    assert not any(is_compiled(m, name) for m in plain.modules() for name in VAE_METHODS.get(type(m), ()))
    assert want.shape == (1, 21, 3, 32, 48) and want.std() > 0.01
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_compile_dit_says_in_the_config_that_rope_now_runs_in_float32() -> None:
    model = randomize_(CausalWanModel(tiny(num_layers=1)).float(), std=0.25).eval()
    assert model.config.rope_dtype == "float64" and model.rope.dtype == torch.float64
    compile_dit(model, backend="aot_eager")  # wraps the methods; nothing compiles before a call
    assert model.config.rope_dtype == "float32" and model.rope.dtype == torch.float32
