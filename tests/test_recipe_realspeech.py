"""The real-speech recipe end to end at toy size: held-out sets -> fine-tune (--init) -> synthetic voices
(eSpeak NG, Festival, Flite, Piper) reading Gutenberg-style sentences -> the model widened and trained on real +
synthetic speech -> more steps with frequency warping -> calibrate timing -> Gutenberg-style KenLM with held-out
sentences removed -> tune on dev -> eval beside PocketSphinx."""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.model import AcousticModel, ModelConfig, atomic_torch_save
from conftest import SENTENCES, espeak

ROOT = Path(__file__).resolve().parents[1]


def _manifest(path: Path, rows: list[tuple[str, str]], audio: Path) -> None:
    audio.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (text, source) in enumerate(rows):
        wav = audio / f"{path.stem}-{i}.wav"
        sf.write(wav, espeak(text), 16000)
        lines.append(json.dumps({"path": str(wav), "text": text, "source": source}))
    path.write_text("\n".join(lines) + "\n")


def test_realspeech_recipe_runs_every_stage(tmp_path):
    missing = [b for b in ("diatheke", "espeak-ng", "flite", "text2wave") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (bash .ci/install installs them)")
    pytest.importorskip("piper", reason="the Piper voice needs asr[piper] (bash .ci/install installs it)")
    shared, data, exp = tmp_path / "shared", tmp_path / "data", tmp_path / "exp"
    real = shared / "realspeech"
    real.mkdir(parents=True)
    dev_sentence = SENTENCES[1]
    # a training clip that speaks the dev sentence must be dropped from training and from the LM text
    _manifest(real / "train.jsonl", [(SENTENCES[0], "commonvoice1"), (SENTENCES[2], "commonvoice1"),
                                     (dev_sentence, "commonvoice1"), ("yes", "speechcommands")], real / "audio")
    _manifest(real / "dev.jsonl", [(dev_sentence, "commonvoice1"), ("yes", "speechcommands")], real / "audio")
    _manifest(data / "asterisk" / "asterisk.jsonl", [("please hold the line for the operator", "asterisk")], data / "audio")
    (shared / "noise").mkdir()  # background noise recordings for the second training run
    sf.write(shared / "noise" / "hum.wav", 0.05 * np.sin(np.arange(32000) * 0.05).astype("float32"), 16000)
    (shared / "lm-text").mkdir()
    with lzma.open(shared / "lm-text" / "gutenberg.txt.xz", "wt") as f:
        f.write("".join(s + "\n" for s in SENTENCES * 3 + ["please hold the line for the operator", "yes"]))
    init = tmp_path / "init.pt"
    atomic_torch_save(AcousticModel(ModelConfig(hidden=32, layers=1)).checkpoint(), init)

    env = dict(os.environ, SHARED=str(shared), DATA=str(data), EXP=str(exp), INIT=str(init), EPOCHS="1",
               BATCH_SECONDS="20", PRECISION="auto", VOCAB_MIN_COUNT="1", BEAM="8", TTS_FRACTION="1",
               SYNTH_HOURS="0.004", PIPER_HOURS="0.003", HIDDEN="48", MIX_STEPS="3", MORE_STEPS="2",
               REVERB_PROB="0")
    proc = subprocess.run(["bash", "recipes/realspeech/run.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"initialized from {init}" in proc.stderr and f"initialized from {exp / 'r1' / 'best.pt'}" in proc.stderr
    assert "1 training utterances speak a held-out sentence; dropped" in proc.stderr
    sentences = (data / "tts-sentences.txt").read_text().splitlines()
    # the 6-20-word lines, less the Asterisk (test) sentence
    assert set(sentences) == {t for t in SENTENCES if len(t.split()) >= 6}
    for corpus, engines in (("synthetic", {"espeak", "festival", "flite"}), ("piper", {"piper"})):
        assert set(json.loads((data / corpus / "synthesize.json").read_text())["engines"]) == engines
        assert list((data / corpus / "train").rglob("*.flac")), corpus
    mix = json.loads((exp / "mix" / "history.json").read_text())
    assert mix[-1]["step"] == 3
    assert f"initialized from {exp / 'mix' / 'last.pt'}" in proc.stderr
    assert json.loads((exp / "more" / "history.json").read_text())[-1]["step"] == 2
    model = AcousticModel.load(exp / "model.pt")
    assert model.config.hidden == 48 and model.word_delay != (0.0, 0.0)  # widened from the init's 32, calibrated
    build = json.loads((exp / "lm.build.json").read_text())
    words = (exp / "lm.words.txt").read_text().split()
    assert "hold" not in words and "yes" in words  # the Asterisk sentence removed, single words kept
    assert sum(s["excluded"] for s in build["sources"].values()) == 3 + 1 + 1, build["sources"]  # dev x4, Asterisk
    tuned = json.loads((exp / "lm.bin.json").read_text())
    assert tuned["beam_size"] == 8 and {"lm_weight", "word_score"} <= set(tuned)
    errors = [json.loads(line) for line in (exp / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 2 + 1 + 8  # dev, Asterisk, alsa phrases
    assert "pocketsphinx" in proc.stdout.lower()
