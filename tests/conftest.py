"""Shared fixtures: small speech corpora synthesized with espeak-ng in LibriSpeech layout."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio

SENTENCES = [
    "the cat sat on the mat",
    "open the door please",
    "she sells sea shells by the shore",
    "we walked home in the rain",
    "a bright red apple fell from the tree",
    "turn left at the next light",
]


def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """Synthesize `text` with espeak-ng and return 16 kHz mono float32 samples."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (bash .ci/install installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        return load_audio(wav)


def write_librispeech_tree(root: Path, utterances: dict[tuple[int, int], list[str]], voice: str = "en-us") -> Path:
    """utterances: {(speaker, chapter): [text, ...]} -> root/speaker/chapter/*.flac + *.trans.txt."""
    for (spk, chap), texts in utterances.items():
        d = root / str(spk) / str(chap)
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, text in enumerate(texts):
            uid = f"{spk}-{chap}-{i:04d}"
            sf.write(d / f"{uid}.flac", espeak(text, voice), 16000)
            lines.append(f"{uid} {text.upper()}")
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Two speakers, six utterances, LibriSpeech layout."""
    root = tmp_path_factory.mktemp("librispeech") / "train-tiny"
    return write_librispeech_tree(root, {(11, 100): SENTENCES[:3], (12, 200): SENTENCES[3:]})
