"""Training loop: outputs, exact resume after kill -9, DDP with two processes, evaluation numbers."""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from asr.apps.cli import main
from asr.training.evaluate import error_rates
from asr.model import AcousticModel, widen_hidden

SMALL = ["--hidden", "48", "--layers", "2", "--num-workers", "0", "--threads", "1", "--batch-seconds", "6",
         "--warmup-steps", "3", "--stats-utterances", "6", "--noise-prob", "0.5"]


def train_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--train", str(corpus), "--out", str(out), *SMALL, *extra]


def run_train_cli(args: list[str]) -> dict:
    assert main(["train", *args]) == 0
    out = Path(args[args.index("--out") + 1])
    return torch.load(out / "last.pt", weights_only=True)


def test_training_writes_checkpoints_history_and_plot(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    run_train_cli(train_args(tiny_corpus, out, "--dev", str(tiny_corpus), "--epochs", "3"))
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(0 <= h["dev_wer"] and 0 <= h["dev_cer"] for h in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = AcousticModel.load(out / "best.pt")
    assert model.config.hidden == 48
    assert float(model.normalizer.std.min()) > 0 and float(model.normalizer.mean.abs().sum()) > 0


def _losses(ckpt: dict) -> list:
    return json.loads(ckpt["progress"])["recent_losses"]


def test_resume_after_kill9_continues_exactly(tiny_corpus, tmp_path):
    common = ["--epochs", "4", "--save-every-steps", "1", "--seed", "3"]
    reference = run_train_cli(train_args(tiny_corpus, tmp_path / "ref", *common))

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "asr.training.train", *train_args(tiny_corpus, out, *common)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "last.pt").exists():
                try:
                    step = json.loads(torch.load(out / "last.pt", weights_only=True)["progress"])["step"]
                except Exception:  # being replaced right now
                    step = 0
                if step >= 3:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    interrupted_at = json.loads(torch.load(out / "last.pt", weights_only=True)["progress"])["step"]
    total = json.loads(reference["progress"])["step"]
    assert 3 <= interrupted_at < total, "the kill must land mid-run"

    resumed = run_train_cli(train_args(tiny_corpus, out, *common))
    # Same losses at every step after the interruption, and the same final weights, bit for bit.
    assert _losses(resumed) == _losses(reference)
    for k, v in reference["model"]["state_dict"].items():
        assert torch.equal(v, resumed["model"]["state_dict"][k]), k
    assert reference["optimizer"]["state"][0]["step"] == resumed["optimizer"]["state"][0]["step"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_end_identical(tiny_corpus, tmp_path):
    torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    out = tmp_path / "ddp"
    cmd = [torchrun, "--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "asr.training.train",
           *train_args(tiny_corpus, out, "--epochs", "2", "--dev", str(tiny_corpus))]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    # torchrun's own report (the tail) hides why a rank died: show the ranks' error lines too
    causes = [line for line in result.stderr.splitlines() if "rror" in line or "terminate" in line][:20]
    assert result.returncode == 0, "\n".join(causes) + "\n...\n" + result.stderr[-1500:]
    replicas = json.loads((out / "replicas.json").read_text())
    assert replicas["world_size"] == 2
    assert len(replicas["sha256"]) == 2 and replicas["sha256"][0] == replicas["sha256"][1]
    assert (out / "best.pt").exists()
    assert "2 process(es)" in result.stderr


def test_error_rates_on_known_case():
    rates = error_rates(["the cat sat on the mat", "hello world"], ["the cat sat on a mat", "hello"])
    assert rates.words == 8
    assert rates.wer == pytest.approx(2 / 8)  # one substitution, one deletion
    # characters: "the" -> "a" is 3 edits, dropping " world" 6, over 22 + 11 reference characters
    assert rates.cer == pytest.approx((3 + 6) / (22 + 11))


def test_asr_eval_reports_known_wer(overfit, tmp_path, capsys):
    # The overfit model transcribes these two files exactly; one reference word is changed on purpose.
    refs = ["open the window please", "turn left at the next light"]
    chapter = tmp_path / "corpus" / "7" / "1"
    chapter.mkdir(parents=True)
    for i, wav in enumerate(overfit["wav_paths"]):
        sf.write(chapter / f"7-1-{i:04d}.flac", sf.read(wav)[0], 16000)
    (chapter / "7-1.trans.txt").write_text("".join(f"7-1-{i:04d} {r.upper()}\n" for i, r in enumerate(refs)))
    report = tmp_path / "errors.jsonl"
    assert main(["eval", "--no-lm", "--model", str(overfit["path"]), str(tmp_path / "corpus"), "--output", str(report)]) == 0
    out = capsys.readouterr().out
    assert "10.00" in out  # 1 error / 10 words
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["ref"], r["hyp"], r["errors"]) for r in rows] == [
        (refs[0], overfit["texts"][0], 1), (refs[1], overfit["texts"][1], 0)]


