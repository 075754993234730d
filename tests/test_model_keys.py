"""The 1.3B module tree has exactly the official state-dict keys and shapes (reference section 2.5)."""

from __future__ import annotations

import pytest
import torch

from longlive_rtc.model import CausalWanModel, WanConfig, longlive_1_3b, tiny


def expected_1_3b_keys() -> dict[str, tuple[int, ...]]:
    """Key -> shape table of the official CausalWanModel (Wan2.1-T2V-1.3B), written from the reference."""
    d, ffn = 1536, 8960
    keys: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (d, 16, 1, 2, 2),
        "patch_embedding.bias": (d,),
        "text_embedding.0.weight": (d, 4096),
        "text_embedding.0.bias": (d,),
        "text_embedding.2.weight": (d, d),
        "text_embedding.2.bias": (d,),
        "time_embedding.0.weight": (d, 256),
        "time_embedding.0.bias": (d,),
        "time_embedding.2.weight": (d, d),
        "time_embedding.2.bias": (d,),
        "time_projection.1.weight": (6 * d, d),
        "time_projection.1.bias": (6 * d,),
        "head.modulation": (1, 2, d),
        "head.head.weight": (64, d),
        "head.head.bias": (64,),
    }
    for i in range(30):
        p = f"blocks.{i}."
        keys[p + "modulation"] = (1, 6, d)
        for attn in ("self_attn", "cross_attn"):
            for lin in "qkvo":
                keys[f"{p}{attn}.{lin}.weight"] = (d, d)
                keys[f"{p}{attn}.{lin}.bias"] = (d,)
            keys[f"{p}{attn}.norm_q.weight"] = (d,)
            keys[f"{p}{attn}.norm_k.weight"] = (d,)
        keys[p + "norm3.weight"] = (d,)
        keys[p + "norm3.bias"] = (d,)
        keys[p + "ffn.0.weight"] = (ffn, d)
        keys[p + "ffn.0.bias"] = (ffn,)
        keys[p + "ffn.2.weight"] = (d, ffn)
        keys[p + "ffn.2.bias"] = (d,)
    return keys


def test_1_3b_preset_constants() -> None:
    cfg = longlive_1_3b()
    assert (cfg.num_layers, cfg.dim, cfg.num_heads, cfg.head_dim, cfg.ffn_dim) == (30, 1536, 12, 128, 8960)
    assert (cfg.patch_size, cfg.text_dim, cfg.freq_dim, cfg.text_len) == ((1, 2, 2), 4096, 256, 512)
    assert (cfg.latent_height, cfg.latent_width, cfg.grid_size, cfg.frame_seq_len) == (60, 104, (30, 52), 1560)
    assert (cfg.num_frame_per_block, cfg.local_attn_size, cfg.sink_size) == (3, 12, 3)


def test_1_3b_key_set_and_shapes_on_meta() -> None:
    with torch.device("meta"):
        model = CausalWanModel(longlive_1_3b())
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = expected_1_3b_keys()
    assert sorted(set(got) - set(want)) == []
    assert sorted(set(want) - set(got)) == []
    assert got == want
    assert len(got) == 825
    n_params = sum(p.numel() for p in model.parameters())
    assert 1.41e9 < n_params < 1.43e9  # reference: ~1.418 B
    assert not list(model.buffers())  # RoPE table is not state


def test_strict_load_of_official_style_state_dict() -> None:
    """A synthetic 'longlive_base.pt'-style dict (prefix `model.`) loads strictly after stripping."""
    torch.manual_seed(0)
    cfg = tiny()
    source = CausalWanModel(cfg)
    official = {"model." + k: torch.randn_like(v) for k, v in source.state_dict().items()}
    target = CausalWanModel(cfg)
    result = target.load_state_dict({k.removeprefix("model."): v for k, v in official.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(target.blocks[1].cross_attn.norm_k.weight, official["model.blocks.1.cross_attn.norm_k.weight"])
    with pytest.raises(RuntimeError):
        target.load_state_dict(official, strict=True)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        WanConfig(dim=100, num_heads=12)
    with pytest.raises(ValueError):
        WanConfig(sink_size=12, local_attn_size=12)
