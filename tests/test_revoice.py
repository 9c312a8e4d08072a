"""`asr revoice`: WORLD resynthesis gives a new voice (formants, F0 moved) reading the same transcript."""

import os

import numpy as np
import pytest
import soundfile as sf

from asr.apps.cli import main
from asr.training.data import Utterance, load_manifest
from asr.training.revoice import VoiceChange, _pyworld, _revoice_chapter, plan, revoice, warp_envelope

from conftest import espeak, write_librispeech_tree

try:
    _pyworld()
except SystemExit as e:  # pyworld not installed
    pytest.skip(str(e), allow_module_level=True)


def test_warp_envelope_moves_a_formant_peak():
    env = np.exp(-0.5 * ((np.arange(513) - 100) / 8.0) ** 2)[None, :] + 1e-6
    assert np.allclose(warp_envelope(env, 1.0), env)
    assert int(np.argmax(warp_envelope(env, 1.2)[0])) == 120
    assert int(np.argmax(warp_envelope(env, 0.85)[0])) == 85


def median_f0(audio: np.ndarray) -> float:
    pw = _pyworld()
    f0, _ = pw.dio(audio.astype(np.float64), 16000, f0_floor=40.0)  # the default floor, 71 Hz, is above 0.7 x espeak
    return float(np.median(f0[f0 > 0]))


def spectral_centroid(audio: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / 16000)
    return float((power * freqs).sum() / power.sum())


def test_revoice_moves_pitch_and_formants_and_keeps_length_and_level():
    x = espeak("the quick brown fox jumps over the lazy dog")
    same = revoice(x, 16000, VoiceChange(1.0, 1.0, 1.0, 0.0))
    higher = revoice(x, 16000, VoiceChange(1.2, 1.5, 1.0, 0.0))
    lower = revoice(x, 16000, VoiceChange(0.85, 0.7, 1.0, 0.0))
    for y in (same, higher, lower):
        assert y.dtype == np.float32 and abs(len(y) - len(x)) <= 16000 * 0.01
        assert np.abs(y).max() == pytest.approx(min(0.9, np.abs(x).max()), rel=1e-5)
    f0 = median_f0(same)
    assert median_f0(higher) == pytest.approx(1.5 * f0, rel=0.1)
    assert median_f0(lower) == pytest.approx(0.7 * f0, rel=0.1)
    assert spectral_centroid(lower) < spectral_centroid(same) < spectral_centroid(higher)


def test_plan_takes_whole_chapters_seeded():
    corpus = [Utterance(f"{s}-{c}-{i:04d}", f"/x/{s}/{c}/{s}-{c}-{i:04d}.flac", "a b", 10.0, str(s))
              for s in (1, 2, 3) for c in (10, 20) for i in range(3)]
    chapters = plan(corpus, hours=50 / 3600, seed=0)  # 30 s chapters: two reach 50 s
    assert len(chapters) == 2 and [c.speaker for c in chapters] == ["9000", "9001"]
    assert all(len(c.utterances) == 3 for c in chapters)
    again = plan(list(reversed(corpus)), hours=50 / 3600, seed=0)
    assert [(c.source_speaker, c.chapter, c.change) for c in again] == [(c.source_speaker, c.chapter, c.change)
                                                                        for c in chapters]
    other = plan(corpus, hours=1.0, seed=1)
    assert len(other) == 6 and len({c.change for c in other}) == 6


def test_revoice_cli_writes_a_corpus_skips_bad_files_and_resumes(tmp_path, caplog, capsys):
    src = write_librispeech_tree(tmp_path / "src", {(11, 100): ["open the door", "turn left"],
                                                     (12, 200): ["good morning", "see you"]})
    (src / "12" / "200" / "12-200-0000.flac").write_bytes(b"not audio at all")
    out = tmp_path / "out"
    assert main(["revoice", str(src), "--out", str(out), "--hours", "1", "--jobs", "2"]) == 0
    assert "12-200-0000.flac" in caplog.text  # the scan names the bad file and goes on
    utts = sorted(load_manifest(out), key=lambda u: u.text)
    assert [u.text for u in utts] == ["open the door", "see you", "turn left"]
    assert {u.speaker for u in utts} == {"9000", "9001"}
    header, *rows = (out / "SPEAKERS.tsv").read_text().splitlines()
    assert header.split("\t")[:3] == ["speaker", "source_speaker", "chapter"] and len(rows) == 2
    audio, rate = sf.read(utts[0].path)
    assert rate == 16000 and len(audio) > 8000
    stamp = os.stat(utts[0].path).st_mtime_ns
    assert main(["revoice", str(src), "--out", str(out), "--hours", "1"]) == 0  # resume: existing flacs kept
    assert os.stat(utts[0].path).st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["revoice", str(tmp_path / "missing"), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("asr revoice: error:") and "missing" in err and "\n" not in err


def test_a_source_file_failing_mid_run_is_reported_and_the_rest_written(tmp_path):
    src = write_librispeech_tree(tmp_path / "src", {(11, 100): ["open the door", "turn left"]})
    chapter = plan(load_manifest(src), hours=1)[0]
    os.remove(chapter.utterances[0].path)  # gone after planning
    speaker, seconds, warnings = _revoice_chapter((chapter, str(tmp_path / "out")))
    assert len(warnings) == 1 and chapter.utterances[0].path in warnings[0] and seconds > 0
    folder = chapter.folder(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == [f"{chapter.uid(1)}.flac", f"{speaker}-100.trans.txt"]
    assert (folder / f"{speaker}-100.trans.txt").read_text() == f"{chapter.uid(1)} TURN LEFT\n"
