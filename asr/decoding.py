"""CTC decoding: greedy (best path) with the frame of every emitted character, and word timing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class Word:
    text: str
    start: float  # seconds
    end: float
    confidence: float


@dataclass
class Hypothesis:
    text: str
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)  # output step at which each token was emitted
    probs: list[float] = field(default_factory=list)  # posterior of each token at that step


class GreedyDecoder:
    """Best-path CTC decoding that can be fed logits in pieces: collapse repeats, drop blanks.

    Batch decoding is this same decoder fed the whole utterance at once.
    """

    def __init__(self, vocab: Sequence[str], blank: int = 0):
        self.vocab = list(vocab)
        self.blank = blank
        self.reset()

    def reset(self) -> None:
        self._previous = self.blank
        self._offset = 0
        self.tokens: list[int] = []
        self.frames: list[int] = []
        self.probs: list[float] = []

    def accept(self, logits: torch.Tensor) -> None:
        """logits: (T, V) for the next T output steps."""
        if logits.shape[0] == 0:
            return
        probs, best = logits.float().softmax(-1).max(-1)
        ids = best.tolist()
        for t, (tok, p) in enumerate(zip(ids, probs.tolist())):
            if tok != self.blank and tok != self._previous:
                self.tokens.append(tok)
                self.frames.append(self._offset + t)
                self.probs.append(p)
            self._previous = tok
        self._offset += len(ids)

    @property
    def text(self) -> str:
        return "".join(self.vocab[t] for t in self.tokens).strip()

    def hypothesis(self) -> Hypothesis:
        return Hypothesis(self.text, list(self.tokens), list(self.frames), list(self.probs))


def greedy_decode(logits: torch.Tensor, vocab: Sequence[str], blank: int = 0) -> Hypothesis:
    decoder = GreedyDecoder(vocab, blank)
    decoder.accept(logits)
    return decoder.hypothesis()


def words(hyp: Hypothesis, vocab: Sequence[str], frame_shift: float, time_offset: float = 0.0) -> list[Word]:
    """Groups emitted characters into words; a word spans its first to its last character's step."""
    result: list[Word] = []
    chars: list[tuple[str, int, float]] = []

    def flush() -> None:
        if chars:
            result.append(Word(
                text="".join(c for c, _, _ in chars),
                start=round(time_offset + chars[0][1] * frame_shift, 3),
                end=round(time_offset + (chars[-1][1] + 1) * frame_shift, 3),
                confidence=round(min(p for _, _, p in chars), 4),
            ))
            chars.clear()

    for tok, frame, p in zip(hyp.tokens, hyp.frames, hyp.probs):
        ch = vocab[tok]
        if ch == " ":
            flush()
        else:
            chars.append((ch, frame, p))
    flush()
    return result
