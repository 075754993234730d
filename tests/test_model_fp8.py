"""``--precision fp8`` (model/fp8.py): row-wise float8 linears, checked against their exact product on the CPU."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from longlive_rtc.cli import main
from longlive_rtc.generators.longlive import use_precision
from longlive_rtc.model.fp8 import FLOAT8, FLOAT8_LINEARS, FLOAT8_MAX, Float8Linear, is_float8, quantize_rows

from .test_longlive_generator import tiny_longlive

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def uneven(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Rows whose magnitudes span three decades: a scale applied to the wrong axis shows."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * torch.logspace(-2, 1, rows)[:, None]


def test_rows_quantize_to_their_own_scale() -> None:
    x = torch.cat([uneven(31, 64, 0), torch.zeros(1, 64)])
    values, scale = quantize_rows(x)
    assert values.dtype == FLOAT8 and scale.shape == (32, 1) and scale.dtype == torch.float32
    assert values.float().abs().amax(dim=1)[:31].eq(FLOAT8_MAX).all()  # each row's largest value maps to 448
    assert values[31].float().eq(0).all() and torch.isfinite(scale).all()  # an all-zero row stays zero
    back = values.float() * scale
    assert ((back - x).abs() <= x.abs() * 2**-4 + scale * 2**-9).all()  # e4m3: 3 mantissa bits, subnormals


def test_float8_linear_is_the_scaled_product_of_its_quantized_operands() -> None:
    linear = nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.copy_(uneven(48, 64, 1))
    fp8 = Float8Linear(linear)
    x = uneven(40, 64, 2).view(2, 20, 64)
    xq, xs = quantize_rows(x.view(-1, 64))
    wq, ws = quantize_rows(linear.weight.detach())
    want = (xq.float() * xs) @ (wq.float() * ws).t() + linear.bias.detach()
    got = fp8(x)
    assert got.shape == (2, 20, 48) and got.dtype == torch.float32
    torch.testing.assert_close(got.view(-1, 48), want, rtol=1e-5, atol=1e-5)
    exact = linear(x).detach()
    relative = (got - exact).norm() / exact.norm()
    assert 1e-3 < relative < 6e-2, float(relative)  # quantized (not a copy of the linear), within e4m3's error


def test_blocks_convert_their_projections_and_ffn_only() -> None:
    plain, generator = tiny_longlive("tae").pipeline.model, tiny_longlive("tae")
    use_precision(generator, "fp8")
    model = generator.pipeline.model
    assert is_float8(model) and not is_float8(plain)
    for block in model.blocks:
        assert all(isinstance(block.get_submodule(path), Float8Linear) for path in FLOAT8_LINEARS)
        assert isinstance(block.cross_attn.k, nn.Linear) and isinstance(block.cross_attn.v, nn.Linear)
    assert isinstance(model.head.head, nn.Linear) and isinstance(model.text_embedding[0], nn.Linear)
    converted = len(FLOAT8_LINEARS) * len(model.blocks)
    linears = sum(isinstance(m, nn.Linear) for m in plain.modules())
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == linears - converted
    use_precision(generator, "fp8")  # twice: nothing more to convert
    assert sum(isinstance(m, Float8Linear) for m in model.modules()) == converted


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="bf16, fp8"):
        use_precision(tiny_longlive("tae"), "fp4")


def stream_latents(generator, blocks: int = 4) -> list[torch.Tensor]:
    pipeline = generator.pipeline
    pipeline.begin(5, generator.encode_prompt("a"))
    out = []
    for i in range(blocks):
        if i == 2:
            pipeline.switch_prompt(generator.encode_prompt("b"))  # the recache runs in fp8 too
        out.append(pipeline.next_block().clone())
    return out


def test_fp8_stream_stays_close_to_the_exact_one() -> None:
    exact = tiny_longlive("tae")
    fp8 = tiny_longlive("tae")
    use_precision(fp8, "fp8")
    for block, (a, b) in enumerate(zip(stream_latents(exact), stream_latents(fp8), strict=True)):
        assert torch.isfinite(b).all()
        relative = (a - b).norm() / a.norm()
        assert 1e-4 < relative < 0.1, (block, float(relative))


def test_compiled_fp8_equals_eager_fp8() -> None:
    from longlive_rtc.model.compile import compile_dit

    from .test_model_compile import BACKEND

    eager = tiny_longlive("tae")
    use_precision(eager, "fp8")
    compiled = copy.deepcopy(eager)
    compile_dit(compiled.pipeline.model, backend=BACKEND)
    for a, b in zip(stream_latents(eager, 3), stream_latents(compiled, 3), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_bench_runs_in_fp8_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--tiny", "--devices", "cpu", "--decoders", "tae", "--precision", "fp8", "--blocks", "8",
            "--runs", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["precision"] == "fp8" and results["configs"]["tae"]["fps"] > 0


def test_moves_and_casts_keep_the_float8_weights() -> None:
    fp8 = Float8Linear(nn.Linear(32, 16))
    x = torch.randn(4, 32)
    want = fp8(x)
    fp8.to(torch.bfloat16).to("cpu")  # what a model-wide .to(dtype) does to it
    assert fp8.weight.dtype == FLOAT8 and fp8.weight_scale.dtype == torch.float32
    assert fp8.bias.dtype == torch.bfloat16
    torch.testing.assert_close(fp8(x.bfloat16()).float(), want, rtol=2e-2, atol=2e-2)


def test_the_cli_offers_the_model_precisions() -> None:
    from longlive_rtc.cli import PRECISION_CHOICES
    from longlive_rtc.model.fp8 import PRECISIONS

    assert tuple(PRECISION_CHOICES) == PRECISIONS


def test_gpus_without_fp8_tensor_cores_and_float32_models_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capability check (no GPU here: the two device queries answer as an A100's and an H200's would)."""
    from longlive_rtc.model.fp8 import float8_problem

    assert float8_problem(torch.device("cpu"), torch.float32) is None  # torch's CPU kernels run FP8
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert float8_problem(cuda) == (
        "--precision fp8 needs FP8 tensor cores (compute capability >= 8.9); NVIDIA A100 has (8, 0)"
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert float8_problem(cuda) is None
    assert "bfloat16 model; this one is float32" in float8_problem(cuda, torch.float32)


def test_the_quality_benchmark_compares_fp8_frames_with_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/precision_quality.py itself, on tiny random configs (CPU, float32)."""
    import importlib.util
    import sys

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "precision_quality.py"
    spec = importlib.util.spec_from_file_location("precision_quality", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "quality.json"
    argv = ["precision_quality.py", "--tiny", "--blocks", "4", "--switch-at", "2", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    results = json.loads(out.read_text())
    assert set(results) == {"bf16 eager vs bf16 plain", "fp8 eager vs bf16 plain", "fp8 eager vs bf16 eager"}
    assert results["bf16 eager vs bf16 plain"]["max_abs"] == 0  # the same eager path: identical frames
    fp8 = results["fp8 eager vs bf16 plain"]
    assert len(fp8["per_block"]) == 4 and 0 < fp8["latent_relative_max"] < 0.1 and fp8["psnr_db"] > 30
