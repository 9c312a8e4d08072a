"""Character vocabulary and text normalization shared by training, decoding and evaluation."""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

BLANK = "<blank>"
# Index 0 is the CTC blank; the rest are the characters the model can emit.
DEFAULT_VOCAB: tuple[str, ...] = (BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u02bc": "'"})
_SEPARATORS = re.compile(r"[-\u2010-\u2015_/]+")


def normalize_text(text: str, vocab: Sequence[str] = DEFAULT_VOCAB) -> str:
    """Lower-case, strip accents and punctuation, keep only vocabulary characters, single spaces."""
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _SEPARATORS.sub(" ", text)
    allowed = set(vocab[1:])
    text = "".join(c if c in allowed else (" " if c.isspace() else "") for c in text)
    # Apostrophes only make sense inside words ("don't"), not as quotes.
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", "", text)
    return " ".join(text.split())


class Tokenizer:
    """Maps normalized text to token ids and back; id 0 is the CTC blank."""

    def __init__(self, vocab: Sequence[str] = DEFAULT_VOCAB):
        if vocab[0] != BLANK:
            raise ValueError(f"vocabulary must start with {BLANK!r}")
        self.vocab = tuple(vocab)
        self._index = {c: i for i, c in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def blank(self) -> int:
        return 0

    def encode(self, text: str) -> list[int]:
        return [self._index[c] for c in normalize_text(text, self.vocab)]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.vocab[i] for i in ids if i != self.blank)
