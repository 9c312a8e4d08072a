"""Training-time augmentation: waveform (speed, rooms, noise, channel, codec, gain) and log-mel
(frequency warp, SpecAugment).

Every random choice comes from a generator seeded by (seed, epoch, item), so a resumed run sees the
same augmented audio as an uninterrupted one. The inference path never imports this module.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import soundfile as sf
import torch
import torchaudio

if TYPE_CHECKING:
    from .train import TrainConfig

log = logging.getLogger("asr")

SAMPLE_RATE = 16000
CODECS = ("telephone", "gsm", "opus", "mp3")


class WaveformAugment:
    """Speed perturbation, room reverberation, additive noise, random channel, lossy codec and gain,
    in the order a recording meets them (a voice in a room with noise, through a microphone, a codec)."""

    def __init__(self, cfg: "TrainConfig"):
        self.cfg = cfg
        self.epoch = 0
        self._noises: Optional[list[np.ndarray]] = None  # loaded lazily: once per loader worker
        self._rirs: Optional[list[np.ndarray]] = None

    def noises(self) -> list[np.ndarray]:
        if self._noises is None:
            self._noises = load_noises(self.cfg.noise) if self.cfg.noise else []
        return self._noises

    def rirs(self) -> list[np.ndarray]:
        if self._rirs is None:
            self._rirs = load_rir_bank(self.cfg.rir_bank) if self.cfg.rir_bank else []
        return self._rirs

    def __call__(self, wav: np.ndarray, index: int) -> np.ndarray:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, self.epoch, index])
        speed = float(rng.choice(cfg.speeds)) if cfg.speeds else 1.0
        x = torch.from_numpy(wav)
        if speed != 1.0:
            # Resampling by 1/speed and playing back at 16 kHz changes tempo and pitch (Kaldi-style).
            x = torchaudio.functional.resample(x, int(round(SAMPLE_RATE * speed)), SAMPLE_RATE)
        if x.numel() == 0:
            return x.numpy()
        if rng.random() < cfg.reverb_prob:
            rirs = self.rirs()
            x = apply_rir(x, rirs[int(rng.integers(len(rirs)))]) if rirs else random_reverb(x, rng)
        if rng.random() < cfg.noise_prob:
            noises = self.noises()
            if noises and rng.random() < cfg.real_noise_fraction:
                noise = noise_segment(noises[int(rng.integers(len(noises)))], x.numel(), rng)
            else:
                noise = synthetic_noise(x.numel(), rng)
            x = mix_at_snr(x, noise, float(rng.uniform(*cfg.snr_db)))
        if rng.random() < cfg.eq_prob:
            x = random_channel(x, rng)
        if rng.random() < cfg.codec_prob:
            x = random_codec(x, rng)
        x = x * (10 ** (rng.uniform(*cfg.gain_db) / 20))
        return x.clamp(-1, 1).numpy()


# ---------------------------------------------------------------- noise


def load_noises(sources: Sequence[str]) -> list[np.ndarray]:
    """Noise recordings from files and folders (any format load_audio reads), as 16 kHz mono."""
    from ..audio import AudioError, load_audio

    files: list[Path] = []
    for source in sources:
        p = Path(source)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in (".wav", ".flac", ".ogg", ".opus", ".mp3"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such noise file or folder")
    out = []
    for f in files:
        try:
            audio = load_audio(f)
        except AudioError as e:
            log.warning(f"{e}; skipped")
            continue
        if audio.size >= SAMPLE_RATE // 10 and float(np.abs(audio).max()) > 0:
            out.append(audio)
    if not out:
        raise ValueError(f"no usable noise recordings in {', '.join(map(str, sources))}")
    return out


def noise_segment(noise: np.ndarray, n: int, rng: np.random.Generator) -> torch.Tensor:
    """A random stretch of `n` samples of a recording (looped when the recording is shorter)."""
    if noise.size < n:
        noise = np.tile(noise, n // noise.size + 1)
    start = int(rng.integers(noise.size - n + 1))
    return torch.from_numpy(np.ascontiguousarray(noise[start:start + n], dtype=np.float32))


def synthetic_noise(n: int, rng: np.random.Generator) -> torch.Tensor:
    """White noise, or brown-ish noise (more low-frequency energy, like rooms and fans)."""
    noise = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    if rng.random() < 0.5:
        noise = torch.cumsum(noise, 0)
        noise = noise - torch.linspace(0, 1, n) * noise[-1]
    return noise


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    p_sig = x.pow(2).mean().clamp(min=1e-10)
    p_noise = noise.pow(2).mean().clamp(min=1e-10)
    return x + noise * torch.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))


# ---------------------------------------------------------------- rooms


def random_reverb(x: torch.Tensor, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Convolve with a synthetic room: a direct path plus exponentially decaying noise (RT60 0.1-0.6 s),
    direct-to-reverberant ratio 0-15 dB. Output keeps the input's length and level."""
    rt60 = rng.uniform(0.1, 0.6)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.002 * sample_rate)] = 0.0  # first reflections arrive a few ms after the direct sound
    drr = 10 ** (rng.uniform(0, 15) / 10)
    tail *= np.sqrt(1.0 / (drr * max(1e-10, float(np.sum(tail ** 2)))))
    tail[0] = 1.0
    return apply_rir(x, tail.astype(np.float32))


