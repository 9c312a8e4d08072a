"""Audio input: decode files, downmix to mono, resample to 16 kHz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .features import SAMPLE_RATE


class AudioError(Exception):
    """A file or device that cannot be used; the message is one line naming it."""


def to_mono(data: np.ndarray) -> np.ndarray:
    """(frames, channels) or (frames,) -> (frames,) by averaging channels."""
    return data if data.ndim == 1 else data.mean(axis=1)


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    if orig_sr == target_sr:
        return waveform.astype(np.float32, copy=False)
    out = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)),
                                         orig_sr, target_sr)
    return out.numpy()


def load_audio(path: Union[str, Path], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any file libsndfile reads (wav, flac, ogg/opus, mp3) -> float32 mono at `sample_rate`."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioError(f"{path}: cannot decode audio ({reason})") from None
    if data.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return resample(to_mono(data), sr, sample_rate)
