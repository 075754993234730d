"""The LongLive adapter refuses, when a prompt is scheduled, text its umT5 tokenizer cannot encode."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from longlive_rtc.generators.base import Generator
from longlive_rtc.generators.longlive import LongLiveGenerator
from longlive_rtc.model.t5 import T5Config, UMT5Encoder
from longlive_rtc.model.text_encoder import TextEncoder
from longlive_rtc.model.tokenizer import PromptTokenizer
from longlive_rtc.protocol import Event
from longlive_rtc.session import Role, Session

from .test_longlive_generator import tiny_longlive


@pytest.fixture(scope="module")
def tokenized() -> LongLiveGenerator:
    """A tiny LongLive whose prompts go through a real (tiny) umT5 tokenizer and encoder."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(["a red fox runs through the snowy forest at dawn"] * 20, trainer)
    torch.manual_seed(0)
    encoder = TextEncoder(UMT5Encoder(T5Config.tiny(vocab_size=64)), PromptTokenizer(tok))
    base = tiny_longlive("tae")
    return LongLiveGenerator(base.pipeline, encoder, base.decoder)


def test_it_implements_the_protocol_and_refuses_lone_surrogates() -> None:
    generator = tiny_longlive("tae")  # the random stand-in encoder: no tokenizer to ask
    assert isinstance(generator, Generator)
    generator.check_prompt("a red fox")
    with pytest.raises(ValueError, match="not valid Unicode"):
        generator.check_prompt("a \ud800 fox")


def test_the_tokenizer_is_asked(tokenized: LongLiveGenerator) -> None:
    tokenized.check_prompt("a red fox")
    tokenized.check_prompt("日本語のプロンプト")  # unknown words are <unk> tokens: encodable
    for empty in ["&nbsp;", "&amp;nbsp;", "\u00a0 \u3000"]:
        with pytest.raises(ValueError, match="nothing is left"):
            tokenized.check_prompt(empty)
    with pytest.raises(ValueError, match="not valid Unicode"):
        tokenized.check_prompt("\udfff")


async def test_a_session_on_longlive_answers_invalid_field(tokenized: LongLiveGenerator) -> None:
    session = Session("ll-h", tokenized)
    try:
        replies: list[Event] = []
        message = {"type": "schedule_prompt", "data": {"new_prompt": "&nbsp;", "timestamp": 0}}
        session.handle(json.dumps(message), Role.CONTROLLER, replies.append)
        assert replies[0].data["code"] == "invalid_field" and "longlive generator" in replies[0].data["message"]
        assert session.schedule.snapshot() == []
        session.handle(json.dumps({**message, "data": {"new_prompt": "a fox", "timestamp": 0}}), Role.CONTROLLER,
                       replies.append)  # fmt: skip
        assert replies[-1].type == "ack" and len(session.schedule) == 1
    finally:
        session.close()
