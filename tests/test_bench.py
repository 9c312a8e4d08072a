"""`asr bench --quick` on a tiny model: the table has every row and column, all numbers positive and
finite. No timing assertions: speed depends on the machine and its load."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.apps.bench import CHUNK_MS, GRU, INT8, LSTM, PS, BenchResult, Row, render, training_flops_per_audio_second
from asr.apps.cli import main
from asr.model import AcousticModel, ModelConfig


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    pytest.importorskip("pocketsphinx")
    tmp = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    AcousticModel(ModelConfig(hidden=32, layers=1)).save(tmp / "tiny.pt")
    rng = np.random.default_rng(0)
    t = np.arange(2 * 16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (rng.random(t.size) > 0.5) + 0.05 * rng.standard_normal(t.size))
    sf.write(tmp / "a.wav", wave.astype(np.float32), 16000)
    out = tmp / "bench.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["bench", "--quick", "--int8", "--model", str(tmp / "tiny.pt"), "--audio", str(tmp / "a.wav"),
                     "--json", str(out)]) == 0
    return json.loads(out.read_text()), printed.getvalue()


def positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def test_quick_bench_rows_and_columns(quick_run):
    data, printed = quick_run
    assert data["columns"] == [GRU, INT8, LSTM, PS]
    rows = {r["name"]: r for r in data["rows"]}
    for ms in CHUNK_MS:
        assert set(rows[f"RTF, {ms} ms chunks"]["values"]) == {GRU, INT8, LSTM, PS}
        for q in ("p50", "p95", "p99"):
            assert set(rows[f"chunk latency {q}, {ms} ms chunks"]["values"]) == {GRU, INT8, LSTM, PS}
        assert set(rows[f"PocketSphinx RTF / ours, {ms} ms"]["values"]) == {GRU, INT8, LSTM}
    assert set(rows["RTF, whole utterance"]["values"]) == {GRU, INT8, LSTM, PS}
    for t in (1, 2):
        assert set(rows[f"training throughput, {t} thread(s)"]["values"]) == {GRU, LSTM}
        assert set(rows[f"fraction of GEMM ceiling, {t} thread(s)"]["values"]) == {GRU, LSTM}
    assert set(rows["transcription throughput"]["values"]) == {GRU, INT8}
    for name in ("parameters", "peak RSS, batch worker process", "weights, serialized", "log-mel features, 160 ms chunks",
                 "log-mel features, whole utterance", "greedy CTC decoding", "peak RSS, this bench process"):
        assert GRU in rows[name]["values"]
    assert GRU in rows["beam search, beam 8, no LM"]["values"]  # --quick times beam 8 only
    for r in data["rows"]:
        assert all(positive(v) for v in r["values"].values()), r
    assert rows["weights, serialized"]["values"][INT8] < rows["weights, serialized"]["values"][GRU]
    assert len(data["targets"]) == len(CHUNK_MS)
    for header in ("measurement", GRU, INT8, LSTM, PS, "RTF, 160 ms chunks", "target:"):
        assert header in printed


def test_render_and_flop_count():
    result = BenchResult("t", [GRU], [Row("s", "x", "u", {GRU: 1.5})],
                         {"cpu": "c", "cores": 2, "torch": "t", "quantized_engine": "x86",
                          "load_avg_start": [0.0], "load_avg_end": [0.0]})
    assert render(result).row_count == 1
    # 4 layers x 320 GRU: 3 gates x 2 matmuls x 2*320*320 per layer per 30 ms step dominates.
    cfg = ModelConfig()
    rnn_only = 3 * (cfg.layers * 3 * 2 * 2 * 320 * 320) / 0.03
    assert rnn_only < training_flops_per_audio_second(cfg) < 1.1 * rnn_only
    assert training_flops_per_audio_second(ModelConfig(rnn="lstm")) > training_flops_per_audio_second(cfg)
