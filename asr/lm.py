"""Word n-gram language models as the beam decoder uses them: vocabulary (the lexicon), tuned settings,
the bundled default. Building and tuning LMs is training work: asr/training/lm.py and kenlm.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional, Union

from .model import ASSETS
from .utils import atomic_write

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


# A corrupt KenLM binary can crash KenLM outright (it trusts the offsets in the file: a few flipped bytes
# gave a segmentation fault), which no exception handler catches. So a binary is first loaded in a child
# process, which also looks up every word; a file that passed is remembered by (path, size, mtime), so this
# costs ~0.5 s once per file.
_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
_VERIFIED_CACHE = _CACHE_HOME / "asr" / "kenlm-verified.json"
# The child also scores every word once, as the decoder does when it builds its lexicon trie: corrupt
# tables crash there rather than in the loader.
_PROBE = ("import sys\nfrom flashlight.lib.text.decoder.kenlm import KenLM\n"
          "from flashlight.lib.text.dictionary import Dictionary\n"
          "d = Dictionary(sys.argv[2])\nlm = KenLM(sys.argv[1], d)\nstate = lm.start(False)\n"
          "for i in range(d.index_size()):\n    lm.finish(lm.score(state, i)[0])\n")


def verify_kenlm_binary(lm: PathLike, word_list: PathLike) -> None:
    """ValueError naming `lm` if loading it crashes KenLM (a corrupt binary); other load errors are left to
    the real load, which reports them. `word_list`: a flashlight dictionary file (one word a line)."""
    path = Path(lm).resolve()
    try:
        st = path.stat()
        key, stamp = str(path), [st.st_size, st.st_mtime_ns]
        cache = json.loads(_VERIFIED_CACHE.read_text()) if _VERIFIED_CACHE.is_file() else {}
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        key, stamp, cache = str(path), None, {}
    if stamp is not None and cache.get(key) == stamp:
        return
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(word_list)], capture_output=True,
                               timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return  # cannot probe here (no fork, very slow disk): load it in this process as before
    if child.returncode < 0:
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        raise ValueError(f"{lm}: corrupt KenLM binary (loading it crashed KenLM: {name}); rebuild it")
    if child.returncode == 0 and stamp is not None:
        cache[key] = stamp
        try:
            with atomic_write(_VERIFIED_CACHE) as f:
                f.write(json.dumps(cache))
        except OSError:
            pass  # no cache: the probe runs again next time


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


def lexicon_source(lm: PathLike) -> Path:
    """The file the decoder's words come from, for error messages: the word list of a binary LM, else the LM."""
    return words_path(lm) if is_kenlm_binary(lm) else Path(lm)


def settings_path(lm: PathLike) -> Path:
    """Tuned decoding settings live next to the LM: lm.arpa -> lm.arpa.json."""
    return Path(str(lm) + ".json")


def load_settings(lm: PathLike) -> dict:
    """{"lm_weight", "word_score", "silence_score", "beam_size", ...} tuned by `asr lm tune`, or defaults when
    not tuned yet."""
    path = settings_path(lm)
    settings = {"lm_weight": DEFAULT_LM_WEIGHT, "word_score": DEFAULT_WORD_SCORE}
    if path.exists():
        try:
            tuned = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"{path}: unreadable LM settings ({type(e).__name__}); fix or delete it") from None
        numbers = ("lm_weight", "word_score", "silence_score", "beam_size")
        if not isinstance(tuned, dict) or any(not isinstance(tuned.get(k, 0), (int, float)) for k in numbers):
            raise ValueError(f"{path}: LM settings must be a JSON object of numbers ({', '.join(numbers)})")
        settings.update(tuned)
    return settings


_TUNE_DATA: tuple = ()  # a tune worker's (logits, vocab), handed over once when it starts


