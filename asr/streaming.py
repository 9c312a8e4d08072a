"""Stateful streaming recognition: the batch front end and model, fed in pieces.

Between chunks we carry exactly three things: the samples that do not yet fill a feature
frame, the feature frames that do not yet fill a stack (plus, for a model with look-ahead, the
last `lookahead` stacks, whose future has not arrived yet), and the GRU hidden state. All are
bounded in size, so memory stays constant however long the stream runs (only the text of
the current utterance grows, plus, with a beam-search decoder, its logits for word alignment;
`reset()` clears both, and `asr listen` resets at every endpoint).

`accept_batch` feeds many recognizers that share one model with one log-mel call and one model call
(`asr serve`); each keeps its own carried state, and the results equal feeding each alone.
`LiveTranscriber` wraps a recognizer for live input at any sample rate: resampling, endpointing and
session times; `asr listen`, `asr serve` and the soak benchmark all run through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .audio import StreamingResampler, to_mono
from .decoding import BeamSearchDecoder, GreedyDecoder, Hypothesis, Word, align_words, words
from .endpoint import EndpointConfig, Endpointer
from .features import HOP, SAMPLE_RATE, WINDOW, LogMel, StreamingLogMel, num_frames
from .model import AcousticModel, State


class WindowedLogMel(StreamingLogMel):
    """`StreamingLogMel` that can also hand out the sample windows of the frames a chunk completes instead
    of computing them, so `accept_batch` computes many streams' frames in one `LogMel` call."""

    def take_windows(self, samples: torch.Tensor) -> torch.Tensor:
        """(frames, WINDOW) samples: row i gives, through `LogMel`, the frame `accept` would have returned."""
        buffer = torch.cat([self._buffer, samples.reshape(-1).to(torch.float32)])
        n = num_frames(buffer.numel())
        if n == 0:
            self._buffer = buffer
            return buffer.new_zeros(0, WINDOW)
        self._buffer = buffer[n * HOP:].clone()  # as in accept: at most WINDOW - 1 samples are kept
        return buffer.unfold(0, WINDOW, HOP)[:n]