def apply_rir(x: torch.Tensor, rir: np.ndarray) -> torch.Tensor:
    """Convolve with a room impulse response, aligned to its direct path (no added delay: word times stay
    true), cut to the input's length and scaled back to the input's peak."""
    start = int(np.argmax(np.abs(rir)))
    h = torch.from_numpy(np.ascontiguousarray(rir[start:], dtype=np.float32))
    y = torchaudio.functional.fftconvolve(x, h)[: x.numel()]
    return y * (x.abs().max() / y.abs().max().clamp(min=1e-10))


def simulate_rirs(count: int, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Room impulse responses of random shoebox rooms (image source method, pyroomacoustics):
    3-10 x 2.5-8 x 2.4-4 m, RT60 0.15-0.9 s, talker and microphone 0.3-4 m apart."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        raise RuntimeError("simulated rooms need pyroomacoustics (pip install 'asr[train]')") from None
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < count:
        dims = np.array([rng.uniform(3, 10), rng.uniform(2.5, 8), rng.uniform(2.4, 4)])
        rt60 = rng.uniform(0.15, 0.9)
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:  # RT60 impossible for this room size
            continue
        margin = 0.3
        src = np.array([rng.uniform(margin, d - margin) for d in dims])
        src[2] = rng.uniform(1.0, min(2.0, dims[2] - margin))  # a mouth: 1-2 m above the floor
        for _ in range(100):
            mic = np.array([rng.uniform(margin, d - margin) for d in dims])
            if 0.3 <= np.linalg.norm(mic - src) <= 4.0:
                break
        else:
            continue
        room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=min(max_order, 40))
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float32)
        out.append(rir[: int(1.2 * rt60 * sample_rate) + int(np.argmax(np.abs(rir)))])
    return out


def load_rir_bank(path: str, count: int = 400, seed: int = 0) -> list[np.ndarray]:
    """Room impulse responses from an .npz bank; a missing bank is simulated (seeded) and saved first."""
    from ..utils import atomic_path

    p = Path(path)
    if not p.exists():
        log.warning(f"{p}: simulating {count} room impulse responses (once; takes minutes)")
        rirs = simulate_rirs(count, seed)
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, data=np.concatenate(rirs), lengths=np.array([len(r) for r in rirs]))
    try:
        bank = np.load(p)
        data, lengths = bank["data"], bank["lengths"]
    except Exception as e:
        raise ValueError(f"{p}: not a room impulse response bank ({type(e).__name__})") from None
    return list(np.split(data, np.cumsum(lengths)[:-1]))


# ---------------------------------------------------------------- microphones and codecs


