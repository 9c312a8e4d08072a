"""Transcript files: txt, json, srt, vtt, tsv; segmentation into readable subtitle cues; atomic writes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

from .decoding import Word
from .utils import atomic_write

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
MAX_GAP = 0.5  # seconds of silence between words that end a segment (an endpoint)
MAX_DURATION = 10.0  # seconds per segment
LINE_CHARS = 42  # characters per subtitle line (the usual broadcast limit); two lines per cue


@dataclass
class Segment:
    start: float
    end: float
    words: list[Word] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def segment_words(words: Sequence[Word], max_gap: float = MAX_GAP, max_duration: float = MAX_DURATION,
                  max_chars: int = 2 * LINE_CHARS) -> list[Segment]:
    """Greedy left-to-right split: a new segment starts at a pause >= max_gap, or when adding the next
    word would make the segment longer than max_duration seconds or max_chars characters."""
    segments: list[Segment] = []
    for w in words:
        seg = segments[-1] if segments else None
        if (seg is None or w.start - seg.end >= max_gap or w.end - seg.start > max_duration
                or len(seg.text) + 1 + len(w.text) > max_chars):
            segments.append(Segment(w.start, w.end, [w]))
        else:
            seg.words.append(w)
            seg.end = w.end
    return segments


def wrap_lines(text: str, width: int = LINE_CHARS) -> list[str]:
    """Splits a cue into lines of <= width characters at spaces, balanced (two lines of similar length)."""
    if len(text) <= width:
        return [text]
    words = text.split()
    best: list[str] = [text]
    best_cost = float("inf")
    for i in range(1, len(words)):  # one break, as even as possible; cues are at most two lines long
        a, b = " ".join(words[:i]), " ".join(words[i:])
        cost = max(len(a), len(b))
        if cost < best_cost:
            best, best_cost = [a, b], cost
    return best


def _clock(seconds: float, decimal: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def to_txt(text: str, segments: Sequence[Segment]) -> str:
    return text + "\n"


def to_json(text: str, segments: Sequence[Segment]) -> str:
    def word(w: Word) -> dict:
        return {"word": w.text, "start": w.start, "end": w.end, "confidence": w.confidence}

    return json.dumps({
        "text": text,
        "segments": [{"start": s.start, "end": s.end, "text": s.text, "words": [word(w) for w in s.words]}
                     for s in segments],
        "words": [word(w) for s in segments for w in s.words],
    }, indent=2) + "\n"


def to_srt(text: str, segments: Sequence[Segment]) -> str:
    cues = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n" + "\n".join(wrap_lines(s.text)) + "\n"
            for i, s in enumerate(segments, start=1)]
    return "\n".join(cues)


def to_vtt(text: str, segments: Sequence[Segment]) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n" + "\n".join(wrap_lines(s.text)) + "\n"
            for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_tsv(text: str, segments: Sequence[Segment]) -> str:
    """One row per word: start and end in integer milliseconds (like whisper's tsv), word, confidence."""
    rows = ["start\tend\tword\tconfidence"]
    rows += [f"{round(w.start * 1000)}\t{round(w.end * 1000)}\t{w.text}\t{w.confidence:.4f}"
             for s in segments for w in s.words]
    return "\n".join(rows) + "\n"


WRITERS: dict[str, Callable[[str, Sequence[Segment]], str]] = {
    "txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}


def render(fmt: str, text: str, words: Sequence[Word]) -> str:
    if fmt not in WRITERS:
        raise ValueError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
    return WRITERS[fmt](text, segment_words(words))


def write_transcript(fmt: str, text: str, words: Sequence[Word], source: Union[str, Path],
                     output_dir: Union[str, Path]) -> Path:
    """Writes OUTPUT_DIR/<source stem>.<fmt> atomically (temp file + rename); returns its path."""
    content = render(fmt, text, words)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{Path(source).stem}.{fmt}"
    with atomic_write(path) as f:
        f.write(content)
    return path
