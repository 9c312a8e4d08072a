"""Endpoint detection: decide when an utterance has ended, from the CTC output alone.

The rules follow sherpa-onnx's endpointing. "Trailing silence" is the time since the greedy CTC
decoder last emitted a character (the step of `GreedyDecoder.frames[-1]`): blank steps and
repeats of the last token add nothing to the transcript, so they count as silence. (Counting only
blank steps would never end an utterance for a model that holds a non-blank token through
silence, which small models do.) No separate voice-activity model is needed.

- rule 1: trailing silence >= `silence_no_speech` s, even if nothing was decoded (so a stream
  of noise or silence is cut into bounded pieces and the recognizer state is refreshed);
- rule 2: trailing silence >= `silence` s after something was decoded (the normal end of a phrase);
- rule 3: utterance length >= `max_utterance` s (bounds latency and memory while someone talks on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class EndpointConfig:
    silence: float = 0.8  # rule 2, seconds
    silence_no_speech: float = 2.4  # rule 1, seconds
    max_utterance: float = 20.0  # rule 3, seconds

    def __post_init__(self) -> None:
        for name in ("silence", "silence_no_speech", "max_utterance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"endpoint {name.replace('_', '-')} must be > 0 seconds, got {getattr(self, name)}")


class Endpointer:
    """Tracks the output steps of the current utterance; `endpoint()` says whether (and why) it ended.

    Feed it the logits each chunk produced (`StreamingRecognizer.accept_logits`), call `reset()`
    whenever the recognizer is reset.
    """

    def __init__(self, config: EndpointConfig, frame_shift: float, blank: int = 0):
        self.config = config
        self.frame_shift = frame_shift
        self.blank = blank
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.last_speech_step: Optional[int] = None  # step of the last emitted token
        self._previous = self.blank

    def accept(self, logits: torch.Tensor) -> None:
        """logits: (T, V) for the next T output steps of this utterance."""
        if logits.shape[0] == 0:
            return
        best = logits.argmax(-1)
        previous = torch.cat([best.new_tensor([self._previous]), best[:-1]])
        # Exactly where greedy CTC emits: a non-blank token that differs from the step before.
        emitted = torch.nonzero((best != self.blank) & (best != previous)).reshape(-1)
        if emitted.numel():
            self.last_speech_step = self.steps + int(emitted[-1])
        self._previous = int(best[-1])
        self.steps += logits.shape[0]

    @property
    def decoded(self) -> bool:
        """Whether any token was emitted in this utterance."""
        return self.last_speech_step is not None

    @property
    def trailing_silence(self) -> float:
        """Seconds since the last emitted token (all steps if none)."""
        blanks = self.steps if self.last_speech_step is None else self.steps - self.last_speech_step - 1
        return blanks * self.frame_shift

    @property
    def duration(self) -> float:
        return self.steps * self.frame_shift

    def endpoint(self) -> Optional[str]:
        """None, or which rule fired: "silence", "silence-no-speech" or "max-utterance"."""
        # Rounding guard: 0.8 s / 0.03 s must fire at step 27, not at 28 because 27 * 0.03 < 0.81.
        eps = 1e-6
        if self.decoded and self.trailing_silence + eps >= self.config.silence:
            return "silence"
        if self.trailing_silence + eps >= self.config.silence_no_speech:
            return "silence-no-speech"
        if self.duration + eps >= self.config.max_utterance:
            return "max-utterance"
        return None
