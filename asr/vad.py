"""Voice-activity detection: cut a long recording into speech segments at its pauses, in the stream.

`transcribe_file` uses it for long files: the model was trained on utterances of at most ~20 s and its
GRU state drifts over minutes, so a long file is decoded as independent segments (state reset at each),
and stretches without speech are not run through the model at all.

Frame decisions come from WebRTC's VAD (PyPI `webrtcvad-wheels`: a small C extension, no model
weights) in its most aggressive mode. Chosen by measurement (docs/reliability.md): on 5-minute joined
recordings (synthetic and Common Voice clips, 0.5-2 s pauses of -60 dBFS noise) it cut all 53 pauses
between the Common Voice clips, as Silero VAD (`SileroDetector`, PyPI `silero-vad`, a neural model) did,
and 52 of the 60 between the synthetic ones (Silero: 60), for the same WER within 1 point on the synthetic
ones (45.3 vs 44.5 %, greedy), at ~1/60 of the CPU (real-time factor 0.0002-0.0003 vs 0.016-0.017; Silero
costs more than the acoustic model itself). Less aggressive WebRTC modes took the quiet pauses for speech
and merged clips into long segments (19-21 of the 60 pauses cut; WER +7.5 points).

`SpeechSegmenter` turns frame decisions into segments with hysteresis (a segment ends after
`min_silence` s without speech), pads each side by `pad` s (never overlapping its neighbours) and
splits speech longer than `max_segment` s at its longest pause. It holds only the audio of the
segment being built, so memory is bounded by `max_segment` however long the stream.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import numpy as np

from .features import SAMPLE_RATE


class Detector(Protocol):
    frame: int  # samples per decision at 16 kHz

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(n, frame) float32 frames, consecutive in the stream -> (n,) speech probabilities in [0, 1]."""

    def reset(self) -> None:
        """Start a new, unrelated stream."""


class WebRtcDetector:
    """WebRTC's GMM voice-activity detector on 30 ms frames; `mode` 0 (least) to 3 (most aggressive about
    calling frames non-speech)."""

    frame = 480  # 30 ms

    def __init__(self, mode: int = 3):
        try:
            import webrtcvad
        except ImportError as e:  # installed with asr (pyproject); a clear message if someone removed it
            raise ImportError("long-file segmentation needs webrtcvad (pip install webrtcvad-wheels)") from e
        self._vad = webrtcvad.Vad(mode)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        pcm = (np.clip(frames, -1.0, 1.0) * 32767).astype("<i2")
        return np.array([float(self._vad.is_speech(row.tobytes(), SAMPLE_RATE)) for row in pcm], dtype=np.float32)

    def reset(self) -> None:
        pass  # its adaptive noise model only improves with more of the same stream


class SileroDetector:
    """Silero VAD v6 (the TorchScript model shipped in the `silero-vad` wheel) on 32 ms frames.

    The file is loaded directly: importing the `silero_vad` package would set torch to one thread for the
    whole process. Calls run with one torch thread (it is a tiny model: more threads only add overhead).
    """

    frame = 512  # 32 ms, the size the 16 kHz model takes

    def __init__(self) -> None:
        import torch

        spec = importlib.util.find_spec("silero_vad")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("SileroDetector needs silero-vad (pip install --no-deps silero-vad)")
        path = os.path.join(list(spec.submodule_search_locations)[0], "data", "silero_vad.jit")
        self._model = torch.jit.load(path, map_location="cpu").eval()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
                return np.array([float(self._model(row, SAMPLE_RATE)) for row in x], dtype=np.float32)
        finally:
            torch.set_num_threads(threads)

    def reset(self) -> None:
        self._model.reset_states()


