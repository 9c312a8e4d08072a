"""Batch transcription of waveforms and files (the reference the streaming path must equal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .decoding import BeamSearchDecoder, Word, align_words, greedy_decode, words
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


def transcribe(model: AcousticModel, waveform: np.ndarray, decoder: Optional[BeamSearchDecoder] = None,
               align: bool = False) -> Transcript:
    """Greedy by default; with `decoder`, beam search. Word times come from the greedy emission steps,
    or from a forced alignment of the result when `align` is set or beam search is used."""
    logits = batch_logits(model, waveform)
    return transcript_from_logits(model, logits, len(waveform) / 16000, decoder, align)


def transcript_from_logits(model: AcousticModel, logits: torch.Tensor, duration: float,
                           decoder: Optional[BeamSearchDecoder] = None, align: bool = False) -> Transcript:
    vocab = model.config.vocab
    if decoder is None:
        hyp = greedy_decode(logits, vocab)
        if not align:
            return Transcript(hyp.text, duration, words(hyp, vocab, model.frame_shift, delay=model.word_delay))
    else:
        hyp = decoder.decode(logits)
    return Transcript(hyp.text, duration, align_words(logits, hyp.text, vocab, model.frame_shift,
                                                      delay=model.word_delay))


def make_decoder(vocab: Sequence[str], lm: Optional[str] = None, beam_size: int = 0,
                 lm_weight: Optional[float] = None, word_score: Optional[float] = None,
                 hotwords: Optional[dict[str, float]] = None,
                 silence_score: Optional[float] = None) -> Optional[BeamSearchDecoder]:
    """None (greedy) unless an LM or a beam size is given. `lm`: an ARPA file, or a KenLM binary with its word
    list beside it (LM.bin + LM.words.txt, from `python -m asr.training.kenlm build`). LM weight, word score
    and silence score (and the beam) default to the values `asr lm tune` saved next to the LM (LM.json)."""
    if not lm and not beam_size:
        if hotwords:
            raise ValueError("hotwords need a word n-gram LM (--lm)")
        return None
    settings: dict = {}
    if lm:
        from .lm import load_settings

        if not Path(lm).is_file():
            raise ValueError(f"{lm}: language model file not found")
        settings = load_settings(lm)
    return BeamSearchDecoder(
        vocab, lm, beam_size=beam_size or settings.get("beam_size") or None, hotwords=hotwords,
        lm_weight=lm_weight if lm_weight is not None else settings.get("lm_weight", 0.5),
        word_score=word_score if word_score is not None else settings.get("word_score", 0.0),
        silence_score=silence_score if silence_score is not None else settings.get("silence_score", 0.0))


def transcribe_file(model: AcousticModel, path: Union[str, Path], decoder: Optional[BeamSearchDecoder] = None,
                    align: bool = False, stream_chunk_ms: float = 0) -> Transcript:
    """One audio file (any format and rate load_audio reads) -> its transcript; AudioError names a bad file.

    `stream_chunk_ms` runs it through the streaming recognizer in chunks of that size instead of one pass
    (the same result: the streaming path is the same computation in pieces)."""
    from .audio import load_audio
    from .features import SAMPLE_RATE
    from .streaming import StreamingRecognizer

    audio = load_audio(path)
    duration = len(audio) / SAMPLE_RATE
    if not stream_chunk_ms:
        return transcript_from_logits(model, batch_logits(model, audio), duration, decoder, align)
    recognizer = StreamingRecognizer(model, decoder)
    step = max(1, int(SAMPLE_RATE * stream_chunk_ms / 1000))
    pieces = [recognizer.accept_logits(audio[i:i + step]) for i in range(0, len(audio), step)]
    pieces.append(recognizer.flush_logits())  # steps that waited for look-ahead (if the model has any)
    text = recognizer.finish().text
    found = align_words(torch.cat(pieces), text, model.config.vocab, model.frame_shift,
                        delay=model.word_delay) if align else []
    return Transcript(text, duration, found)
