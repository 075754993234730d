"""Generator checkpoint and LoRA loading from synthetic files in the official layouts (tiny shapes)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from longlive_rtc.model import CausalWanModel, longlive_1_3b, tiny
from longlive_rtc.model.checkpoint import CheckpointError, load_state_file, read_generator_state
from longlive_rtc.model.lora import lora_targets, merge_lora, parse_lora_key
from longlive_rtc.model.weights import load_generator, load_wan_dit

LAYERS = 2
RANK, ALPHA = 4, 8.0  # scale 2, so a missing alpha/rank factor shows


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny CausalWanModel state dict with every tensor random (so a wrong key mapping shows)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in CausalWanModel(tiny(LAYERS)).state_dict().items()}


def write_base(path, state, entry="generator", prefix="model."):
    torch.save({entry: {prefix + k: v for k, v in state.items()}, "step": torch.tensor(700)}, path)
    return path


def peft_lora(targets: list[str], seed: int = 1, name: str = "base_model.model.{t}.lora_{p}.weight"):
    """A PEFT-named LoRA for every target: A [rank, in], B [out, rank]."""
    gen = torch.Generator().manual_seed(seed)
    model = CausalWanModel(tiny(LAYERS))
    lora = {}
    for t in targets:
        out_f, in_f = model.get_submodule(t).weight.shape
        lora[name.format(t=t, p="A")] = torch.randn(RANK, in_f, generator=gen) * 0.1
        lora[name.format(t=t, p="B")] = torch.randn(out_f, RANK, generator=gen) * 0.1
    return lora


def test_base_checkpoint_round_trip(tmp_path):
    state = random_state()
    path = write_base(tmp_path / "longlive_base.pt", state)
    model = load_generator(path, config=tiny(LAYERS), device="cpu", dtype=torch.float32)
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_base_checkpoint_cast_to_bfloat16(tmp_path):
    state = random_state()
    model = load_generator(write_base(tmp_path / "b.pt", state), config=tiny(LAYERS), device="cpu")
    assert model.dtype == torch.bfloat16
    key = "blocks.1.ffn.2.weight"
    assert torch.equal(model.state_dict()[key], state[key].to(torch.bfloat16))


def test_ema_entry_with_fsdp_names(tmp_path):
    state = random_state()
    fsdp = {f"model._fsdp_wrapped_module.{k}": v for k, v in state.items()}
    torch.save({"generator_ema": fsdp}, tmp_path / "ema.pt")
    got = read_generator_state(tmp_path / "ema.pt", use_ema=True)
    assert set(got) == set(state)
    with pytest.raises(CheckpointError, match="no 'generator' entry"):
        read_generator_state(tmp_path / "ema.pt")


def test_missing_and_renamed_keys_are_named(tmp_path):
    state = random_state()
    state.pop("blocks.0.self_attn.norm_q.weight")
    state["blocks.0.cross_attn.q.wieght"] = state.pop("blocks.0.cross_attn.q.weight")
    path = write_base(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError) as err:
        load_generator(path, config=tiny(LAYERS), device="cpu")
    message = str(err.value)
    assert "missing keys (2)" in message and "blocks.0.self_attn.norm_q.weight" in message
    assert "blocks.0.cross_attn.q.weight" in message
    assert "unexpected keys (1)" in message and "blocks.0.cross_attn.q.wieght" in message


def test_wrong_shape_and_missing_prefix_are_reported(tmp_path):
    state = random_state()
    state["head.head.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="shape mismatches.*head.head.bias"):
        load_generator(write_base(tmp_path / "s.pt", state), config=tiny(LAYERS), device="cpu")
    with pytest.raises(CheckpointError, match="start with 'model.'"):
        read_generator_state(write_base(tmp_path / "p.pt", random_state(), prefix=""))


def test_lora_merge_equals_unmerged_forward(tmp_path):
    base = random_state()
    targets = lora_targets(CausalWanModel(tiny(LAYERS)))
    assert len(targets) == 10 * LAYERS
    lora = peft_lora(targets)
    torch.save({"generator_lora": lora, "critic_lora": {"x": torch.zeros(1)}}, tmp_path / "lora.pt")
    merged = load_generator(
        write_base(tmp_path / "base.pt", base),
        tmp_path / "lora.pt",
        config=tiny(LAYERS),
        device="cpu",
        dtype=torch.float32,
        lora_rank=RANK,
        lora_alpha=ALPHA,
    )
    plain = load_generator(tmp_path / "base.pt", config=tiny(LAYERS), device="cpu", dtype=torch.float32)
    x = torch.randn(5, 64)
    for t in targets:
        layer, ref = merged.get_submodule(t), plain.get_submodule(t)
        a, b = lora[f"base_model.model.{t}.lora_A.weight"], lora[f"base_model.model.{t}.lora_B.weight"]
        xi = x[:, : ref.in_features]
        expected = ref(xi) + (ALPHA / RANK) * (xi @ a.T) @ b.T  # W x + b + s * B (A x)
        torch.testing.assert_close(layer(xi), expected, rtol=1e-5, atol=1e-5)
    untouched = "time_projection.1.weight"
    assert torch.equal(merged.state_dict()[untouched], base[untouched])


def test_lora_merge_is_float32_then_cast():
    w = torch.randn(8, 6).to(torch.bfloat16)
    a, b = torch.randn(RANK, 6), torch.randn(8, RANK)
    lora = {"base_model.model.blocks.0.ffn.0.lora_A.weight": a, "base_model.model.blocks.0.ffn.0.lora_B.weight": b}
    out = merge_lora({"blocks.0.ffn.0.weight": w}, lora, ["blocks.0.ffn.0"], rank=RANK, alpha=ALPHA)
    expected = (w.float() + (ALPHA / RANK) * (b @ a)).to(torch.bfloat16)
    assert out["blocks.0.ffn.0.weight"].dtype == torch.bfloat16
    assert torch.equal(out["blocks.0.ffn.0.weight"], expected)


def test_lora_key_spellings():
    assert parse_lora_key("base_model.model.blocks.3.self_attn.q.lora_A.weight") == ("blocks.3.self_attn.q", "A")
    assert parse_lora_key("base_model.model.blocks.3.ffn.2.lora_B.default.weight") == ("blocks.3.ffn.2", "B")
    assert parse_lora_key("model.blocks.0.ffn.0.lora_A.weight") == ("blocks.0.ffn.0", "A")
    assert parse_lora_key("base_model.model.blocks.0.ffn.0.base_layer.weight") is None


def test_lora_incomplete_or_foreign_keys_fail_loudly(tmp_path):
    targets = lora_targets(CausalWanModel(tiny(LAYERS)))
    base = write_base(tmp_path / "base.pt", random_state())
    lora = peft_lora(targets)
    del lora["base_model.model.blocks.1.cross_attn.v.lora_B.weight"]
    lora["base_model.model.head.head.lora_A.weight"] = torch.zeros(RANK, 32)
    torch.save({"generator_lora": lora}, tmp_path / "lora.pt")
    with pytest.raises(CheckpointError) as err:
        load_generator(base, tmp_path / "lora.pt", config=tiny(LAYERS), device="cpu", lora_rank=RANK)
    message = str(err.value)
    assert f"{2 * len(targets)} tensors expected" in message
    assert "blocks.1.cross_attn.v.lora_B.weight" in message and "head.head.lora_A.weight" in message


def test_lora_rank_mismatch_is_reported(tmp_path):
    targets = lora_targets(CausalWanModel(tiny(LAYERS)))
    torch.save({"generator_lora": peft_lora(targets)}, tmp_path / "lora.pt")
    base = write_base(tmp_path / "base.pt", random_state())
    with pytest.raises(CheckpointError, match="rank 256"):
        load_generator(base, tmp_path / "lora.pt", config=tiny(LAYERS), device="cpu")  # default rank 256


def test_full_size_lora_targets_are_the_300_block_linears():
    with torch.device("meta"):
        model = CausalWanModel(longlive_1_3b())
    targets = lora_targets(model)
    assert len(targets) == 300
    kinds = {t.split(".", 2)[2] for t in targets}
    assert kinds == {f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"} | {"ffn.0", "ffn.2"}


def test_dit_safetensors_loads_unprefixed(tmp_path):
    state = random_state()
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    model = load_wan_dit(CausalWanModel(tiny(LAYERS)), tmp_path / "diffusion_pytorch_model.safetensors")
    assert torch.equal(model.state_dict()["patch_embedding.weight"], state["patch_embedding.weight"])


class NotATensor:
    pass


def test_pickles_are_loaded_weights_only(tmp_path):
    torch.save({"generator": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_file(tmp_path / "evil.pt")
    torch.save({"a": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert torch.equal(load_state_file(tmp_path / "legacy.pt")["a"], torch.ones(2))
    with pytest.raises(CheckpointError, match="not found"):
        load_state_file(tmp_path / "absent.pt")


def test_merged_generator_matches_unmerged_lora_through_the_pipeline(tmp_path):
    """Whole model: merged weights vs the base model with PEFT-style `+ s * B(A x)` on every target."""
    from longlive_rtc.model import StreamingPipeline

    base = random_state()
    targets = lora_targets(CausalWanModel(tiny(LAYERS)))
    lora = peft_lora(targets)
    torch.save({"generator_lora": lora}, tmp_path / "lora.pt")
    base_path = write_base(tmp_path / "base.pt", base)
    kw = {"config": tiny(LAYERS), "device": "cpu", "dtype": torch.float32}
    merged = load_generator(base_path, tmp_path / "lora.pt", lora_rank=RANK, lora_alpha=ALPHA, **kw)
    unmerged = load_generator(base_path, **kw)
    for t in targets:
        a, b = lora[f"base_model.model.{t}.lora_A.weight"], lora[f"base_model.model.{t}.lora_B.weight"]
        unmerged.get_submodule(t).register_forward_hook(
            lambda _m, inp, out, a=a, b=b: out + (ALPHA / RANK) * (inp[0] @ a.T) @ b.T
        )
    cfg = tiny(LAYERS)
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(5))
    blocks = []
    for model in (merged, unmerged):
        pipe = StreamingPipeline(model)
        pipe.begin(seed=3, prompt_embeds=context)
        blocks.append(torch.cat([pipe.next_block(), pipe.next_block()], dim=1))
    torch.testing.assert_close(blocks[0], blocks[1], rtol=1e-4, atol=1e-4)
    plain = StreamingPipeline(load_generator(base_path, **kw))
    plain.begin(seed=3, prompt_embeds=context)
    assert not torch.allclose(plain.next_block(), blocks[0][:, :3], atol=1e-3)  # the LoRA does change the output