@dataclass
class Segment:
    start: int  # first sample, counted in 16 kHz samples from the start of the stream
    audio: np.ndarray  # float32, 16 kHz

    @property
    def start_seconds(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


class SpeechSegmenter:
    """16 kHz samples in (any chunking), speech `Segment`s out, in order, as soon as each one ends.

    threshold / neg_threshold: a frame with probability >= threshold starts speech; inside speech, only
    frames below neg_threshold count as pause (hysteresis, as Silero's get_speech_timestamps).
    """

    def __init__(self, detector: Optional[Detector] = None, *, min_silence: float = 0.5, pad: float = 0.25,
                 max_segment: float = 20.0, min_speech: float = 0.2, threshold: float = 0.5,
                 neg_threshold: Optional[float] = None):
        if not 0 <= pad <= min_silence:
            raise ValueError("vad: need 0 <= pad <= min_silence")
        self.detector = detector if detector is not None else WebRtcDetector()
        f = self.detector.frame
        frames = lambda seconds: max(1, round(seconds * SAMPLE_RATE / f))  # noqa: E731
        self.min_silence, self.pad = frames(min_silence), round(pad * SAMPLE_RATE / f)
        self.max_frames = max(frames(max_segment), 2 * self.pad + 2)
        self.min_speech = round(min_speech * SAMPLE_RATE / f)
        self.threshold = threshold
        self.neg_threshold = threshold - 0.15 if neg_threshold is None else neg_threshold
        self.reset()

    def reset(self) -> None:
        self.detector.reset()
        self._rest = np.zeros(0, np.float32)  # samples that do not fill a frame yet
        self._frames: list[np.ndarray] = []  # buffered frames, the first being frame number self._first
        self._probs: list[float] = []
        self._first = 0
        self._next = 0  # number of the next frame to arrive
        self._start: Optional[int] = None  # frame where the current segment starts (its pad included)
        self._last_end = 0  # frame where the previous segment ended: segments never overlap
        self._silence = 0  # consecutive pause frames at the end of the current segment
        self._speech = 0  # speech frames in the current segment

    def accept(self, samples: np.ndarray) -> list[Segment]:
        samples = np.concatenate([self._rest, np.asarray(samples, dtype=np.float32).reshape(-1)])
        f = self.detector.frame
        n = samples.size // f
        self._rest = samples[n * f:].copy()
        if n == 0:
            return []
        frames = samples[: n * f].reshape(n, f)
        out: list[Segment] = []
        for frame, p in zip(frames, self.detector(frames)):
            segment = self._step(frame, float(p))
            if segment is not None:
                out.append(segment)
        return out

    def flush(self) -> list[Segment]:
        """End of stream: the segment in progress (with the samples that do not fill a frame); then reset."""
        out = []
        if self._start is not None and self._speech >= self.min_speech:
            segment = self._cut(self._next)
            segment.audio = np.concatenate([segment.audio, self._rest])
            out.append(segment)
        self.reset()
        return out

    def _step(self, frame: np.ndarray, p: float) -> Optional[Segment]:
        i = self._next
        self._next += 1
        self._frames.append(frame)
        self._probs.append(p)
        if self._start is None:
            if p >= self.threshold:
                self._start = max(i - self.pad, self._last_end, self._first)
                self._silence, self._speech = 0, 1
            else:  # keep only what may become the next segment's front padding
                self._drop_before(max(i + 1 - self.pad, self._last_end))
            return None
        if p < self.neg_threshold:
            self._silence += 1
        else:
            self._silence = 0
            self._speech += 1
        if self._silence >= self.min_silence:
            end = min(i + 1 - self._silence + self.pad, i + 1)
            speech = self._speech
            segment = self._cut(end)
            self._start = None
            return segment if speech >= self.min_speech else None
        if i + 1 - self._start >= self.max_frames:
            return self._cut(self._split_point(i + 1), keep_open=True)
        return None

    def _split_point(self, end: int) -> int:
        """Where to split speech that reached max_segment: the middle of the longest pause (frames below
        threshold) in its second half, else its least speech-like frame there."""
        lo = self._start + (end - self._start) // 2
        probs = np.asarray(self._probs[lo - self._first: end - self._first])
        quiet = probs < self.threshold
        best, best_len, run_start = None, 0, None
        for k, q in enumerate(np.append(quiet, False)):
            if q and run_start is None:
                run_start = k
            elif not q and run_start is not None:
                if k - run_start > best_len:
                    best, best_len = (run_start + k) // 2, k - run_start
                run_start = None
        return lo + (best if best is not None else int(np.argmin(probs)))

    def _cut(self, end: int, keep_open: bool = False) -> Segment:
        start = self._start
        audio = np.concatenate(self._frames[start - self._first: end - self._first]) if end > start \
            else np.zeros(0, np.float32)
        self._last_end = end
        self._drop_before(end)
        if keep_open:  # speech goes on: the next segment starts right here
            self._start, self._speech = end, sum(p >= self.neg_threshold for p in self._probs)
        return Segment(start * self.detector.frame, audio)

    def _drop_before(self, frame: int) -> None:
        k = frame - self._first
        if k > 0:
            del self._frames[:k], self._probs[:k]
            self._first = frame


def segment_all(audio: np.ndarray, segmenter: Optional[SpeechSegmenter] = None,
                chunk: int = SAMPLE_RATE * 10) -> list[Segment]:
    """All segments of a whole 16 kHz recording (tests, experiments)."""
    segmenter = segmenter or SpeechSegmenter()
    out: list[Segment] = []
    for i in range(0, len(audio), chunk):
        out += segmenter.accept(audio[i:i + chunk])
    return out + segmenter.flush()


def speech_seconds(segments: Sequence[Segment]) -> float:
    return sum(len(s.audio) for s in segments) / SAMPLE_RATE
