"""Int8 quantization and the exported streaming step (asr/export.py)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.apps.cli import main
from asr.training.evaluate import evaluate
from asr.apps.export import ExportedStep, StreamingStep, export_step, initial_state
from asr.model import quantize
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


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_exported_lookahead_step_carries_frames_and_ends_with_mean_frames(tmp_path, suffix):
    """The host protocol in asr/export.py's docstring, followed literally, gives the batch logits."""
    if suffix == ".onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    from asr.model import AcousticModel, ModelConfig

    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(hidden=32, layers=2, lookahead=2)).eval()
    model.normalizer.set_stats(torch.randn(80) - 5, torch.rand(80) + 1)
    s, k = model.config.stack, model.config.lookahead
    feats = torch.randn(1, 120, 80) - 5
    step = ExportedStep(export_step(model, tmp_path / f"step{suffix}"))
    state, carry, outputs = initial_state(model), feats[:, :0], []
    start = 0
    for t in (3, 9, 30, 12, 66):  # multiples of stack; the first is too short to give any step
        chunk = torch.cat([carry, feats[:, start:start + t]], 1)
        start += t
        if chunk.shape[1] // s <= k:  # not enough future yet: keep it all
            carry = chunk
            continue
        logits, state = step(chunk, state)
        assert logits.shape[1] == chunk.shape[1] // s - k
        outputs.append(logits)
        carry = chunk[:, logits.shape[1] * s:]
    tail = torch.cat([carry, model.normalizer.mean.expand(1, k * s, -1)], 1)
    logits, state = step(tail, state)
    outputs.append(logits)
    with torch.inference_mode():
        whole, _, _ = model(feats)
    torch.testing.assert_close(torch.cat(outputs, 1), whole, atol=1e-5, rtol=0)