def test_asr_eval_with_no_readable_clip_fails_with_one_line(overfit, tmp_path, capsys, caplog):
    # A manifest copied away from its audio: every relative path is missing. Each clip is reported and
    # the command ends with one clear error, not a traceback from scoring nothing.
    # With durations in the manifest, the files are first opened when the batches are read.
    manifest = tmp_path / "moved.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"u{i}", "path": f"clips/u{i}.flac", "text": "hello",
                                            "duration": 1.5}) + "\n" for i in range(2)))
    report = tmp_path / "errors.jsonl"
    assert main(["eval", "--no-lm", "--model", str(overfit["path"]), str(manifest), "--output", str(report)]) == 1
    assert sum("u0.flac" in m or "u1.flac" in m for m in caplog.messages) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "none of the 2 utterances" in err[-1] and str(manifest) in err[-1] and "Traceback" not in "".join(err)
    assert not report.exists()


def test_asr_eval_side_by_side_with_pocketsphinx_by_group(monkeypatch, overfit, tmp_path, capsys):
    pytest.importorskip("pocketsphinx")
    chapter = tmp_path / "corpus" / "7" / "1"
    chapter.mkdir(parents=True)
    for i, wav in enumerate(overfit["wav_paths"]):
        sf.write(chapter / f"7-1-{i:04d}.flac", sf.read(wav)[0], 16000)
    (chapter / "7-1.trans.txt").write_text("".join(f"7-1-{i:04d} {t.upper()}\n"
                                                   for i, t in enumerate(overfit["texts"])))
    speakers = tmp_path / "SPEAKERS.tsv"
    speakers.write_text("speaker\tengine\tsplit\n7\tespeak\ttest\n")
    report = tmp_path / "errors.jsonl"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # an empty peer cache: PocketSphinx really runs
    assert main(["eval", "--no-lm", "--model", str(overfit["path"]), str(tmp_path / "corpus"), "--peer", "pocketsphinx",
                 "--groups", f"{speakers}:engine", "--output", str(report)]) == 0
    out = capsys.readouterr().out
    assert "pocketsphinx WER %" in out and "espeak" in out and "pocketsphinx RTF" in out
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["hyp"] for r in rows] == overfit["texts"]
    assert all(isinstance(r["peer_hyp"], str) and r["peer_errors"] >= 0 for r in rows)
    assert main(["eval", "--no-lm", "--model", str(overfit["path"]), str(tmp_path / "corpus"),
                 "--groups", f"{speakers}:nope"]) == 1


