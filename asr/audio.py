"""Audio input: decode files, downmix to mono, resample to 16 kHz.

Files are decoded in bounded blocks (`AudioReader`), so a file whose header lies about its length, or an
hour-long recording streamed through `stream_audio`, never makes us allocate more than a block at a time.
Every way a file can be unusable ends in one `AudioError` whose message is one line naming the file.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .features import SAMPLE_RATE

# Sample rates outside this range are not audio we can use (a corrupt header, most likely).
MIN_RATE, MAX_RATE = 2000, 1_000_000
# |sample| above this in a float file is corrupt data, not sound: full scale is 1.0, and the log-mel
# front end overflows float32 (NaN features) somewhere above 1e6.
MAX_ABS_SAMPLE = 1e4
BLOCK_SECONDS = 10.0
BLOCK_VALUES = 1 << 22  # at most this many samples (all channels) per block: 16 MB as float32
# torchaudio's polyphase kernel has (rate / g) x (16000 / g) taps (g = gcd): for a rate like 44101 Hz
# that is 700 M floats. Such rates are treated as the nearest multiple of 100 Hz (kernel <= 1.2 M floats,
# a time/pitch error below 0.2 % even at 25 kHz).
MAX_KERNEL = 2_000_000


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


def usable_rate(rate: int, target_sr: int = SAMPLE_RATE) -> int:
    """The rate to resample from: `rate` itself, or for an odd rate whose resampling kernel would be huge,
    the nearest multiple of 100 Hz."""
    g = math.gcd(rate, target_sr)
    if (rate // g) * (target_sr // g) <= MAX_KERNEL:
        return rate
    return max(100, round(rate / 100) * 100)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[-1].strip() if text else type(e).__name__


def check_audio_path(path: Union[str, Path]) -> Path:
    """`path` as a Path if it can be an audio file; else AudioError (missing, a folder, a FIFO or device,
    which would block or never end, or empty)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot open ({e.strerror or _one_line(e)})") from None
    if stat.S_ISDIR(mode):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise AudioError(f"{path}: not a regular file ({kind})")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file")
    return path


class AudioReader:
    """An open audio file, decoded block by block to float32 mono at the file's rate.

    Reads until the decoder has no more data (never trusting the header's length), holds one block at a
    time, and turns every decoding problem into an AudioError naming the file. Use as a context manager.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = check_audio_path(path)
        try:
            self._file = sf.SoundFile(str(self.path))
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
            raise AudioError(f"{self.path}: cannot decode audio ({_one_line(e)})") from None
        rate, channels = self._file.samplerate, self._file.channels
        if not MIN_RATE <= rate <= MAX_RATE:
            self.close()
            raise AudioError(f"{self.path}: unsupported sample rate {rate} Hz (corrupt header?)")
        if channels < 1:
            self.close()
            raise AudioError(f"{self.path}: no audio channels (corrupt header?)")
        self.channels = channels
        self.file_rate = rate
        self.samplerate = usable_rate(rate)  # the rate the samples are resampled from
        self.frames_read = 0

    @property
    def header_seconds(self) -> Optional[float]:
        """The duration the header claims (may be wrong for corrupt or truncated files), or None."""
        frames = self._file.frames
        return frames / self.file_rate if 0 < frames < 1 << 62 else None

    def blocks(self, seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
        """Mono float32 blocks of up to `seconds` each, at `samplerate`, until the data ends."""
        size = max(1, min(int(self.file_rate * seconds), BLOCK_VALUES // self.channels))
        while True:
            try:
                data = self._file.read(size, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, MemoryError, OSError) as e:
                raise AudioError(f"{self.path}: cannot decode audio ({_one_line(e)})") from None
            if data.shape[0] == 0:
                return
            self.frames_read += data.shape[0]
            mono = to_mono(data) if data.shape[1] > 1 else data[:, 0]
            self._check(mono)
            yield np.ascontiguousarray(mono, dtype=np.float32)

    def _check(self, x: np.ndarray) -> None:
        finite = np.isfinite(x)
        if not finite.all():
            raise AudioError(f"{self.path}: corrupt audio: {int(x.size - finite.sum())} NaN or infinite sample(s) "
                             f"near {self.frames_read / self.file_rate:.1f} s")
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > MAX_ABS_SAMPLE:
            raise AudioError(f"{self.path}: corrupt audio: sample value {peak:.3g} near "
                             f"{self.frames_read / self.file_rate:.1f} s (full scale is 1)")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_blocks(reader: AudioReader, blocks: list[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Whole-file blocks -> float32 mono at `sample_rate` (one resampling pass, as load_audio does)."""
    if not blocks or sum(b.size for b in blocks) == 0:
        raise AudioError(f"{reader.path}: contains no audio samples")
    data = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return resample(data, reader.samplerate, sample_rate)


