"""Word n-gram language models as the beam decoder uses them: vocabulary (the lexicon), tuned settings,
the bundled default. Building and tuning LMs is training work: asr/training/lm.py and kenlm.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

from .model import ASSETS

PathLike = Union[str, Path]
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
DEFAULT_LM_WEIGHT = 0.5
DEFAULT_WORD_SCORE = 0.0
# Beam with a word LM. The lexicon-constrained search needs many hypotheses alive: the bundled model on
# the synthetic dev set (README) has CER 10.8 / 9.3 / 8.7 / 8.6 % at beam 32 / 128 / 512 / 1024, for a
# search RTF of 0.0013 / 0.0051 / 0.020 / 0.039 (one thread, no AVX-512).
LM_BEAM_SIZE = 512
# The bundled general-English LM (asr transcribe/listen/serve use it unless told --no-lm); its tuned weights
# and default beam are in lm.bin.json beside it.
DEFAULT_LM = ASSETS / "lm.bin"


def default_lm() -> Optional[Path]:
    """The bundled LM, if this installation has one."""
    return DEFAULT_LM if DEFAULT_LM.is_file() and words_path(DEFAULT_LM).is_file() else None


def arpa_vocabulary(path: PathLike) -> list[str]:
    """The words of an ARPA file's unigram section, without <s>, </s> and <unk>."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif line.startswith("\\") and in_unigrams:
                break
            elif in_unigrams and line:
                parts = line.split()
                if len(parts) >= 2 and parts[1] not in (BOS, EOS, UNK):
                    words.append(parts[1])
    if not words:
        raise ValueError(f"{path}: no unigrams (not an ARPA language model?)")
    return words


KENLM_BINARY_MAGIC = b"mmap lm http://kheafield.com/code"


def is_kenlm_binary(path: PathLike) -> bool:
    """True for a KenLM binary file (`build_binary` output), by its header."""
    with open(path, "rb") as f:
        return f.read(len(KENLM_BINARY_MAGIC)) == KENLM_BINARY_MAGIC


def words_path(lm: PathLike) -> Path:
    """The word list beside a binary LM: lm.bin -> lm.words.txt (a binary LM has no readable vocabulary)."""
    return Path(lm).with_suffix(".words.txt")


def lm_vocabulary(lm: PathLike) -> list[str]:
    """The LM's words (the beam decoder's lexicon): an ARPA file's unigrams, or for a KenLM binary the
    word list beside it (words_path: one word per line, written by `python -m asr.training.kenlm build`)."""
    if not is_kenlm_binary(lm):
        return arpa_vocabulary(lm)
    words = words_path(lm)
    if not words.is_file():
        raise ValueError(f"{lm}: KenLM binary without its word list {words} (one word per line; "
                         f"`python -m asr.training.kenlm build` writes it)")
    with open(words, encoding="utf-8", errors="replace") as f:
        vocab = [w for w in (line.strip() for line in f) if w and w not in (BOS, EOS, UNK)]
    if not vocab:
        raise ValueError(f"{words}: empty word list")
    return vocab


def settings_path(lm: PathLike) -> Path:
    """Tuned decoding settings live next to the LM: lm.arpa -> lm.arpa.json."""
    return Path(str(lm) + ".json")


def load_settings(lm: PathLike) -> dict:
    """{"lm_weight", "word_score", "silence_score", "beam_size", ...} tuned by `asr lm tune`, or defaults when
    not tuned yet."""
    path = settings_path(lm)
    settings = {"lm_weight": DEFAULT_LM_WEIGHT, "word_score": DEFAULT_WORD_SCORE}
    if path.exists():
        settings.update(json.loads(path.read_text()))
    return settings


_TUNE_DATA: tuple = ()  # a tune worker's (logits, vocab), handed over once when it starts


