"""Log-mel front end: one implementation used whole (batch) or in pieces (streaming).

Frames are not centred (no padding at either end), so frame i depends only on samples
[i * HOP, i * HOP + WINDOW). That is what lets the streaming form produce exactly the
frames of the batch form: it simply waits until a frame's samples have all arrived.
"""

from __future__ import annotations

import torch
import torchaudio

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
LOG_FLOOR = 1e-10


def num_frames(num_samples: int) -> int:
    """Frames the batch front end yields for `num_samples` samples."""
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // HOP


class LogMel(torch.nn.Module):
    """Waveform (..., samples) at 16 kHz -> log-mel features (..., frames, N_MELS)."""

    def __init__(self, n_mels: int = N_MELS):
        super().__init__()
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=WINDOW, win_length=WINDOW, hop_length=HOP,
            n_mels=n_mels, center=False, power=2.0,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.shape[-1] < WINDOW:
            return waveform.new_zeros(*waveform.shape[:-1], 0, self.n_mels)
        mel = self.mel(waveform)  # (..., n_mels, frames)
        return torch.log(mel.clamp(min=LOG_FLOOR)).transpose(-1, -2)


def batch_lengths(sample_lengths: torch.Tensor) -> torch.Tensor:
    """Valid feature frames for each padded waveform of a batch."""
    return torch.clamp(torch.div(sample_lengths - WINDOW, HOP, rounding_mode="floor") + 1, min=0)


class StreamingLogMel:
    """Feeds arbitrary chunks (even empty or 1 sample) through `LogMel`, keeping the sample remainder."""

    def __init__(self, logmel: LogMel):
        self.logmel = logmel
        self.reset()

    def reset(self) -> None:
        self._buffer = torch.zeros(0)

    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        """Returns the (frames, n_mels) features completed by this chunk."""
        buffer = torch.cat([self._buffer, samples.reshape(-1).to(torch.float32)])
        n = num_frames(buffer.numel())
        if n == 0:
            self._buffer = buffer
            return buffer.new_zeros(0, self.logmel.n_mels)
        with torch.no_grad():
            feats = self.logmel(buffer[: (n - 1) * HOP + WINDOW])
        # Keep only what later frames still need: at most WINDOW - 1 samples.
        self._buffer = buffer[n * HOP:].clone()
        return feats


class FeatureNormalizer(torch.nn.Module):
    """Per-feature mean/variance normalization with statistics fixed at training time."""

    def __init__(self, n_mels: int = N_MELS):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.mean) / self.std

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-3))


class RunningStats:
    """Accumulates feature mean/std over many utterances (float64, so long corpora don't drift)."""

    def __init__(self, n_mels: int = N_MELS):
        self.count = 0
        self.total = torch.zeros(n_mels, dtype=torch.float64)
        self.total_sq = torch.zeros(n_mels, dtype=torch.float64)

    def add(self, feats: torch.Tensor) -> None:
        f = feats.reshape(-1, feats.shape[-1]).to(torch.float64)
        self.count += f.shape[0]
        self.total += f.sum(0)
        self.total_sq += (f * f).sum(0)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count == 0:
            raise ValueError("no feature frames to compute statistics from")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean * mean).clamp(min=0)
        return mean.float(), var.sqrt().float()
