"""Stateful streaming recognition: the batch front end and model, fed in pieces.

Between chunks we carry exactly three things: the samples that do not yet fill a feature
frame, the feature frames that do not yet fill a stack, and the GRU hidden state. All are
bounded in size, so memory stays constant however long the stream runs (only the text of
the current utterance grows, plus, with a beam-search decoder, its logits for word alignment;
`reset()` clears both, and `asr listen` resets at every endpoint).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from .decoding import BeamSearchDecoder, GreedyDecoder, Hypothesis, Word, align_words, words
from .features import SAMPLE_RATE, LogMel, StreamingLogMel
from .model import AcousticModel, State


class StreamingRecognizer:
    def __init__(self, model: AcousticModel, decoder: Optional[Union[GreedyDecoder, BeamSearchDecoder]] = None):
        """decoder: GreedyDecoder (default) or a BeamSearchDecoder built for this model's vocabulary."""
        self.model = model.eval()
        self.logmel = LogMel(model.config.n_mels)
        self.features = StreamingLogMel(self.logmel)
        self.decoder = decoder if decoder is not None else GreedyDecoder(model.config.vocab)
        # Beam search results carry no frames; their word times come from aligning the kept logits.
        self._keep_logits = not isinstance(self.decoder, GreedyDecoder)
        self.reset()

    def reset(self) -> None:
        """Start a new utterance: clear all carried state."""
        self.features.reset()
        self.decoder.reset()
        self._frames = torch.zeros(0, self.model.config.n_mels)
        self._state: Optional[State] = None
        self._logits: list[torch.Tensor] = []
        self.samples_seen = 0

    @torch.inference_mode()
    def accept_logits(self, chunk: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
        """Feed 16 kHz mono samples; returns the (steps, V) logits this chunk completed."""
        samples = torch.as_tensor(np.asarray(chunk, dtype=np.float32)).reshape(-1)
        self.samples_seen += samples.numel()
        frames = torch.cat([self._frames, self.features.accept(samples)])
        usable = frames.shape[0] // self.model.config.stack * self.model.config.stack
        self._frames = frames[usable:]
        if usable == 0:
            return torch.zeros(0, len(self.model.config.vocab))
        logits, _, self._state = self.model(frames[None, :usable], state=self._state)
        self.decoder.accept(logits[0])
        if self._keep_logits:
            self._logits.append(logits[0])
        return logits[0]

    def accept(self, chunk: Union[np.ndarray, torch.Tensor]) -> str:
        """Feed a chunk of any length; returns the partial transcript so far."""
        self.accept_logits(chunk)
        return self.decoder.text

    def finish(self) -> Hypothesis:
        """The final result for the audio fed since the last reset.

        Samples and frames that do not complete an output step are dropped, exactly as
        the batch path drops them, so the result equals batch transcription of the same audio.
        """
        return self.decoder.hypothesis()

    def words(self, time_offset: float = 0.0) -> list[Word]:
        if self._keep_logits:
            logits = torch.cat(self._logits) if self._logits else torch.zeros(0, len(self.model.config.vocab))
            return align_words(logits, self.decoder.hypothesis().text, self.model.config.vocab,
                               self.model.frame_shift, time_offset, delay=self.model.word_delay)
        return words(self.decoder.hypothesis(), self.model.config.vocab, self.model.frame_shift, time_offset,
                     delay=self.model.word_delay)

    @property
    def seconds_seen(self) -> float:
        return self.samples_seen / SAMPLE_RATE