def load_audio(path: Union[str, Path], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any file libsndfile reads (wav, flac, ogg/opus, mp3) -> float32 mono at `sample_rate`.

    Holds the whole file: for long recordings use `stream_audio`."""
    with AudioReader(path) as reader:
        return decode_blocks(reader, list(reader.blocks()), sample_rate)


def stream_audio(path: Union[str, Path], sample_rate: int = SAMPLE_RATE,
                 block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """The file as float32 mono blocks at `sample_rate`, resampled in the stream (`StreamingResampler`):
    memory stays bounded however long the file. The concatenated blocks equal `load_audio` (to float
    rounding). AudioError for a bad file, also part-way through."""
    with AudioReader(path) as reader:
        resampler = StreamingResampler(reader.samplerate, sample_rate)
        empty = True
        for block in reader.blocks(block_seconds):
            empty = False
            yield resampler.accept(block)
        if empty:
            raise AudioError(f"{reader.path}: contains no audio samples")
        yield resampler.flush()


def audio_duration(path: Union[str, Path]) -> Optional[float]:
    """Seconds of audio the file's header claims (for progress bars: cheap, may be wrong for a corrupt or
    truncated file), or None when the header does not say."""
    with AudioReader(path) as reader:
        return reader.header_seconds


class StreamingResampler:
    """`resample` applied to a stream: chunk by chunk, same output as resampling the whole signal.

    torchaudio resamples with a polyphase FIR: after reducing the rates by their gcd to
    `orig`/`new`, output block b (samples b*new .. b*new+new-1) is one kernel row per phase
    dotted with input samples [b*orig - width, b*orig + width + orig). The signal is padded
    with `width` zeros in front and `width + orig` zeros at the end. So we keep the front
    padding plus whatever input the next block still needs, and emit a block as soon as all
    of its input has arrived: interior output equals batch output (to float rounding).

    `flush()` ends the stream: it appends the batch end padding, emits the remaining blocks
    and truncates to the batch length ceil(len(input) * new / orig), so the concatenation of
    all `accept()` outputs plus `flush()` equals `resample()` of the concatenated input.
    Latency: a block waits for `width + orig` input samples beyond its start (~0.4 ms at
    48 kHz, ~10 ms at 44.1 kHz).
    """

    def __init__(self, orig_sr: int, target_sr: int = SAMPLE_RATE, lowpass_filter_width: int = 6,
                 rolloff: float = 0.99):
        if int(orig_sr) != orig_sr or int(target_sr) != target_sr or orig_sr <= 0 or target_sr <= 0:
            raise ValueError(f"sample rates must be positive integers, got {orig_sr} and {target_sr}")
        from torchaudio.functional.functional import _get_sinc_resample_kernel

        self.orig_sr, self.target_sr = int(orig_sr), int(target_sr)
        gcd = math.gcd(self.orig_sr, self.target_sr)
        self._orig, self._new = self.orig_sr // gcd, self.target_sr // gcd
        self.passthrough = self.orig_sr == self.target_sr
        if not self.passthrough:
            # Same call (and float32 dtype) as torchaudio.functional.resample on a float32 waveform.
            self._kernel, self._width = _get_sinc_resample_kernel(
                self.orig_sr, self.target_sr, gcd, lowpass_filter_width, rolloff, "sinc_interp_hann",
                None, torch.device("cpu"), torch.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new, unrelated stream."""
        self.samples_in = 0
        self.samples_out = 0
        self._buffer = torch.zeros(0 if self.passthrough else self._width)  # the front zero padding

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Mono float32 samples at `orig_sr` (any length, even 0) -> the output samples they complete."""
        x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32).reshape(-1))
        self.samples_in += x.numel()
        if self.passthrough:
            self.samples_out += x.numel()
            return x.numpy()
        self._buffer = torch.cat([self._buffer, x])
        return self._emit(self._buffer.numel())

    def flush(self) -> np.ndarray:
        """End of stream: the remaining output samples (batch end padding applied); then reset."""
        if self.passthrough:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        remaining = math.ceil(self._new * self.samples_in / self._orig) - self.samples_out
        self._buffer = torch.cat([self._buffer, torch.zeros(self._width + self._orig)])
        out = self._emit(self._buffer.numel())[: max(0, remaining)]
        self.reset()
        return out

    def _emit(self, available: int) -> np.ndarray:
        size = 2 * self._width + self._orig  # kernel length: the input one output block reads
        blocks = 0 if available < size else (available - size) // self._orig + 1
        if blocks == 0:
            return np.zeros(0, dtype=np.float32)
        used = self._buffer[: (blocks - 1) * self._orig + size]
        out = torch.nn.functional.conv1d(used[None, None], self._kernel, stride=self._orig)
        out = out[0].transpose(0, 1).reshape(-1)  # (phases, blocks) -> time order
        self._buffer = self._buffer[blocks * self._orig:].clone()  # what later blocks still need
        self.samples_out += out.numel()
        return out.numpy()
