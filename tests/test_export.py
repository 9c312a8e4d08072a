"""Int8 quantization and the exported streaming step (asr/export.py)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main
from asr.evaluate import evaluate
from asr.export import ExportedStep, StreamingStep, export_step, initial_state, quantize
from asr.features import LogMel
from asr.streaming import StreamingRecognizer
from asr.transcribe import batch_logits, transcribe


def stream_logits(model, wave: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    rec = StreamingRecognizer(model)
    out, i = [], 0
    while i < len(wave):
        n = int(rng.integers(0, 6000))
        out.append(rec.accept_logits(wave[i:i + n]))
        i += n
    return torch.cat(out)


@pytest.fixture(scope="module")
def int8(overfit):
    return quantize(overfit["model"])


def test_int8_streaming_matches_its_batch_and_fp32(overfit, int8):
    rng = np.random.default_rng(0)
    for wave in overfit["waves"]:
        batch = batch_logits(int8, wave)
        streamed = stream_logits(int8, wave, rng)
        assert streamed.shape == batch.shape
        # Not bit-exact: dynamic quantization picks an activation scale per call (per chunk), so
        # chunking changes the rounding. The gap must stay at quantization-noise level.
        gap = (streamed - batch).abs().max()
        assert gap < 0.05 * batch.abs().max(), gap
        assert (streamed.argmax(-1) == batch.argmax(-1)).float().mean() > 0.97
        fp32 = batch_logits(overfit["model"], wave)
        assert (batch - fp32).abs().max() < 0.25 * fp32.abs().max()


def test_int8_transcribes_overfit_wavs_identically(overfit, int8):
    for wave, text in zip(overfit["waves"], overfit["texts"]):
        assert transcribe(overfit["model"], wave).text == text
        assert transcribe(int8, wave).text == text
        rec = StreamingRecognizer(int8)
        for i in range(0, len(wave), 1600):
            rec.accept(wave[i:i + 1600])
        assert rec.finish().text == text


def test_evaluate_accepts_int8_model(overfit, int8, tmp_path):
    chapter = tmp_path / "1" / "2"
    chapter.mkdir(parents=True)
    lines = []
    for i, (wave, text) in enumerate(zip(overfit["waves"], overfit["texts"])):
        sf.write(chapter / f"1-2-{i:04d}.flac", wave, 16000)
        lines.append(f"1-2-{i:04d} {text.upper()}")
    (chapter / "1-2.trans.txt").write_text("\n".join(lines) + "\n")
    result = evaluate(int8, [str(tmp_path)])  # batched, unlike the single-stream paths
    assert len(result.rows) == 2 and result.wer == 0.0


@pytest.mark.parametrize("suffix,int8_model", [(".onnx", False), (".pt", False), (".pt", True)])
def test_exported_step_matches_eager_over_chained_chunks(overfit, int8, tmp_path, suffix, int8_model):
    if suffix == ".onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    model = int8 if int8_model else overfit["model"]
    path = export_step(model, tmp_path / f"step{suffix}")
    exported, eager = ExportedStep(path), StreamingStep(model).eval()
    feats = LogMel()(torch.from_numpy(overfit["waves"][0]))[None]
    s_exp = s_eager = initial_state(model)
    start, outputs = 0, []
    for t in (3, 12, 30, 6, 51, 99):  # multiples of stack, state carried from chunk to chunk
        chunk = feats[:, start:start + t]
        start += t
        with torch.inference_mode():
            want, s_eager = eager(chunk, s_eager)
        got, s_exp = exported(chunk, s_exp)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        assert torch.allclose(s_exp, s_eager, atol=1e-5)
        outputs.append(got)
    if not int8_model:  # and the chained step equals the model's own batch pass over those frames
        with torch.inference_mode():
            whole, _, _ = overfit["model"](feats[:, :start])
        assert torch.allclose(torch.cat(outputs, 1), whole, atol=1e-5)


def test_export_cli(overfit, tmp_path, capsys):
    out = tmp_path / "step.pt"
    assert main(["export", "--model", str(overfit["path"]), "--output", str(out)]) == 0
    assert out.exists() and "new_state" in capsys.readouterr().out
    assert main(["export", "--model", str(overfit["path"]), "--output", str(tmp_path / "q.onnx"), "--int8"]) == 1
