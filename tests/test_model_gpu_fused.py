"""GPU: the optimised pipeline (compiled, channels-last) against the plain one on the same random full-size weights."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


def stream(generator, prompts) -> list[torch.Tensor]:
    generator.begin(3, prompts[0])
    out = []
    for i in range(7):
        if i == 5:  # the steady-state recache: sink kept, 9 frames
            generator.pipeline.switch_prompt(prompts[1])
        out.append(generator.pipeline.next_block().float())
    generator.reset()
    return out


def test_ffn_with_gelu_in_the_gemm_epilogue_matches_the_plain_ffn() -> None:
    """One full-size block's FFN: GELU(tanh) in the cuBLASLt epilogue against Linear, GELU, Linear (bf16)."""
    from longlive_rtc.model.config import WanConfig
    from longlive_rtc.model.dit import CausalWanAttentionBlock

    torch.manual_seed(0)
    block = CausalWanAttentionBlock(WanConfig()).to("cuda", torch.bfloat16)
    for linear in (block.ffn[0], block.ffn[2]):
        torch.nn.init.normal_(linear.weight, std=0.02)
        torch.nn.init.normal_(linear.bias, std=0.02)
    h = torch.randn(1, 4680, block.ffn[0].in_features, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        want = block.ffn(h).float()
        block.gelu_in_gemm = True
        got = block.feed_forward(h).float()
    assert got.shape == want.shape and want.std() > 0.01
    relative = (want - got).norm() / want.norm()
    assert relative < 1e-2, float(relative)
    assert not torch.equal(want, got)  # the fused path ran: one rounding fewer moves some values


def test_compiled_pipeline_matches_the_plain_one_within_bf16_tolerance() -> None:
    from longlive_rtc.generators.longlive import enable_compile, random_longlive

    generator = random_longlive("cuda", "tae")
    prompts = [generator.encode_prompt("a"), generator.encode_prompt("b")]
    plain = stream(generator, prompts)
    enable_compile(generator)  # this generator's model only
    optimised = stream(generator, prompts)
    for block, (a, b) in enumerate(zip(plain, optimised, strict=True)):
        relative = (a - b).norm() / a.norm()
        assert relative < 3e-2, (block, float(relative))


def test_optimised_wan_vae_matches_the_plain_one() -> None:
    """Channels-last convolutions with compiled norm + SiLU against the plain decoder, full size, bf16."""
    import copy

    from longlive_rtc.model.compile import compile_vae
    from longlive_rtc.model.decode import StreamingDecoder
    from longlive_rtc.model.vae import VAEConfig, WanVAEDecoder

    torch.manual_seed(0)
    plain = WanVAEDecoder(VAEConfig.wan2_1()).to("cuda", torch.bfloat16).eval()
    fast = compile_vae(copy.deepcopy(plain).optimize(channels_last=True))  # the copy only
    z = torch.randn(1, 6, 16, 60, 104, device="cuda", dtype=torch.bfloat16)
    a, b = StreamingDecoder(plain), StreamingDecoder(fast)
    with torch.no_grad():
        want = torch.cat([a.decode_float(z[:, :3]), a.decode_float(z[:, 3:])], 1)
        got = torch.cat([b.decode_float(z[:, :3]), b.decode_float(z[:, 3:])], 1)
    assert want.shape == got.shape == (1, 21, 3, 480, 832)
    assert want.std() > 0.01
    assert (want - got).abs().mean() < 1e-2, float((want - got).abs().mean())


def needs_fp8_tensor_cores() -> pytest.MarkDecorator:
    from longlive_rtc.model.fp8 import float8_problem

    problem = float8_problem(torch.device("cuda")) if torch.cuda.is_available() else "no CUDA"
    return pytest.mark.skipif(problem is not None, reason=str(problem))


@needs_fp8_tensor_cores()
def test_float8_linear_on_the_gpu_is_the_scaled_product_of_its_quantized_operands() -> None:
    """``torch._scaled_mm``'s row-wise scales on the GPU, at a full-size FFN shape (4680 tokens, 1536 -> 8960)."""
    from longlive_rtc.model.fp8 import Float8Linear, quantize_rows

    torch.manual_seed(0)
    linear = torch.nn.Linear(1536, 8960, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        linear.weight.mul_(torch.logspace(-1, 1, 8960, device="cuda", dtype=torch.bfloat16)[:, None])
    x = torch.randn(1, 4680, 1536, device="cuda", dtype=torch.bfloat16) * 3
    xq, xs = quantize_rows(x[0])
    wq, ws = quantize_rows(linear.weight)
    want = (xq.float() * xs) @ (wq.float() * ws).t() + linear.bias.float()
    got = Float8Linear(linear)(x)[0].float()
    assert (got - want).norm() / want.norm() < 1e-2  # bf16 output rounding only
    exact = linear(x)[0].float()
    assert (got - exact).norm() / exact.norm() < 6e-2


@needs_fp8_tensor_cores()
def test_fp8_pipeline_stays_near_the_plain_bf16_one() -> None:
    """``--precision fp8`` compiled against the plain bf16 pipeline on the same random full-size weights."""
    from longlive_rtc.generators.longlive import enable_compile, random_longlive, use_precision

    generator = random_longlive("cuda", "tae")
    prompts = [generator.encode_prompt("a"), generator.encode_prompt("b")]
    plain = stream(generator, prompts)
    use_precision(generator, "fp8")
    enable_compile(generator)
    fp8 = stream(generator, prompts)
    for block, (a, b) in enumerate(zip(plain, fp8, strict=True)):
        relative = (a - b).norm() / a.norm()
        assert torch.isfinite(b).all() and 1e-3 < relative < 0.15, (block, float(relative))
