"""Endpoint detection: decide when an utterance has ended, from the CTC output alone.

The rules follow sherpa-onnx's endpointing. "Trailing silence" is the number of trailing output
steps whose best token is blank (the greedy decoder emits nothing there), times the step length:
no separate voice-activity model is needed, and it measures exactly "nothing new was recognised".

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
        self.last_speech_step: Optional[int] = None  # last step whose best token was not blank

    def accept(self, logits: torch.Tensor) -> None:
        """logits: (T, V) for the next T output steps of this utterance."""
        if logits.shape[0] == 0:
            return
        speech = torch.nonzero(logits.argmax(-1) != self.blank).reshape(-1)
        if speech.numel():
            self.last_speech_step = self.steps + int(speech[-1])
        self.steps += logits.shape[0]

    @property
    def decoded(self) -> bool:
        """Whether anything non-blank was recognised in this utterance."""
        return self.last_speech_step is not None

    @property
    def trailing_silence(self) -> float:
        """Seconds of trailing blank steps."""
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
