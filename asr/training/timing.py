"""Word-timing calibration: how late a causal CTC model emits words, measured on audio with known word times.

A unidirectional model can only emit a character after it has heard it, and CTC puts each character's
spike wherever training found convenient, so raw word times run late by a model-specific amount. We build
audio whose word boundaries are known exactly (each word synthesized alone, joined by silences of known
length), force-align the known text, and take the median start and end delay. The delays are stored in the
checkpoint (`AcousticModel.word_delay`) and subtracted from every word time the model reports.

Calibration voices are the synthetic corpus's dev voices (see asr.synthesize.HELD_OUT), so a check on
train or test voices measures the correction on voices it was not fitted to.

    asr calibrate-timing MODEL.pt            # measures and stores the delays in MODEL.pt
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..decoding import align_words
from ..model import AcousticModel

SAMPLE_RATE = 16000

# (engine, voice) pairs from the corpus's dev split: never in train, never in test.
CALIBRATION_VOICES: tuple[tuple[str, str], ...] = (
    ("espeak", "en-029"), ("espeak", "en-us+m6"), ("espeak", "en-gb+f3"), ("flite", "awb"))
CALIBRATION_TEXTS: tuple[str, ...] = (
    "and the people answered with one voice",
    "seven days shall you eat bread in the house",
    "he went down to the river before morning",
    "they gave thanks for the light of the city",
    "my brother keeps the sheep on the hills",
    "we heard the sound of many waters",
)


@dataclass
class WordError:
    word: str
    start: float  # reported minus true, seconds
    end: float


def speaker(engine: str, voice: str) -> Callable[[str], np.ndarray]:
    """A function speaking one word with a corpus voice at its default rate -> 16 kHz float32 audio."""
    from .synthesize import Voice, synthesize

    v = Voice(0, engine, voice, 1.0, None, "dev")  # default rate and pitch
    return lambda text: synthesize(v, text)


def audible(audio: np.ndarray, threshold_db: float = -40.0) -> np.ndarray:
    """The audio from its first to its last 10 ms frame within `threshold_db` of the peak."""
    from .synthesize import trim_silence

    return trim_silence(audio, keep=0.0, threshold_db=threshold_db)


def spoken_words(words: Sequence[str], gaps: Sequence[float], speak: Callable[[str], np.ndarray],
                 tail: float = 0.5) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Each word spoken on its own, cut to its audible part, after a silence of the given length.

    Returns the audio and each word's true (start, end) in seconds."""
    parts, spans, t = [], [], 0.0
    for word, gap in zip(words, gaps, strict=True):
        audio = audible(speak(word))
        silence = np.zeros(int(round(gap * SAMPLE_RATE)), np.float32)
        parts += [silence, audio]
        t += len(silence) / SAMPLE_RATE
        spans.append((t, t + len(audio) / SAMPLE_RATE))
        t += len(audio) / SAMPLE_RATE
    parts.append(np.zeros(int(tail * SAMPLE_RATE), np.float32))
    return np.concatenate(parts), spans


def word_errors(model: AcousticModel, audio: np.ndarray, text: str, spans: Sequence[tuple[float, float]],
                delay: tuple[float, float] | None = None) -> list[WordError]:
    """Reported minus true word times for the reference `text` force-aligned to the model's logits.

    `delay` overrides the model's stored correction ((0, 0) measures the raw model)."""
    from ..transcribe import batch_logits

    words = align_words(batch_logits(model, audio), text, model.config.vocab, model.frame_shift,
                        delay=model.word_delay if delay is None else delay)
    if [w.text for w in words] != text.split():
        raise ValueError(f"could not align {text!r}")
    return [WordError(w.text, w.start - a, w.end - b) for w, (a, b) in zip(words, spans)]


@dataclass
class Case:
    text: str
    audio: np.ndarray
    spans: list[tuple[float, float]]


def cases(voices: Sequence[tuple[str, str]] = CALIBRATION_VOICES, texts: Sequence[str] = CALIBRATION_TEXTS,
          seed: int = 0) -> list[Case]:
    """Every text spoken by every voice, word by word with random 0.15-0.8 s gaps."""
    rng = random.Random(seed)
    result: list[Case] = []
    for engine, voice in voices:
        speak = speaker(engine, voice)
        for text in texts:
            gaps = [rng.uniform(0.15, 0.8) for _ in text.split()]
            audio, spans = spoken_words(text.split(), gaps, speak)
            result.append(Case(text, audio, spans))
    return result


def measure(model: AcousticModel, data: Sequence[Case], delay: tuple[float, float] | None = None) -> list[WordError]:
    return [e for case in data for e in word_errors(model, case.audio, case.text, case.spans, delay)]


def median_delay(errors: Sequence[WordError]) -> tuple[float, float]:
    """(start, end) delay in seconds from the raw model's errors (measure(..., delay=(0.0, 0.0)))."""
    return (round(statistics.median(e.start for e in errors), 3),
            round(statistics.median(e.end for e in errors), 3))


def summary(errors: Sequence[WordError]) -> str:
    """One line: median and 90th-percentile absolute start/end error."""
    def p90(xs: list[float]) -> float:
        return float(np.percentile(np.abs(xs), 90))

    starts, ends = [e.start for e in errors], [e.end for e in errors]
    return (f"{len(errors)} words: start error median {statistics.median(starts):+.3f} s, |90%| {p90(starts):.3f} s; "
            f"end error median {statistics.median(ends):+.3f} s, |90%| {p90(ends):.3f} s")
