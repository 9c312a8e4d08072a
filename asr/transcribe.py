"""Batch transcription of whole waveforms (the reference the streaming path must equal)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .decoding import Word, greedy_decode, words
from .features import LogMel
from .model import AcousticModel


@dataclass
class Transcript:
    text: str
    duration: float
    words: list[Word] = field(default_factory=list)


@torch.inference_mode()
def batch_logits(model: AcousticModel, waveform: np.ndarray, logmel: LogMel | None = None) -> torch.Tensor:
    """(steps, V) logits for one 16 kHz mono waveform, computed in one pass."""
    logmel = logmel or LogMel(model.config.n_mels)
    feats = logmel(torch.as_tensor(np.asarray(waveform, dtype=np.float32)))
    logits, _, _ = model.eval()(feats[None])
    return logits[0]


def transcribe(model: AcousticModel, waveform: np.ndarray) -> Transcript:
    hyp = greedy_decode(batch_logits(model, waveform), model.config.vocab)
    return Transcript(hyp.text, len(waveform) / 16000, words(hyp, model.config.vocab, model.frame_shift))