def random_channel(x: torch.Tensor, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A random microphone/line: high-pass 50-300 Hz, low-pass 3.4-7.5 kHz (phone to wideband),
    one peaking band +-8 dB. Voices differ from each other mostly in spectral envelope, and so do
    microphones: this teaches the model not to rely on one."""
    f = torchaudio.functional
    peak = x.abs().max().clamp(min=1e-10)
    x = x * (0.2 / peak)  # torchaudio's biquads clamp to [-1, 1]: leave headroom for the boost
    x = f.highpass_biquad(x, sample_rate, float(rng.uniform(50, 300)))
    if rng.random() < 0.6:
        x = f.lowpass_biquad(x, sample_rate, float(rng.uniform(3400, 7500)))
    center = float(np.exp(rng.uniform(np.log(200), np.log(5000))))
    x = f.equalizer_biquad(x, sample_rate, center, float(rng.uniform(-8, 8)), Q=float(rng.uniform(0.5, 2)))
    return x * (peak / 0.2)


def random_codec(x: torch.Tensor, rng: np.random.Generator, kind: Optional[str] = None) -> torch.Tensor:
    """The audio through a lossy codec, as phones and the web deliver it: 8 kHz mu-law telephone (G.711),
    8 kHz GSM 06.10, low-bitrate Opus or MP3 (libsndfile's encoders, in memory). Same length out."""
    kind = kind or CODECS[int(rng.integers(len(CODECS)))]
    n = x.numel()
    peak = x.abs().max().clamp(min=1e-10)
    y = (x * (0.9 / peak)).numpy()
    buf = io.BytesIO()
    if kind in ("telephone", "gsm"):
        narrow = torchaudio.functional.resample(torch.from_numpy(y), SAMPLE_RATE, 8000).clamp(-1, 1).numpy()
        sf.write(buf, narrow, 8000, format="WAV", subtype="ULAW" if kind == "telephone" else "GSM610")
    elif kind == "opus":
        # libsndfile's level 0.88-1.0 is ~35 down to 7 kbit/s: the range of voice calls and web streams
        sf.write(buf, y, SAMPLE_RATE, format="OGG", subtype="OPUS", compression_level=float(rng.uniform(0.88, 1.0)))
    elif kind == "mp3":
        sf.write(buf, y, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=float(rng.uniform(0.5, 0.9)))
    else:
        raise ValueError(f"unknown codec {kind!r} (choose from {', '.join(CODECS)})")
    buf.seek(0)
    decoded, rate = sf.read(buf, dtype="float32")
    out = torch.from_numpy(decoded)
    if rate != SAMPLE_RATE:
        out = torchaudio.functional.resample(out, rate, SAMPLE_RATE)
    out = torch.nn.functional.pad(out[:n], (0, max(0, n - out.numel())))
    return out * (peak / 0.9)


# ---------------------------------------------------------------- log-mel


def _mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)  # HTK mel scale, as LogMel's MelSpectrogram uses


def frequency_warp(feats: torch.Tensor, cfg: "TrainConfig", generator: torch.Generator,
                   sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Scale each utterance's spectrum along frequency by a random factor (vocal tract length perturbation).

    Formant positions scale with vocal tract length, and a few synthetic voices cover few lengths: warping
    the spectrum (without touching tempo, unlike speed perturbation) makes new-sounding speakers.
    Done on the log-mel bins by linear interpolation at the warped bin centres; bins warped above the
    top bin take its value.
    """
    if cfg.freq_warp <= 0:
        return feats
    b, _, n = feats.shape
    top = _mel(torch.tensor(sample_rate / 2))
    centres_mel = torch.linspace(0, float(top), n + 2)[1:-1]
    centres_hz = 700.0 * (10 ** (centres_mel / 2595.0) - 1)
    step = float(centres_mel[1] - centres_mel[0])
    out = torch.empty_like(feats)
    for i in range(b):
        alpha = 1.0 + cfg.freq_warp * (2 * float(torch.rand((), generator=generator)) - 1)
        # value at centre f comes from frequency f / alpha of the original spectrum
        pos = ((_mel(centres_hz / alpha) - centres_mel[0]) / step).clamp(0, n - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=n - 1)
        w = (pos - lo).to(feats.dtype)
        out[i] = feats[i][:, lo] * (1 - w) + feats[i][:, hi] * w
    return out


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, cfg: "TrainConfig",
                 generator: torch.Generator) -> torch.Tensor:
    """Frequency and time masks (SpecAugment), filled with each utterance's mean."""
    feats = feats.clone()
    b, t, f = feats.shape
    for i in range(b):
        n = int(lengths[i])
        fill = feats[i, :n].mean() if n else 0.0
        for _ in range(cfg.freq_masks):
            w = int(torch.randint(0, cfg.freq_mask_width + 1, (1,), generator=generator))
            s = int(torch.randint(0, max(1, f - w), (1,), generator=generator))
            feats[i, :, s:s + w] = fill
        for _ in range(cfg.time_masks):
            w = int(torch.randint(0, min(cfg.time_mask_width, max(1, n // 5)) + 1, (1,), generator=generator))
            s = int(torch.randint(0, max(1, n - w), (1,), generator=generator))
            feats[i, s:s + w] = fill
    return feats
