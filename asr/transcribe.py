"""Batch transcription of waveforms and files (the reference the streaming path must equal)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .decoding import BeamSearchDecoder, Word, align_words, greedy_decode, words
from .features import LogMel
from .model import AcousticModel

if TYPE_CHECKING:
    from .vad import SpeechSegmenter


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
                           decoder: Optional[BeamSearchDecoder] = None, align: bool = False,
                           time_offset: float = 0.0) -> Transcript:
    """`time_offset`: seconds added to every word time (where these logits start in a longer recording)."""
    vocab = model.config.vocab
    if decoder is None:
        hyp = greedy_decode(logits, vocab)
        if not align:
            return Transcript(hyp.text, duration, words(hyp, vocab, model.frame_shift, time_offset,
                                                        delay=model.word_delay))
    else:
        hyp = decoder.decode(logits)
    return Transcript(hyp.text, duration, align_words(logits, hyp.text, vocab, model.frame_shift, time_offset,
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


# Files up to this long run as one pass over the whole file, exactly as before long-file support (so
# streaming equals batch on them); longer ones are cut at pauses (asr.vad) and decoded segment by segment.
# The model was trained on utterances of up to ~20 s; 30 s leaves room for a long utterance plus its pauses.
LONG_FILE_SECONDS = 30.0
# Segments decoded together in one padded model call, up to this much audio (bounds memory and padding).
BATCH_SECONDS = 60.0


def transcribe_file(model: AcousticModel, path: Union[str, Path], decoder: Optional[BeamSearchDecoder] = None,
                    align: bool = False, stream_chunk_ms: float = 0, *,
                    progress: Optional[Callable[[float], None]] = None,
                    long_file_seconds: float = LONG_FILE_SECONDS,
                    segmenter: Optional["SpeechSegmenter"] = None) -> Transcript:
    """One audio file (any format and rate load_audio reads) -> its transcript; AudioError names a bad file.

    A file up to `long_file_seconds` is one model pass over all of it. A longer one is read in blocks and
    resampled in the stream, cut into speech segments at its pauses (asr.vad), the GRU state starting fresh
    in each; segments are decoded in batches (one padded model call each) and word times are file times.
    Memory stays bounded however long the file; stretches without speech are skipped.
    `stream_chunk_ms` runs the audio (each segment, for a long file) through the streaming recognizer in
    chunks of that size instead of one pass: the same result, since the streaming path is the same
    computation in pieces. `progress(seconds)` is called as the file is processed, with the seconds of
    audio done so far (non-decreasing; last call: the whole duration); `asr.audio.audio_duration(path)`
    gives the total for a progress bar. `segmenter`: how long files are cut (default: asr.vad's defaults).
    """
    from .audio import AudioReader, StreamingResampler, decode_blocks
    from .features import SAMPLE_RATE

    with AudioReader(path) as reader:
        blocks = reader.blocks()
        head: list[np.ndarray] = []
        limit, size = long_file_seconds * reader.samplerate, 0
        for block in blocks:  # read up to the threshold: short files keep the one-pass path
            head.append(block)
            size += block.size
            if size > limit:
                break
        else:
            audio = decode_blocks(reader, head)
            result = _transcribe_audio(model, audio, decoder, align, stream_chunk_ms)
            if progress is not None:
                progress(result.duration)
            return result
        resampler = StreamingResampler(reader.samplerate, SAMPLE_RATE)
        stream = chain((resampler.accept(b) for b in chain(head, blocks)), _lazy(resampler.flush))
        return _transcribe_long(model, stream, decoder, align, stream_chunk_ms, progress, segmenter)


def _lazy(fn: Callable[[], np.ndarray]) -> Iterator[np.ndarray]:
    yield fn()


def _transcribe_audio(model: AcousticModel, audio: np.ndarray, decoder: Optional[BeamSearchDecoder], align: bool,
                      stream_chunk_ms: float, time_offset: float = 0.0) -> Transcript:
    """One utterance-sized waveform: one pass, or streamed in chunks."""
    from .features import SAMPLE_RATE
    from .streaming import StreamingRecognizer

    duration = len(audio) / SAMPLE_RATE
    if not stream_chunk_ms:
        return transcript_from_logits(model, batch_logits(model, audio), duration, decoder, align, time_offset)
    recognizer = StreamingRecognizer(model, decoder)
    step = max(1, int(SAMPLE_RATE * stream_chunk_ms / 1000))
    pieces = [recognizer.accept_logits(audio[i:i + step]) for i in range(0, len(audio), step)]
    pieces.append(recognizer.flush_logits())  # steps that waited for look-ahead (if the model has any)
    text = recognizer.finish().text
    found = align_words(torch.cat(pieces), text, model.config.vocab, model.frame_shift, time_offset,
                        delay=model.word_delay) if align else []
    return Transcript(text, duration, found)


@torch.inference_mode()
def segments_logits(model: AcousticModel, segments: Sequence[np.ndarray],
                    logmel: LogMel | None = None) -> list[torch.Tensor]:
    """[(steps_i, V) logits] for independent 16 kHz waveforms, in one padded model call.

    Each equals `batch_logits` of that waveform alone (to float rounding): the GRU is causal, so padding
    after a segment never reaches its valid steps, and look-ahead sees zeros past each one's end."""
    if not segments:
        return []
    logmel = logmel or LogMel(model.config.n_mels)
    feats = [logmel(torch.as_tensor(np.asarray(s, dtype=np.float32))) for s in segments]
    frames = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lengths = torch.tensor([f.shape[0] for f in feats])
    logits, steps, _ = model.eval()(frames, lengths=lengths, exact_final_state=False)
    return [logits[i, :int(n)] for i, n in enumerate(steps)]


def _transcribe_long(model: AcousticModel, stream: Iterable[np.ndarray], decoder: Optional[BeamSearchDecoder],
                     align: bool, stream_chunk_ms: float,
                     progress: Optional[Callable[[float], None]],
                     segmenter: Optional["SpeechSegmenter"] = None) -> Transcript:
    from .features import SAMPLE_RATE
    from .vad import SpeechSegmenter

    segmenter = segmenter or SpeechSegmenter()
    segmenter.reset()
    logmel = LogMel(model.config.n_mels)
    texts: list[str] = []
    found: list[Word] = []
    pending: list = []  # segments waiting for their batch
    state = {"read": 0, "done": 0.0}

    def report() -> None:
        if progress is None:
            return
        done = pending[0].start if pending else state["read"]
        state["done"] = max(state["done"], done / SAMPLE_RATE)
        progress(state["done"])

    def decode_pending() -> None:
        if stream_chunk_ms:
            results = [_transcribe_audio(model, s.audio, decoder, align, stream_chunk_ms, s.start_seconds)
                       for s in pending]
        else:
            logits = segments_logits(model, [s.audio for s in pending], logmel)
            results = [transcript_from_logits(model, x, len(s.audio) / SAMPLE_RATE, decoder, align, s.start_seconds)
                       for s, x in zip(pending, logits)]
        for r in results:
            if r.text:
                texts.append(r.text)
                found.extend(r.words)
        pending.clear()

    def add(segments: list) -> None:
        pending.extend(segments)
        if sum(len(s.audio) for s in pending) >= BATCH_SECONDS * SAMPLE_RATE:
            decode_pending()

    for block in stream:
        state["read"] += block.size
        add(segmenter.accept(block))
        report()
    add(segmenter.flush())
    decode_pending()
    duration = state["read"] / SAMPLE_RATE
    if progress is not None:
        progress(duration)
    return Transcript(" ".join(texts), duration, found)