class StreamingRecognizer:
    def __init__(self, model: AcousticModel, decoder: Optional[Union[GreedyDecoder, BeamSearchDecoder]] = None):
        """decoder: GreedyDecoder (default) or a BeamSearchDecoder built for this model's vocabulary."""
        self.model = model.eval()
        self.logmel = LogMel(model.config.n_mels)
        self.features = WindowedLogMel(self.logmel)
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
        frames = self.take_frames(chunk)
        if frames is None:
            return torch.zeros(0, len(self.model.config.vocab))
        return self._emit(frames[None], final=False)

    @torch.inference_mode()
    def take_frames(self, chunk: Union[np.ndarray, torch.Tensor]) -> Optional[torch.Tensor]:
        """The first half of `accept_logits`: feed samples, return the (T, n_mels) frames the model must
        run now (T = (ready steps + lookahead) * stack), or None when no step is complete yet.

        Pass the model's output for them to `accept_output`; `accept_batch` does both for many streams.
        """
        return self._ready_frames(self.features.accept(self._samples(chunk)))

    def _samples(self, chunk: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
        samples = torch.as_tensor(np.asarray(chunk, dtype=np.float32)).reshape(-1)
        self.samples_seen += samples.numel()
        return samples

    def _ready_frames(self, features: torch.Tensor) -> Optional[torch.Tensor]:
        frames = torch.cat([self._frames, features])
        s, k = self.model.config.stack, self.model.config.lookahead
        ready = frames.shape[0] // s - k  # steps whose look-ahead is complete
        if ready <= 0:
            self._frames = frames
            return None
        self._frames = frames[ready * s:]
        return frames[:(ready + k) * s]

    def accept_output(self, logits: torch.Tensor, state: State) -> None:
        """The second half: (steps, V) logits of the frames `take_frames` gave, and the GRU state after them."""
        self._state = state
        self.decoder.accept(logits)
        if self._keep_logits:
            self._logits.append(logits)

    @property
    def state(self) -> Optional[State]:
        """The GRU state carried to the next chunk (None at the start of an utterance)."""
        return self._state

    def _emit(self, frames: torch.Tensor, final: bool) -> torch.Tensor:
        logits, _, state = self.model(frames, state=self._state, final=final)
        self.accept_output(logits[0], state)
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


@torch.inference_mode()
def accept_batch(recognizers: Sequence[StreamingRecognizer],
                 chunks: Sequence[Union[np.ndarray, torch.Tensor]]) -> list[torch.Tensor]:
    """`[r.accept_logits(c) for r, c in zip(recognizers, chunks)]` with one model call for all of them.

    The recognizers must share one model. Each keeps its own sample remainder, frames and GRU state;
    the frames ready in each are padded into one batch and run with the states stacked along the batch
    dimension (GRU state tensors are (layers, batch, hidden)). `lengths` + exact_final_state give each
    stream the state after its own last step, so results equal running each stream alone (to float
    rounding; tested to 1e-5). N streams then cost one GEMM per layer and step instead of N small ones.
    """
    if len(recognizers) != len(chunks):
        raise ValueError(f"{len(recognizers)} recognizers but {len(chunks)} chunks")
    if not recognizers:
        return []
    model = recognizers[0].model
    if any(r.model is not model for r in recognizers):
        raise ValueError("accept_batch needs recognizers that share one model")
    vocab = len(model.config.vocab)
    out = [torch.zeros(0, vocab) for _ in recognizers]
    # The front end batched too: every stream's new frame windows through one LogMel call.
    windows = [r.features.take_windows(r._samples(c)) for r, c in zip(recognizers, chunks)]
    counts = [w.shape[0] for w in windows]
    feats = recognizers[0].logmel(torch.cat(windows)).reshape(-1, model.config.n_mels) if sum(counts) \
        else torch.zeros(0, model.config.n_mels)
    ready = [(i, f) for i, f in enumerate(r._ready_frames(x) for r, x in zip(recognizers, feats.split(counts)))
             if f is not None]
    if not ready:
        return out
    s, k = model.config.stack, model.config.lookahead
    frames = torch.nn.utils.rnn.pad_sequence([f for _, f in ready], batch_first=True)
    # Lengths exclude the look-ahead stacks: those steps get their logits (and move the state) next time.
    lengths = torch.tensor([f.shape[0] - k * s for _, f in ready])
    states = [recognizers[i].state for i, _ in ready]
    initial = None if all(st is None for st in states) else _stack_states(
        [st if st is not None else model._initial_state(1, frames) for st in states])
    logits, steps, state = model(frames, lengths=lengths, state=initial, exact_final_state=True, final=False)
    for row, (i, _) in enumerate(ready):
        n = int(steps[row])
        out[i] = logits[row, :n].clone()  # not a view: a stream keeps these (beam search aligns words on them)
        recognizers[i].accept_output(out[i], _state_row(state, row))
    return out


def _stack_states(states: Sequence[State]) -> State:
    if isinstance(states[0], tuple):  # LSTM: (h, c)
        return tuple(torch.cat([st[j] for st in states], dim=1) for j in range(len(states[0])))
    return torch.cat(list(states), dim=1)


def _state_row(state: State, row: int) -> State:
    # A copy, so a stream does not keep the whole batch's state tensor alive.
    if isinstance(state, tuple):
        return tuple(x[:, row:row + 1].clone() for x in state)
    return state[:, row:row + 1].clone()


# ---------------------------------------------------------------- live sessions: resampling + endpointing

DIGITAL_SILENCE = 1e-4  # -80 dBFS: below any real microphone's noise floor


@dataclass
class FinalResult:
    text: str
    start: float  # session seconds: first word's start
    end: float  # last word's end
    words: list[Word] = field(default_factory=list)
    reason: str = ""  # which endpoint rule ended it, or "end" when the stream stopped

    def to_json(self) -> str:
        words = [{"word": w.text, "start": w.start, "end": w.end, "confidence": w.confidence} for w in self.words]
        return json.dumps({"text": self.text, "start": self.start, "end": self.end, "words": words})


class LiveTranscriber:
    """Capture-format blocks in, partial text and final results out; no audio I/O, so it is testable.

    Timestamps are session-absolute: each utterance's word times are offset by the 16 kHz
    samples fed to the recognizer before its last reset.
    """

    def __init__(self, model: AcousticModel, input_rate: int, endpoint: Optional[EndpointConfig] = None,
                 skip_silence_below: float = DIGITAL_SILENCE,
                 decoder: Optional[Union[GreedyDecoder, BeamSearchDecoder]] = None):
        self.skip_silence_below = skip_silence_below
        self.skipped = 0.0  # seconds of digital silence not fed to the model
        self.recognizer = StreamingRecognizer(model, decoder)
        self.resampler = StreamingResampler(input_rate, SAMPLE_RATE)
        self.endpointer = Endpointer(endpoint or EndpointConfig(), model.frame_shift)
        self.offset = 0.0  # session time at which the current utterance started
        self.utterances = 0

    def accept(self, block: np.ndarray) -> tuple[str, list[FinalResult]]:
        """block: (frames,) or (frames, channels) float32 at `input_rate`. Returns (partial, finals)."""
        samples = self.resampler.accept(to_mono(np.asarray(block, dtype=np.float32)))
        return self._feed(samples)

    def finish(self) -> list[FinalResult]:
        """End of the stream: resampler tail in, the last partial becomes a final (if any text)."""
        _, finals = self._feed(self.resampler.flush())
        result = self._cut("end")
        return finals + ([result] if result else [])

    def _feed(self, samples: np.ndarray) -> tuple[str, list[FinalResult]]:
        finals: list[FinalResult] = []
        if self.skip_silence_below > 0 and self.recognizer.samples_seen == 0:
            # Between utterances, digital silence (muted or virtual inputs) is not fed to the model:
            # it saves CPU and each utterance then starts at its first sound. Real microphones
            # have a noise floor far above this level, so for them this never triggers.
            loud = np.flatnonzero(np.abs(samples) > self.skip_silence_below)
            skip = samples.size if loud.size == 0 else int(loud[0])
            self.offset += skip / SAMPLE_RATE
            self.skipped += skip / SAMPLE_RATE
            samples = samples[skip:]
        self.endpointer.accept(self.recognizer.accept_logits(samples))
        reason = self.endpointer.endpoint()
        if reason is not None:
            result = self._cut(reason)
            if result:
                finals.append(result)
        return self.recognizer.decoder.text, finals

    def _cut(self, reason: str) -> Optional[FinalResult]:
        """Close the current utterance and start the next; None when nothing was recognised."""
        text = self.recognizer.finish().text
        words = self.recognizer.words(self.offset)
        self.offset += self.recognizer.seconds_seen
        self.recognizer.reset()
        self.endpointer.reset()
        if not text:
            return None
        self.utterances += 1
        return FinalResult(text, words[0].start, words[-1].end, words, reason)
