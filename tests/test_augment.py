"""Training augmentation: real noise, simulated rooms, codecs; seeded, length-preserving."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.training.augment import (CODECS, WaveformAugment, apply_rir, load_noises, load_rir_bank, mix_at_snr,
                                  noise_segment, random_codec)
from asr.training.train import TrainConfig


def _tone(seconds: float = 1.0, hz: float = 440.0) -> torch.Tensor:
    t = torch.arange(int(16000 * seconds)) / 16000
    return (0.3 * torch.sin(2 * torch.pi * hz * t)).float()


@pytest.mark.parametrize("kind", CODECS)
def test_codec_keeps_length_level_and_is_lossy(kind):
    x = _tone() + 0.01 * torch.randn(16000)
    y = random_codec(x, np.random.default_rng(0), kind)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.equal(x, y)
    # still the same signal, roughly at the same level (codecs delay at most a few ms: compare energies)
    assert 0.5 < float(y.pow(2).mean() / x.pow(2).mean()) < 2.0


def test_telephone_codecs_remove_the_upper_band():
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(32000).astype(np.float32)) * 0.1
    for kind in ("telephone", "gsm"):
        spectrum = torch.fft.rfft(random_codec(noise, np.random.default_rng(1), kind)).abs().pow(2)
        hz = torch.fft.rfftfreq(32000, 1 / 16000)
        assert float(spectrum[hz > 4500].sum()) < 0.01 * float(spectrum[hz < 3500].sum())


def test_noise_recordings_segments_and_snr(tmp_path):
    (tmp_path / "n").mkdir()
    rec = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    sf.write(tmp_path / "n" / "fan.wav", rec, 16000)
    (tmp_path / "n" / "notes.txt").write_text("not audio")
    noises = load_noises([str(tmp_path / "n")])
    assert len(noises) == 1
    seg = noise_segment(noises[0], 20000, np.random.default_rng(0))  # longer than the recording: looped
    assert seg.shape == (20000,)
    x = _tone()
    mixed = mix_at_snr(x, seg[:16000], 10.0)
    snr = 10 * torch.log10(x.pow(2).mean() / (mixed - x).pow(2).mean())
    assert abs(float(snr) - 10.0) < 0.01
    with pytest.raises(FileNotFoundError, match="missing"):
        load_noises([str(tmp_path / "missing")])
    with pytest.raises(ValueError, match="no usable noise"):
        load_noises([str(tmp_path / "n" / "notes.txt")])


def test_rir_bank_is_simulated_once_and_reloaded(tmp_path):
    pytest.importorskip("pyroomacoustics")
    path = tmp_path / "rirs.npz"
    bank = load_rir_bank(str(path), count=3, seed=0)
    assert path.exists() and len(bank) == 3
    again = load_rir_bank(str(path), count=3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(bank, again))
    burst = torch.zeros(16000)
    burst[:400] = torch.randn(400) * 0.3
    wet = apply_rir(burst, bank[0])
    assert wet.shape == burst.shape and float(wet[2000:6000].abs().max()) > 0  # the room rings on
    # aligned to the direct path: the onset does not move
    assert int(torch.nonzero(wet.abs() > 1e-3)[0]) < 10
    (tmp_path / "bad.npz").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npz"):
        load_rir_bank(str(tmp_path / "bad.npz"))


def test_waveform_augment_is_a_function_of_seed_epoch_and_item(tmp_path):
    sf.write(tmp_path / "noise.wav", np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1,
             16000)
    cfg = TrainConfig(train=[], dev=[], noise=[str(tmp_path / "noise.wav")], noise_prob=1.0, eq_prob=0.5,
                      codec_prob=0.5, reverb_prob=0.5)
    aug = WaveformAugment(cfg)
    x = _tone(0.5).numpy()
    a, b = aug(x, 3), aug(x, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, aug(x, 4))
    aug.epoch = 1
    assert not np.array_equal(a, aug(x, 3))
    assert aug(np.zeros(0, dtype=np.float32), 0).size == 0
