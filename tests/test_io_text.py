"""Tokenizer (a tiny one trained here drives the real path), umT5 encoder loading, cached text encoder."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from longlive_rtc.model.checkpoint import CheckpointError
from longlive_rtc.model.t5 import T5Config, UMT5Encoder, relative_position_buckets
from longlive_rtc.model.text_encoder import TextEncoder, load_text_encoder
from longlive_rtc.model.tokenizer import PromptTokenizer, clean_prompt

CORPUS = [
    "a red fox runs through the snowy forest at dawn",
    "the camera slowly pans across a quiet harbour with fishing boats",
    "a golden retriever jumps into a lake, splashing water everywhere",
    "neon lights reflect on the wet streets of a city at night",
] * 20


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A small unigram tokenizer with umT5's special tokens (pad 0, eos 1, unk 2), saved as tokenizer.json."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    folder = tmp_path_factory.mktemp("weights") / "google" / "umt5-xxl"
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def t5_file(tokenizer_dir):
    torch.manual_seed(0)
    model = UMT5Encoder(T5Config.tiny(vocab_size=128))
    path = tokenizer_dir.parent.parent / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, path)
    return path


def test_clean_prompt_whitespace_and_html():
    assert clean_prompt("  a\n\tcat &amp;amp;  dog  ") == "a cat & dog"
    assert clean_prompt("caf\u00c3\u00a9") == "caf\u00e9"  # ftfy repairs mojibake


def test_tokenizer_pads_and_terminates_with_eos(tokenizer_dir):
    tok = PromptTokenizer.from_dir(tokenizer_dir)
    assert (tok.pad_id, tok.eos_id) == (0, 1)
    ids, mask = tok(["a red fox", "  neon   lights\n"])
    assert ids.shape == mask.shape == (2, 512) and ids.dtype == torch.long
    for row in range(2):
        n = int(mask[row].sum())
        assert n >= 2 and ids[row, n - 1] == 1  # EOS is the last real token
        assert (ids[row, n:] == 0).all() and (mask[row, n:] == 0).all() and (mask[row, :n] == 1).all()
        assert (ids[row, : n - 1] > 2).all()  # real tokens only, no unk for in-vocabulary words
    direct = tok.tokenizer.encode("a red fox", add_special_tokens=False).ids
    assert ids[0, : len(direct)].tolist() == direct


def test_tokenizer_truncates_to_511_tokens_plus_eos(tokenizer_dir):
    tok = PromptTokenizer.from_dir(tokenizer_dir)
    long_prompt = " ".join(CORPUS)  # far more than 512 tokens
    ids, mask = tok([long_prompt])
    assert mask.sum() == 512 and ids[0, -1] == tok.eos_id
    full = tok.tokenizer.encode(clean_prompt(long_prompt), add_special_tokens=False).ids
    assert len(full) > 600 and ids[0, :511].tolist() == full[:511]
    short = PromptTokenizer.from_dir(tokenizer_dir / "tokenizer.json", text_len=8)
    ids, mask = short([long_prompt])
    assert ids.shape == (1, 8) and mask.all() and ids[0, -1] == 1


def test_tokenizer_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        PromptTokenizer.from_dir(tmp_path)


def test_relative_position_buckets_match_t5():
    buckets = relative_position_buckets(300, 32, 128, torch.device("cpu"))
    row = buckets[150]  # key - query = column - 150
    assert row[150] == 0 and row[151] == 17 and row[149] == 1 and row[157] == 23
    assert row[158] == 24 and row[142] == 8  # first log bucket at distance 8
    assert row[150 + 127] == 31 and row[150 - 128] == 15 and buckets[0, 299] == 31  # clamped beyond 128
    assert buckets.min() == 0 and buckets.max() == 31


def test_full_size_t5_has_official_names_and_shapes():
    with torch.device("meta"):
        state = UMT5Encoder().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert len(shapes) == 2 + 24 * 10
    assert shapes["token_embedding.weight"] == (256384, 4096)
    assert shapes["blocks.23.pos_embedding.embedding.weight"] == (32, 64)
    assert shapes["blocks.0.attn.q.weight"] == (4096, 4096)
    assert shapes["blocks.0.ffn.gate.0.weight"] == (10240, 4096)
    assert shapes["blocks.0.ffn.fc2.weight"] == (4096, 10240)
    assert shapes["norm.weight"] == (4096,) and shapes["blocks.5.norm2.weight"] == (4096,)


def make_encoder(t5_file, tokenizer_dir, **kw) -> TextEncoder:
    return load_text_encoder(
        t5_file, tokenizer_dir, device="cpu", dtype=torch.float32, cfg=T5Config.tiny(vocab_size=128), **kw
    )


def test_padded_outputs_are_zero_and_trimming_is_exact(t5_file, tokenizer_dir):
    enc = make_encoder(t5_file, tokenizer_dir)
    prompts = ["a red fox runs", "the camera slowly pans across a quiet harbour with fishing boats"]
    out = enc.encode(prompts)
    ids, mask = enc.tokenizer(prompts)
    assert out.shape == (2, 512, 32) and out.dtype == torch.float32
    for row in range(2):
        n = int(mask[row].sum())
        assert (out[row, n:] == 0).all() and (out[row, :n].abs().sum(-1) > 0).all()
    full = TextEncoder(enc.encoder, enc.tokenizer, trim_padding=False).encode(prompts)
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)
    # the official way: run all 512 positions with the mask, then zero the padding
    ref = enc.encoder(ids, mask) * mask[..., None]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_one_prompt_is_the_batch_of_one_and_cleaned_text_encodes_alike(t5_file, tokenizer_dir):
    enc = make_encoder(t5_file, tokenizer_dir)
    a = enc("a red fox")
    assert a.shape == (1, 512, 32)
    torch.testing.assert_close(a, enc.encode(["a red fox"]))
    torch.testing.assert_close(enc("  a red   fox "), a)  # the same prompt after cleaning
    assert enc("a red fox") is not a  # no cache here: the engine's PromptCache keeps embeddings


def test_output_device_and_dtype(t5_file, tokenizer_dir):
    enc = load_text_encoder(
        t5_file, tokenizer_dir, device="cpu", dtype=torch.bfloat16, output_device="cpu", cfg=T5Config.tiny(128)
    )
    assert next(enc.encoder.parameters()).dtype == torch.bfloat16
    out = enc("a red fox")
    assert out.dtype == torch.bfloat16 and out.device.type == "cpu"


def test_t5_file_with_wrong_key_fails(tmp_path):
    state = UMT5Encoder(T5Config.tiny(vocab_size=128)).state_dict()
    state["blocks.0.ffn.gate.weight"] = state.pop("blocks.0.ffn.gate.0.weight")
    torch.save(state, tmp_path / "t5.pth")
    with pytest.raises(CheckpointError, match="blocks.0.ffn.gate.0.weight.*blocks.0.ffn.gate.weight"):
        load_text_encoder(tmp_path / "t5.pth", tmp_path, device="cpu", cfg=T5Config.tiny(vocab_size=128))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_token_table_in_host_memory_gives_the_same_encoding(t5_file):
    """`load_umt5` keeps the token table on the CPU by default; the GPU encoder gives the same states."""
    from longlive_rtc.model.t5 import load_umt5

    cfg = T5Config.tiny(vocab_size=128)
    split = load_umt5(t5_file, device="cuda", dtype=torch.float32, cfg=cfg)
    whole = load_umt5(t5_file, device="cuda", dtype=torch.float32, cfg=cfg, embedding_device=None)
    assert split.token_embedding.weight.device.type == "cpu" and split.device.type == "cuda"
    ids = torch.randint(0, 128, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    torch.testing.assert_close(split(ids, mask), whole(ids.cuda(), mask.cuda()))
