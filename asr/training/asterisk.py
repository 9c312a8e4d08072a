"""A real-speech test set from Debian's Asterisk core sound prompts (one US female voice, "Allison").

Audio: Debian package `asterisk-core-sounds-en-g722` (raw G.722 at 16 kHz below
`/usr/share/asterisk/sounds/en_US_f_Allison`). Text: `asterisk-core-sounds-en`
(`core-sounds-en.txt.gz`, lines `relative/path: Text.`).

    python -m asr.training.asterisk DEST [--sounds-dir D] [--text-file F]

writes `DEST/audio/<path>.flac` (16 kHz mono) and the manifest `DEST/asterisk.jsonl`
(rows `id`, `path`, `text`, `duration`, `speaker`, `source`; `asr.data.read_manifest` reads it).

The text file's lines are what the prompt says, written for people: digits, `#`, `*`, acronyms,
a URL, bracketed notes. `prompt_texts` turns them into what the speaker says, in the project's
alphabet. Where that is not obvious from the text (numbers, `0`, `#`/`*`, acronyms read as words
or as letters) the reading was decided from the audio, and is recorded in `SPOKEN` below.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import soundfile as sf

from ..tokenizer import normalize_text
from ..utils import atomic_path, atomic_write

log = logging.getLogger("asr")

PathLike = Union[str, Path]
DEFAULT_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
DEFAULT_TEXT_FILE = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SOUNDS_PACKAGE = "asterisk-core-sounds-en-g722"
TEXT_PACKAGE = "asterisk-core-sounds-en"
SPEAKER = "asterisk-allison"
SOURCE = "asterisk"
MANIFEST_NAME = "asterisk.jsonl"
SAMPLE_RATE = 16000

# ---------------------------------------------------------------- text

# Prompts whose reading is not obvious from the text, decided from the audio:
# {prompt: (text as in the text file, what is said)}. An entry applies only while the text file
# still has exactly that text; otherwise the general rules below are used (with a warning).
#
# How it was decided: each prompt was decoded with PocketSphinx (`asr.evaluate.pocketsphinx_recognizer`,
# its generic en-us model and LM), then with a PocketSphinx JSGF grammar whose alternatives are the
# plausible readings (the acoustically best path wins), and competing readings were force-aligned
# (`Decoder.set_align_text`) and their acoustic log-likelihoods compared; durations were checked too.
SPOKEN: dict[str, tuple[str, str]] = {
    # Every number here is read digit by digit, with "zero" (never "oh"). Free decoding heard "five
    # zero zero", "twenty eight point eight", "six heroes year", "one two three four" (twice),
    # "for two for it to", "eight five zero zero", and "i ate a x" for IAX; forced alignment
    # prefers each of these by 100 to 2,100 log-likelihood units over the other readings
    # ("five hundred", "five oh oh", "six hundred", "twelve thirty four", "one thousand two
    # hundred thirty four", "forty two forty two", "eighty five hundred", "eight thousand five
    # hundred", "two eight point eight", "twenty eight eight"; "eeks" for IAX). "Finally," is not
    # said: the audio has 0.23 s of silence between "system" and "you", and forced alignment with
    # "finally" fails while it succeeds without it. IP and PBX are spelled out as letters.
    "demo-instruct": (
        "If you would like to learn more technical information about Asterisk dial 2 now.  If you'd "
        "like to test out the voice over IP capabilities of Asterisk you can dial 500 to attempt an "
        "Inter-Asterisk Exchange or IAX connection to a demonstration server at Digium.  In order for "
        "this test to work you will need to be connected to the Internet and have at least a 28.8 "
        "kilobit modem.  To execute an echo test dial 600.  This test is most useful when you have "
        "connected to this Asterisk server from a remote location.  The sample configuration also has "
        "a single user with extension 1234 and password 4242.  That user is configured to ring the "
        "console when their extension is dialed.  If you dial 1234 you can try to ring the console.  "
        "If the console is busy or unavailable you will be given the option to leave voicemail.  To "
        "check voice mail for the user dial extension 8500 to enter the voicemail system.  Finally,  "
        "you can press the pound key to disconnect from the PBX.",
        "if you would like to learn more technical information about asterisk dial two now if you'd "
        "like to test out the voice over i p capabilities of asterisk you can dial five zero zero to "
        "attempt an inter asterisk exchange or i a x connection to a demonstration server at digium "
        "in order for this test to work you will need to be connected to the internet and have at "
        "least a twenty eight point eight kilobit modem to execute an echo test dial six zero zero "
        "this test is most useful when you have connected to this asterisk server from a remote "
        "location the sample configuration also has a single user with extension one two three four "
        "and password four two four two that user is configured to ring the console when their "
        "extension is dialed if you dial one two three four you can try to ring the console if the "
        "console is busy or unavailable you will be given the option to leave voicemail to check "
        "voice mail for the user dial extension eight five zero zero to enter the voicemail system "
        "you can press the pound key to disconnect from the p b x",
    ),
    # Digit by digit: free decoding "h three to three"; alignment prefers "three two three" over
    # "three twenty three" by 109, and no "dot"/"point" after the H (by 135/170).
    "spy-h323": ("H.323", "h three two three"),
    # Said as one word, "eeks" (not the letters I A X as in demo-instruct): free decoding "the
    # best" / "eight"; the grammar picks "eeks" over "i a x" for both, alignment by 27 and 143;
    # 0.8 s files. Written as the word IAX, like SIP ("sip": grammar) and DAHDI ("dahdi": grammar).
    "spy-iax": ("IAX", "iax"),
    "spy-iax2": ('IAX (note: does not say "2")', "iax"),
    # "0" is "zero" (free decoding and the grammar agree, for all three).
    "dictate/forhelp": ("press 0 for help", "press zero for help"),
    "vm-reachoper": ("press 0 to reach an operator", "press zero to reach an operator"),
    "vm-opts-full": (
        "press 2 to access messages saved in other folders.  Press 3 to record a message for another "
        "mailbox.  Press 0 for greetings and password management.",
        "press two to access messages saved in other folders press three to record a message for "
        "another mailbox press zero for greetings and password management",
    ),
    # "#" is "pound" (not "hash", "pound key", "pound sign") and "*" is "star" (not "asterisk(s)",
    # "stars"): free decoding and the grammar agree.
    "dictate/enter_filename": (
        "Enter a numeric dictation filename followed by # or just # to exit",
        "enter a numeric dictation filename followed by pound or just pound to exit",
    ),
    "dictate/both_help": (
        "press * to toggle pause, press # to enter a new dictation filename",
        "press star to toggle pause press pound to enter a new dictation filename",
    ),
    "demo-enterkeywords": (
        "Please enter one or more keywords separated by * and then press the pound key.",
        "please enter one or more keywords separated by star and then press the pound key",
    ),
    # The URL is read out with "w w w" (grammar: chosen over leaving it out); PBX and IVR as letters.
    "demo-moreinfo": (
        "Asterisk is an Open Source full-featured PBX and IVR platform that runs on the linux operating "
        "system.  For more information, visit www.asterisk.org.",
        "asterisk is an open source full featured p b x and i v r platform that runs on the linux "
        "operating system for more information visit w w w dot asterisk dot org",
    ),
}

# Misspellings in the text file; the recordings have the real word (free decoding heard
# "exclamation point", "representatives", "unidentified or ...", "come straight through"; the
# grammar picks "unmute" over "umute").
SPELLING = {
    "exclaimation": "exclamation",
    "represenatives": "representatives",
    "umute": "unmute",
    "un-indentified": "unidentified",
    "witheld": "withheld",
    "fourtieth": "fortieth",
    "thru": "through",
    "xray": "x-ray",  # phonetic/x_p: said "x ray"
}

# Acronyms said letter by letter (case-sensitive, whole tokens). Said as words, and so left alone:
# SIP, DAHDI, IAX (spy-*; see SPOKEN).
LETTERS = {"PBX": "P B X", "IVR": "I V R", "MGCP": "M G C P", "USB": "U S B", "IP": "I P",
           "A.M.": "A M", "P.M.": "P M"}

SYMBOLS = {"#": "pound", "*": "star"}

_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")  # [@], (note: ...), <beep ascending>
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_URL = re.compile(r"\b(?:www\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:org|com|net|edu)\b")


def _url_words(match: re.Match) -> str:
    """www.asterisk.org -> w w w dot asterisk dot org"""
    return " " + " dot ".join("w w w" if p.lower() == "www" else p for p in match.group().split(".")) + " "


def _number_words(number: str) -> str:
    """A number as words, American style: 1234 -> one thousand two hundred thirty four,
    28.8 -> twenty eight point eight (num2words, without its "and", commas and hyphens)."""
    try:
        from num2words import num2words
    except ImportError:
        raise RuntimeError("the Python package num2words is missing: pip install num2words") from None
    words = num2words(Decimal(number)) if "." in number else num2words(int(number))
    words = re.sub(r"\band\b", " ", words.replace(",", " ").replace("-", " "))
    return " ".join(words.split())


def spoken_text(written: str) -> str:
    """What a prompt's text says, normalized; "" if it only describes a sound (a tone, silence).

    Bracketed notes are dropped, known misspellings fixed, URLs read out ("w w w dot ... dot org"),
    letter-by-letter acronyms spaced out, `#`/`*` become "pound"/"star", a digit glued to letters
    is split off ("3D" -> "three d") and numbers are spelled out as cardinals (28.8 -> "twenty
    eight point eight"; a reading decided from the audio goes in SPOKEN instead)."""
    text = _ANNOTATION.sub(" ", written)
    for wrong, right in SPELLING.items():
        text = re.sub(rf"(?<!\w){re.escape(wrong)}(?!\w)", right, text, flags=re.IGNORECASE)
    text = _URL.sub(_url_words, text)
    for acronym, letters in LETTERS.items():
        text = re.sub(rf"(?<![\w.]){re.escape(acronym)}(?![\w])", f" {letters} ", text)
    for symbol, word in SYMBOLS.items():
        text = text.replace(symbol, f" {word} ")
    text = re.sub(r"(?<=\d)(?=[A-Za-z])|(?<=[A-Za-z])(?=\d)", " ", text)
    text = _NUMBER.sub(lambda m: f" {_number_words(m.group())} ", text)
    return normalize_text(text)


def _read_text_file(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def parse_text_file(text_file: PathLike) -> dict[str, str]:
    """{prompt path: its text as written}, for every `path: text` line (`;` starts a comment)."""
    prompts: dict[str, str] = {}
    for line in _read_text_file(Path(text_file)).splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        name, sep, written = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            log.warning(f"{text_file}: not a `path: text` line, ignored: {line.strip()!r}")
            continue
        prompts[name.strip()] = " ".join(written.split())
    return prompts


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def prompt_texts(text_file: PathLike) -> dict[str, str]:
    """{prompt path without extension: spoken text in the project's alphabet} for every prompt of
    `text_file` that is speech (prompts that only describe a tone or silence are left out)."""
    out: dict[str, str] = {}
    for name, written in parse_text_file(text_file).items():
        decided = SPOKEN.get(name)
        if decided is not None and _same(decided[0], written):
            out[name] = normalize_text(decided[1])
            continue
        if decided is not None:
            log.warning(f"{name}: text changed since its reading was decided ({written!r}); "
                        "using the general rules")
        elif re.search(r"\d\d|\d\.\d", _ANNOTATION.sub(" ", written)):
            log.warning(f"{name}: a number of several digits is read as a cardinal; check the audio "
                        f"and add the prompt to SPOKEN ({written!r})")
        text = spoken_text(written)
        if text:
            out[name] = text
    return out


# ---------------------------------------------------------------- audio


@dataclass
class Preparation:
    manifest: Path
    prompts: int = 0
    seconds: float = 0.0
    decoded: int = 0  # newly decoded this run (the rest were there from an earlier run)
    non_speech: list[str] = field(default_factory=list)  # text only describes a sound
    no_audio: list[str] = field(default_factory=list)  # text without audio file
    no_text: list[str] = field(default_factory=list)  # audio file without text
    failed: list[str] = field(default_factory=list)  # "path: reason" for audio that did not decode

    @property
    def skipped(self) -> int:
        return len(self.non_speech) + len(self.no_audio) + len(self.no_text) + len(self.failed)


def _decode_g722(src: Path) -> np.ndarray:
    """16 kHz mono int16 samples of a raw G.722 file (ffmpeg in a subprocess)."""
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "g722", "-i", str(src),
         "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        capture_output=True)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"ffmpeg failed ({lines[-1] if lines else f'exit code {result.returncode}'})")
    samples = np.frombuffer(result.stdout, dtype=np.int16)
    if samples.size == 0:
        raise ValueError("no audio samples")
    return samples


def _existing_duration(flac: Path) -> Optional[float]:
    """Duration of a flac decoded by an earlier run, None if it is not there (or unreadable)."""
    if not flac.is_file():
        return None
    try:
        info = sf.info(str(flac))
    except (OSError, RuntimeError):  # missing, or not a readable audio file (soundfile's errors)
        return None
    return info.frames / info.samplerate if info.samplerate > 0 and info.frames > 0 else None


def prepare(dest: PathLike, sounds_dir: PathLike = DEFAULT_SOUNDS_DIR,
            text_file: PathLike = DEFAULT_TEXT_FILE) -> Preparation:
    """Decodes every speech prompt to `dest/audio/<path>.flac` (skipping those already there) and
    writes the manifest `dest/asterisk.jsonl`; returns what was done and what was skipped."""
    dest, sounds_dir, text_file = Path(dest), Path(sounds_dir), Path(text_file)
    if not sounds_dir.is_dir():
        raise RuntimeError(f"{sounds_dir}: no such folder (install the Debian package {SOUNDS_PACKAGE})")
    if not text_file.is_file():
        raise RuntimeError(f"{text_file}: no such file (install the Debian package {TEXT_PACKAGE})")
    audio = {p.relative_to(sounds_dir).with_suffix("").as_posix(): p for p in sorted(sounds_dir.rglob("*.g722"))}
    if not audio:
        raise RuntimeError(f"{sounds_dir}: no .g722 files (install the Debian package {SOUNDS_PACKAGE})")
    written = parse_text_file(text_file)
    texts = prompt_texts(text_file)
    report = Preparation(dest / MANIFEST_NAME)
    report.non_speech = sorted(n for n in written if n not in texts)
    report.no_audio = sorted(n for n in texts if n not in audio)
    report.no_text = sorted(n for n in audio if n not in written)

    rows = []
    ids: dict[str, str] = {}
    for name in sorted(n for n in texts if n in audio):
        flac = dest / "audio" / f"{name}.flac"
        duration = _existing_duration(flac)
        try:
            if duration is None:
                if shutil.which("ffmpeg") is None:
                    raise RuntimeError("ffmpeg is not installed (install the Debian package ffmpeg)")
                samples = _decode_g722(audio[name])
                with atomic_path(flac) as tmp:
                    sf.write(str(tmp), samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
                duration = samples.size / SAMPLE_RATE
                report.decoded += 1
        except (ValueError, OSError) as e:
            message = f"{audio[name]}: cannot decode ({e}); skipped"
            log.warning(message)
            report.failed.append(message)
            continue
        uid = name.replace("/", "-")
        if uid in ids:
            raise RuntimeError(f"prompts {ids[uid]} and {name} would share the id {uid}")
        ids[uid] = name
        rows.append({"id": uid, "path": flac.relative_to(dest).as_posix(), "text": texts[name],
                     "duration": round(duration, 6), "speaker": SPEAKER, "source": SOURCE})
    with atomic_write(report.manifest) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    report.prompts = len(rows)
    report.seconds = sum(r["duration"] for r in rows)
    return report


def prepare_asterisk(dest: PathLike, sounds_dir: PathLike = DEFAULT_SOUNDS_DIR,
                     text_file: PathLike = DEFAULT_TEXT_FILE) -> Path:
    """Decodes the Asterisk prompts below `dest` and returns the manifest's path (see `prepare`)."""
    return prepare(dest, sounds_dir, text_file).manifest


# ---------------------------------------------------------------- command line


def _names(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asr.training.asterisk",
        description="Real-speech test set from Debian's Asterisk prompts: flac files and a jsonl manifest.")
    parser.add_argument("dest", type=Path, help="output folder (audio/ and asterisk.jsonl)")
    parser.add_argument("--sounds-dir", type=Path, default=DEFAULT_SOUNDS_DIR,
                        help=f"G.722 prompts (default: {DEFAULT_SOUNDS_DIR}, package {SOUNDS_PACKAGE})")
    parser.add_argument("--text-file", type=Path, default=DEFAULT_TEXT_FILE,
                        help=f"prompt texts (default: {DEFAULT_TEXT_FILE}, package {TEXT_PACKAGE})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        report = prepare(args.dest, args.sounds_dir, args.text_file)
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{report.prompts} prompts, {report.seconds / 60:.1f} min ({report.decoded} decoded now, "
          f"{report.prompts - report.decoded} already there) -> {report.manifest}")
    print(f"skipped {report.skipped}:")
    for label, items in (("not speech (text only describes a sound)", report.non_speech),
                         ("text without audio", report.no_audio),
                         ("audio without text", report.no_text),
                         ("audio that does not decode", report.failed)):
        print(f"  {len(items)} {label}" + (f": {_names(items)}" if items else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
