"""Features -> model -> CTC -> decoding, end to end on synthesized speech, and the CLI around it."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from asr.audio import AudioError, load_audio
from asr.apps.cli import main


def test_tiny_model_overfits_two_utterances(overfit):
    losses = overfit["losses"]
    assert losses[-1] < 0.2 * losses[0]
    assert overfit["hyps"] == overfit["texts"]


def test_cli_transcribes_batch_and_streaming_alike(overfit, capsys):
    files = [str(p) for p in overfit["wav_paths"]]
    assert main(["transcribe", "--no-lm", "--model", str(overfit["path"]), *files]) == 0
    batch = capsys.readouterr().out.splitlines()
    assert batch == [f"{f}: {t}" for f, t in zip(files, overfit["texts"])]
    for chunk_ms in ("10", "37", "250"):
        assert main(["transcribe", "--no-lm", "--model", str(overfit["path"]), "--stream-chunk-ms", chunk_ms, *files]) == 0
        assert capsys.readouterr().out.splitlines() == batch


def test_cli_bad_inputs_are_reported_and_skipped(overfit, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    good = str(overfit["wav_paths"][0])
    missing = str(tmp_path / "missing.flac")
    assert main(["transcribe", "--no-lm", "--model", str(overfit["path"]), str(empty), good, str(text), missing]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [f"{good}: {overfit['texts'][0]}"]
    errors = captured.err.splitlines()
    assert len(errors) == 3
    for name, line in zip(["empty.wav", "notes.wav", "missing.flac"], errors):
        assert name in line and line.startswith("asr: error:")
    # every file failed -> non-zero exit
    assert main(["transcribe", "--no-lm", "--model", str(overfit["path"]), str(empty), missing]) == 1


def test_cli_missing_model_is_a_clear_error(tmp_path, overfit):
    with pytest.raises(SystemExit, match="nothing.pt"):
        main(["transcribe", "--model", str(tmp_path / "nothing.pt"), str(overfit["wav_paths"][0])])


def test_python_dash_m_entry_point(overfit):
    out = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--no-lm", "--model", str(overfit["path"]),
                          str(overfit["wav_paths"][1])], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith(overfit["texts"][1])


@pytest.mark.parametrize("fmt,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"),
                                         ("mp3", "MPEG_LAYER_III")])
def test_load_audio_formats_stereo_and_resampling(tmp_path, fmt, subtype):
    sr = 44100
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, stereo, sr, format=fmt.upper(), subtype=subtype)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) < 1200  # lossy codecs may pad a frame
    spectrum = np.abs(np.fft.rfft(x[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16000 / len(x[2000:14000])
    assert abs(peak_hz - 440) < 5


def test_load_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: no such file"):
        load_audio(tmp_path / "nope.wav")
    junk = tmp_path / "junk.flac"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(AudioError, match="junk.flac: cannot decode"):
        load_audio(junk)
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_cli_int8_transcribes_the_same(overfit, capsys):
    files = [str(p) for p in overfit["wav_paths"]]
    assert main(["transcribe", "--no-lm", "--model", str(overfit["path"]), "--int8", *files]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{f}: {t}" for f, t in zip(files, overfit["texts"])]
