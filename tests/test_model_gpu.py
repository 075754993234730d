"""GPU checks of the model core on a tiny config (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from longlive_rtc.model import CausalWanModel, SeededNoise, StreamingPipeline, backend_for, tiny

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def make_model(dtype: torch.dtype, device: str) -> CausalWanModel:
    torch.manual_seed(0)
    model = CausalWanModel(tiny())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.25)
    return model.to(device=device, dtype=dtype)


def run(model: CausalWanModel, n_blocks: int = 6) -> torch.Tensor:
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randn(1, cfg.text_len, cfg.text_dim, generator=g) for _ in range(2)]
    pipe = StreamingPipeline(model)
    pipe.begin(0, prompts[0])
    out = []
    for blk in range(n_blocks):
        if blk == 4:
            pipe.switch_prompt(prompts[1])
        out.append(pipe.next_block().float().cpu())
    return torch.cat(out, 1)


def test_gpu_float32_matches_cpu_float64() -> None:
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        # the noise is drawn on each device's generator, so feed both from the CPU one
        gpu = make_model(torch.float32, "cuda")
        cpu = make_model(torch.float64, "cpu")

        class CpuNoise(SeededNoise):
            def reset(self, seeds, device):
                super().reset(seeds, torch.device("cpu"))
                self.target = device

            def _draw(self, shape, dtype):
                return super()._draw(shape, torch.float64).to(self.target, dtype)

            block_noise = _draw
            step_noise = _draw

        outs = []
        for m in (gpu, cpu):
            pipe = StreamingPipeline(m, noise=CpuNoise())
            cfg = m.config
            pipe.begin(0, torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(1)))
            outs.append(torch.cat([pipe.next_block().double().cpu() for _ in range(5)], 1))
        rel = ((outs[0] - outs[1]).norm() / outs[1].norm()).item()
        assert rel < 1e-4
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def test_gpu_bf16_stream_runs_without_host_syncs() -> None:
    model = make_model(torch.bfloat16, "cuda")
    assert backend_for(torch.empty(1, device="cuda", dtype=torch.bfloat16)) in ("fa3", "fa2", "sdpa")
    out = run(model)
    assert out.shape == (1, 18, 4, 4, 6) and torch.isfinite(out).all()
    cfg = model.config
    pipe = StreamingPipeline(model)
    pipe.begin(0, torch.randn(1, cfg.text_len, cfg.text_dim))
    for _ in range(5):  # past the window filling: steady state
        pipe.next_block()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        pipe.next_block()
        pipe.next_block()
    finally:
        torch.cuda.set_sync_debug_mode("default")
