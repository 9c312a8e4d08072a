"""Stateful streaming recognition: the batch front end and model, fed in pieces.

Between chunks we carry exactly three things: the samples that do not yet fill a feature
frame, the feature frames that do not yet fill a stack (plus, for a model with look-ahead, the
last `lookahead` stacks, whose future has not arrived yet), and the GRU hidden state. All are
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
        s, k = self.model.config.stack, self.model.config.lookahead
        ready = frames.shape[0] // s - k  # steps whose look-ahead is complete
        if ready <= 0:
            self._frames = frames
            return torch.zeros(0, len(self.model.config.vocab))
        self._frames = frames[ready * s:]
        return self._emit(frames[None, :(ready + k) * s], final=False)

    def _emit(self, frames: torch.Tensor, final: bool) -> torch.Tensor:
        logits, _, self._state = self.model(frames, state=self._state, final=final)
        self.decoder.accept(logits[0])
        if self._keep_logits:
            self._logits.append(logits[0])
        return logits[0]

    def flush_logits(self) -> torch.Tensor:
        """End of the utterance: the steps still waiting for look-ahead see zeros past the end, as
        in the batch pass. Returns their logits (none for a model without look-ahead)."""
        s = self.model.config.stack
        if self.model.config.lookahead == 0:  # nothing waits; keep the partial stack as before
            return torch.zeros(0, len(self.model.config.vocab))
        whole, self._frames = self._frames[: self._frames.shape[0] // s * s], self._frames[:0]
        if whole.shape[0] == 0:
            return torch.zeros(0, len(self.model.config.vocab))
        with torch.inference_mode():
            return self._emit(whole[None], final=True)

    def accept(self, chunk: Union[np.ndarray, torch.Tensor]) -> str:
        """Feed a chunk of any length; returns the partial transcript so far."""
        self.accept_logits(chunk)
        return self.decoder.text

    def finish(self) -> Hypothesis:
        """The final result for the audio fed since the last reset.

        Samples and frames that do not complete an output step are dropped, exactly as
        the batch path drops them, so the result equals batch transcription of the same audio.
        """
        self.flush_logits()
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