def test_frequency_warp_moves_formants_and_is_seeded():
    from asr.training.augment import frequency_warp
    from asr.training.train import TrainConfig

    cfg = TrainConfig(train=[], dev=[])
    feats = torch.randn(3, 20, 80)
    assert frequency_warp(feats, cfg, torch.Generator()) is feats  # off by default
    cfg.freq_warp = 0.15
    peak = torch.zeros(40, 1, 80)
    peak[:, :, 40] = 1.0
    warped = frequency_warp(peak, cfg, torch.Generator().manual_seed(0))
    bins = warped[:, 0].argmax(-1)
    # each utterance gets its own factor: the spectral peak moves both up and down, by at most ~15 %
    assert bins.min() < 40 < bins.max() and bins.min() >= 34 and bins.max() <= 46
    again = frequency_warp(peak, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(warped, again)


def test_random_reverb_and_channel_are_seeded_and_keep_length():
    import numpy as np

    from asr.training.augment import random_channel, random_reverb

    burst = torch.zeros(16000)
    burst[:800] = torch.randn(800) * 0.3
    wet = random_reverb(burst, np.random.default_rng(1))
    assert wet.shape == burst.shape and torch.isfinite(wet).all()
    assert float(wet[4000:8000].abs().max()) > 0  # the room keeps ringing after the burst ends
    assert torch.allclose(wet.abs().max(), burst.abs().max())
    assert torch.equal(wet, random_reverb(burst, np.random.default_rng(1)))

    noise = torch.randn(32000) * 0.5
    outs = [random_channel(noise, np.random.default_rng(s)) for s in range(4)]
    assert all(o.shape == noise.shape and torch.isfinite(o).all() for o in outs)
    assert not torch.allclose(outs[0], outs[1])
    def below_40_hz(x: torch.Tensor) -> float:
        return float(torch.fft.rfft(x).abs()[:80].pow(2).sum())  # 2 s of audio: 0.5 Hz per bin

    assert all(below_40_hz(o) < 0.5 * below_40_hz(noise) for o in outs)  # the high-pass is always on


def test_fine_tune_starts_from_the_init_model(tiny_corpus, tmp_path):
    base = tmp_path / "base"
    run_train_cli(train_args(tiny_corpus, base, "--epochs", "1"))
    init = AcousticModel.load(base / "best.pt")
    out = tmp_path / "tuned"
    # lr 0: the fine-tuned weights must be exactly the initial ones; a smaller --hidden is ignored (the init's
    # config wins), a given --dropout replaces the init's (a training setting, not architecture)
    run_train_cli(["--train", str(tiny_corpus), "--out", str(out), "--init", str(base / "best.pt"), "--lr", "0",
                   "--hidden", "32", "--dropout", "0.3", "--epochs", "1", "--num-workers", "0", "--threads", "1",
                   "--batch-seconds", "6", "--reverb-prob", "1", "--eq-prob", "1"])
    tuned = AcousticModel.load(out / "best.pt")
    assert init.config.dropout != 0.3 and tuned.config == dataclasses.replace(init.config, dropout=0.3)
    for name, tensor in init.state_dict().items():
        assert torch.equal(tensor, tuned.state_dict()[name]), name
    # --lookahead widens the init model; at lr 0 it still computes the init model's function
    wide_out = tmp_path / "wide"
    run_train_cli(["--train", str(tiny_corpus), "--out", str(wide_out), "--init", str(base / "best.pt"), "--lr", "0",
                   "--lookahead", "2", "--epochs", "1", "--num-workers", "0", "--threads", "1", "--batch-seconds", "6"])
    wide = AcousticModel.load(wide_out / "best.pt")
    assert wide.config.lookahead == 2 and init.config.lookahead == 0
    assert wide.config.dropout == init.config.dropout  # no --dropout: the init's
    feats = torch.randn(1, 90, init.config.n_mels) + init.normalizer.mean
    with torch.no_grad():
        torch.testing.assert_close(wide(feats)[0], init(feats)[0], atol=1e-6, rtol=0)
    # a larger --hidden widens the init model (widen_hidden, seeded by --seed); at lr 0 nothing else changes
    wider_out = tmp_path / "wider"
    run_train_cli(["--train", str(tiny_corpus), "--out", str(wider_out), "--init", str(base / "best.pt"), "--lr", "0",
                   "--hidden", "64", "--seed", "3", "--epochs", "1", "--num-workers", "0", "--threads", "1",
                   "--batch-seconds", "6"])
    wider = AcousticModel.load(wider_out / "best.pt")
    assert wider.config.hidden == 64 and init.config.hidden == 48
    want = widen_hidden(init, 64, seed=3).state_dict()
    for name, tensor in wider.state_dict().items():
        assert torch.equal(tensor, want[name]), name


def test_exclude_drops_training_utterances_that_speak_held_out_sentences(tiny_corpus, tmp_path, capsys):
    from asr.training.data import held_out_sentences

    held = tmp_path / "test-sentences.txt"
    # one sentence of the corpus (in another spelling), one that is not in it, and a single word
    held.write_text("The cat sat on the MAT.\nsomething else entirely\nrain\n")
    assert held_out_sentences([held]) == {"the cat sat on the mat", "something else entirely"}
    out = tmp_path / "run"
    run_train_cli(train_args(tiny_corpus, out, "--epochs", "1", "--exclude", str(held)))
    assert "--exclude: 1 training utterances speak a held-out sentence; dropped" in capsys.readouterr().err


def test_repeat_upsamples_a_source(tmp_path, capsys):
    import numpy as np

    rows = []
    for i, source in enumerate(["words", "words", "sentences"]):
        sf.write(tmp_path / f"{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(16000)).astype("float32"), 16000)
        rows.append(json.dumps({"path": f"{i}.wav", "text": "hello there", "source": source}))
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    run_train_cli(["--train", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "run"), *SMALL, "--epochs", "1",
                   "--repeat", "sentences=3"])
    assert "5 train utterances" in capsys.readouterr().err  # 2 + 3 x 1
    for bad in ("sentences", "sentences=0", "sentences=-1", "sentences=x", "=2"):
        with pytest.raises(SystemExit):
            main(["train", "--train", str(tmp_path / "m.jsonl"), "--repeat", bad])


def test_fractional_repeat_keeps_or_adds_a_seeded_share_of_a_source():
    from asr.training.data import Utterance
    from asr.training.train import repeat_sources

    utts = [Utterance(id=f"{s}{i}", path=f"{s}{i}.wav", text="x", duration=1.0, speaker="", source=s)
            for s, n in (("words", 40), ("sentences", 10)) for i in range(n)]
    half = repeat_sources(utts, {"words": 0.5}, seed=1)
    kept = [u.id for u in half if u.source == "words"]
    assert len(kept) == 20 and len(set(kept)) == 20  # a half, each once
    assert [u.id for u in half if u.source == "sentences"] == [f"sentences{i}" for i in range(10)]  # untouched
    assert [u.id for u in repeat_sources(utts, {"words": 0.5}, seed=1)] == [u.id for u in half]  # seeded
    assert kept != [u.id for u in repeat_sources(utts, {"words": 0.5}, seed=2) if u.source == "words"]
    ids = [u.id for u in repeat_sources(utts, {"sentences": 2.5, "words": 1}, seed=0)]
    counts = {i: ids.count(i) for i in set(ids) if i.startswith("sentences")}
    assert sorted(counts.values()) == [2] * 5 + [3] * 5  # every clip twice, a seeded half a third time
    assert ids.count("words0") == 1 and len(ids) == 40 + 25
    # whole numbers are plain copies, in manifest order (what the recipes' --repeat 2 always did)
    assert [u.id for u in repeat_sources(utts, {"sentences": 2}, seed=5)] == \
        [u.id for u in utts for _ in range(2 if u.source == "sentences" else 1)]


def test_peer_transcripts_are_cached_by_audio_content(tmp_path):
    import numpy as np

    from asr.training.evaluate import PeerCache

    calls = []
    cache = PeerCache(lambda w: calls.append(len(w)) or f"{len(w)} samples", "fake-peer", tmp_path)
    a, b = np.zeros(100, dtype=np.float32), np.ones(100, dtype=np.float32)
    assert cache(a) == "100 samples" and cache.computed
    assert cache(a) == "100 samples" and not cache.computed
    assert cache(b) == "100 samples" and cache.computed
    assert calls == [100, 100]
    assert PeerCache(lambda w: "other", "another-peer", tmp_path)(a) == "other"  # caches are per peer


def test_precision_auto_is_bf16_only_on_a_cpu_with_native_bf16():
    from asr.training.train import resolve_precision

    assert resolve_precision("auto", {"avx2", "avx512f", "avx512_bf16"}) == "bf16"
    assert resolve_precision("auto", {"avx2", "amx_bf16", "amx_tile"}) == "bf16"
    # AVX2 only (e.g. AMD Zen 3): bf16 autocast is emulated there and was ~10x slower
    assert resolve_precision("auto", {"avx2", "fma", "f16c"}) == "fp32"
    assert resolve_precision("auto", {"avx512f", "avx512bw"}) == "fp32"
    assert resolve_precision("bf16", set()) == "bf16" and resolve_precision("fp32", {"amx_bf16"}) == "fp32"
    assert resolve_precision("auto") in ("bf16", "fp32")  # this machine's /proc/cpuinfo (or none)


def test_spec_augment_settings_come_from_the_command_line():
    import argparse

    from asr.training.augment import spec_augment
    from asr.training.train import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    default = config_from_args(p.parse_args(["--train", "x"]))
    assert (default.freq_masks, default.freq_mask_width, default.time_masks, default.time_mask_width) == (2, 12, 2, 25)
    cfg = config_from_args(p.parse_args(["--train", "x", "--spec-augment", "1", "5", "0", "0"]))
    assert (cfg.freq_masks, cfg.freq_mask_width, cfg.time_masks, cfg.time_mask_width) == (1, 5, 0, 0)
    feats = torch.randn(3, 200, 80)
    lengths = torch.tensor([200, 150, 100])
    out = spec_augment(feats, lengths, cfg, torch.Generator().manual_seed(0))
    changed = (out != feats).any(dim=1)  # (utterance, mel bin): masked anywhere in time
    assert changed.any() and int(changed.sum(dim=1).max()) <= 5  # one band of at most 5 bins each
    assert ((out != feats).any(dim=2) == (out != feats).any(dim=2)[:, :1]).all()  # no time masks: all frames alike
    off = config_from_args(p.parse_args(["--train", "x", "--spec-augment", "0", "0", "0", "0"]))
    assert torch.equal(spec_augment(feats, lengths, off, torch.Generator().manual_seed(0)), feats)
    with pytest.raises(SystemExit):
        config_from_args(p.parse_args(["--train", "x", "--spec-augment", "2", "-1", "2", "25"]))
