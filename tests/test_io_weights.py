"""Building the whole streaming LongLive from a weights directory (synthetic tiny files, official layout)."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from longlive_rtc.model import CausalWanModel, tiny
from longlive_rtc.model.download import FILES_BY_ROLE
from longlive_rtc.model.lora import lora_targets
from longlive_rtc.model.t5 import T5Config, UMT5Encoder
from longlive_rtc.model.tae import TAEConfig, TAEDecoder
from longlive_rtc.model.vae import VAEConfig, WanVAEDecoder
from longlive_rtc.model.weights import MissingWeightsError, ModelConfigs, WeightPaths, build_longlive

DIT = tiny(2)
CONFIGS = ModelConfigs(
    dit=DIT,
    t5=T5Config(vocab_size=64, dim=DIT.text_dim, dim_attn=DIT.text_dim, dim_ffn=32, num_heads=4, num_layers=2),
    vae=VAEConfig(dim=4, z_dim=DIT.in_dim, num_res_blocks=1),
    tae=TAEConfig(latent_channels=DIT.in_dim, widths=(8, 8, 4, 4)),
)


def write_weights(root) -> None:
    """Every file of the official layout, with the official key names and containers, tiny shapes."""
    torch.manual_seed(0)
    paths = {role: f.path(root) for role, f in FILES_BY_ROLE.items()}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    dit = CausalWanModel(DIT)
    for p in dit.parameters():
        p.data.normal_(0, 0.05)
    torch.save({"generator": {f"model.{k}": v for k, v in dit.state_dict().items()}}, paths["base"])
    lora = {}
    for t in lora_targets(dit):
        out_f, in_f = dit.get_submodule(t).weight.shape
        lora[f"base_model.model.{t}.lora_A.weight"] = torch.randn(256, in_f) * 0.01
        lora[f"base_model.model.{t}.lora_B.weight"] = torch.randn(out_f, 256) * 0.01
    torch.save({"generator_lora": lora, "critic_lora": {}}, paths["lora"])
    t5 = UMT5Encoder(CONFIGS.t5).to(torch.bfloat16)
    torch.save(t5.state_dict(), paths["t5"])
    vae = WanVAEDecoder(CONFIGS.vae).state_dict() | {
        "encoder.conv1.weight": torch.zeros(1),
        "conv1.bias": torch.zeros(1),
    }
    torch.save(vae, paths["vae"])
    torch.save(TAEDecoder(CONFIGS.tae).state_dict() | {"encoder.0.weight": torch.zeros(1)}, paths["tae"])
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(["a fox in the snow", "a boat on the sea at night"] * 10, trainer)
    tok.save(str(paths["tokenizer"]))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_weights(root)
    return root


def test_missing_files_are_each_named_with_the_fetch_command(tmp_path):
    (tmp_path / "longlive_models" / "models").mkdir(parents=True)
    (tmp_path / "longlive_models" / "models" / "longlive_base.pt").write_bytes(b"")
    with pytest.raises(MissingWeightsError) as err:
        build_longlive(tmp_path, device="cpu", configs=CONFIGS)
    message = str(err.value)
    assert "4 weight file(s) missing" in message
    for name in ("lora.pt", "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json", "Wan2.1_VAE.pth"):
        assert name in message
    assert "longlive_base.pt" not in message and "taew2_1.pth" not in message
    assert f"longlive-rtc download --dir {tmp_path}" in message
    assert [p.name for p in WeightPaths(tmp_path).missing("tae", lora=False)] == [
        "models_t5_umt5-xxl-enc-bf16.pth",
        "tokenizer.json",
        "taew2_1.pth",
    ]


@pytest.mark.parametrize("decoder", ["wan", "tae"])
def test_build_and_stream_from_a_weights_directory(weights_dir, decoder):
    ll = build_longlive(weights_dir, device="cpu", dtype=torch.float32, decoder=decoder, configs=CONFIGS)
    assert ll.decoder.kind == decoder
    base = torch.load(ll.weights.base, weights_only=True)["generator"]
    q = ll.pipeline.model.state_dict()["blocks.0.self_attn.q.weight"]
    assert not torch.equal(q, base["model.blocks.0.self_attn.q.weight"])  # LoRA merged
    torch.testing.assert_close(ll.pipeline.model.state_dict()["head.head.weight"], base["model.head.head.weight"])

    context = ll.text_encoder("a fox in the snow")
    assert context.shape == (1, DIT.text_len, DIT.text_dim)
    ll.pipeline.begin(seed=0, prompt_embeds=context)
    sizes = []
    for _ in range(2):
        frames = ll.decoder.decode(ll.pipeline.next_block())
        sizes.append(frames.shape[1])
        assert frames.dtype == torch.uint8
        assert frames.shape[2:] == (8 * DIT.latent_height, 8 * DIT.latent_width, 3)
    assert sizes == [9, 12]
