"""Prompt tokenisation for the umT5 encoder, from the local `google/umt5-xxl/tokenizer.json`.

Matches the official wrapper (HF tokenizer, `clean='whitespace'`, `padding='max_length'`, `truncation=True`,
`max_length=512`, special tokens on): clean the text, tokenise, keep at most 511 tokens, append `</s>`, pad
with `<pad>` to 512; the mask marks the real tokens (EOS included).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer

TEXT_LEN = 512
TOKENIZER_FILE = "tokenizer.json"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
_WHITESPACE = re.compile(r"\s+")


def clean_prompt(text: str) -> str:
    """ftfy fix, HTML-unescape twice, collapse runs of whitespace to one space, strip."""
    import ftfy  # imported here so GPU-only scripts can use the package without it

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip()


class PromptTokenizer:
    """Cleaned prompts -> (ids, mask), both int64 [B, text_len], EOS-terminated and padded."""

    def __init__(self, tokenizer: Tokenizer, text_len: int = TEXT_LEN):
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.text_len = text_len
        self.eos_id = self._token_id(EOS_TOKEN)
        self.pad_id = self._token_id(PAD_TOKEN)

    @classmethod
    def from_dir(cls, path: str | Path, text_len: int = TEXT_LEN) -> PromptTokenizer:
        """Load `<path>/tokenizer.json` (or `path` itself if it is the file)."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {file}")
        return cls(Tokenizer.from_file(str(file)), text_len)

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"tokenizer has no {token!r} token")
        return token_id

    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encodings = self.tokenizer.encode_batch([clean_prompt(p) for p in prompts], add_special_tokens=False)
        ids = torch.full((len(prompts), self.text_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), self.text_len), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            tokens = [*encoding.ids[: self.text_len - 1], self.eos_id]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        return ids, mask
