"""`asr bench`: speed, latency, memory, throughput and accuracy of the recognizer, all in one run.

Every ratio in the table (int8 vs fp32, GRU vs LSTM, ours vs PocketSphinx, training FLOP/s vs the
machine's GEMM ceiling) is measured in the same process run on the same audio, so background
load shifts the numbers together. Rerun with the same command to compare machines or commits;
`--json FILE` keeps the raw numbers.

Usage: `asr bench [--model PATH] [--audio FILES...] [--seconds 30] [--int8] [--quick]`
       (also `python -m asr.bench ...`).
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..features import SAMPLE_RATE, LogMel, StreamingLogMel
from ..model import AcousticModel, ModelConfig
from ..utils import cpuinfo_field

CHUNK_MS = (40, 80, 160, 320)
GRU, INT8, LSTM, PS = "GRU fp32", "GRU int8", "LSTM fp32", "PocketSphinx"
SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"
# Spoken when no audio is given and no bundled samples exist (espeak-ng).
FALLBACK_SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "open the door please and turn left at the next light",
    "we walked home in the rain after the long meeting",
    "a bright red apple fell from the tree into the grass",
]


@dataclass
class Row:
    section: str
    name: str
    unit: str
    values: dict[str, float] = field(default_factory=dict)  # column -> value
    note: str = ""


@dataclass
class BenchResult:
    title: str
    columns: list[str]
    rows: list[Row]
    machine: dict[str, Any]
    targets: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


@dataclass
class BenchOptions:
    model: Optional[str] = None
    audio: list[str] = field(default_factory=list)
    seconds: float = 30.0
    quick: bool = False
    int8: bool = False
    lstm: bool = True
    pocketsphinx: bool = True
    eval_data: list[str] = field(default_factory=list)
    workers: int = 2
    lm: Optional[str] = None  # also time beam search with this word LM


# ---------------------------------------------------------------- audio and models


def bench_audio(files: Sequence[str], seconds: float) -> tuple[np.ndarray, list[np.ndarray], str]:
    """(~`seconds` of concatenated audio, the source utterances, description).

    Concatenating (cyclically) to a fixed length makes runs comparable whatever the sources are.
    """
    from ..audio import load_audio

    paths = list(files) or sorted(glob.glob(str(SAMPLES_DIR / "*.wav")))
    if paths:
        utts = [load_audio(p) for p in paths]
        source = f"{len(paths)} file(s)" if files else f"{len(paths)} bundled samples"
    else:
        utts = [_espeak(s) for s in FALLBACK_SENTENCES]
        source = "espeak-ng speech"
    utts = [u for u in utts if len(u)]
    if not utts:
        raise ValueError("no usable audio for the benchmark")
    need = int(seconds * SAMPLE_RATE)
    pieces, total, i = [], 0, 0
    while total < need:
        pieces.append(utts[i % len(utts)])
        total += len(pieces[-1])
        i += 1
    return np.concatenate(pieces)[:need].astype(np.float32), utts, source


def _espeak(text: str) -> np.ndarray:
    import subprocess
    import tempfile

    from ..audio import load_audio

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        try:
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit(f"asr: error: no audio given, no bundled samples, and espeak-ng failed ({e}); "
                             "pass --audio FILE...") from None
        return load_audio(wav)


def load_bench_model(path: Optional[str]) -> tuple[AcousticModel, str]:
    """The given model, else the bundled one, else random weights (speed numbers are still valid)."""
    from ..model import DEFAULT_MODEL
    from .common import command_model

    if path is None and not DEFAULT_MODEL.exists():
        torch.manual_seed(0)
        return AcousticModel(ModelConfig()).eval(), "random-init default ModelConfig (no bundled model; WER meaningless)"
    model = command_model(path)
    return model, str(path or DEFAULT_MODEL)


def lstm_twin(model: AcousticModel) -> AcousticModel:
    """Same layers/hidden/stack/vocab with LSTM cells; random weights (speed comparison only)."""
    cfg = ModelConfig(**{**asdict(model.config), "rnn": "lstm"})
    torch.manual_seed(0)
    twin = AcousticModel(cfg).eval()
    twin.normalizer.load_state_dict(model.normalizer.state_dict())
    return twin


def serialized_mb(model: torch.nn.Module) -> float:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1e6


# ---------------------------------------------------------------- measurements


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def stream_timings(model: AcousticModel, audio: np.ndarray, chunk_ms: float) -> tuple[float, list[float]]:
    """(RTF, per-chunk latencies in s) of `StreamingRecognizer.accept` (features + model + greedy)."""
    from ..streaming import StreamingRecognizer

    rec = StreamingRecognizer(model)
    step = max(1, int(SAMPLE_RATE * chunk_ms / 1000))
    for i in range(0, min(len(audio), 10 * step), step):  # warm-up: allocator, kernels, caches
        rec.accept(audio[i:i + step])
    rec.reset()
    lat = []
    start = time.perf_counter()
    for i in range(0, len(audio), step):
        t = time.perf_counter()
        rec.accept(audio[i:i + step])
        lat.append(time.perf_counter() - t)
    rec.finish()
    return (time.perf_counter() - start) / (len(audio) / SAMPLE_RATE), lat


def pocketsphinx_timings(audio: np.ndarray, chunk_ms: Optional[float]) -> tuple[float, list[float]]:
    """(RTF, per-chunk latencies) of PocketSphinx's default en-us models; chunk_ms None = whole utterance.

    end_utt() (its final passes) is included in the RTF, as our finish() is in ours.
    """
    decoder = _ps_decoder()
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    lat = []
    start = time.perf_counter()
    decoder.start_utt()
    if chunk_ms is None:
        decoder.process_raw(pcm, False, True)
    else:
        step = 2 * max(1, int(SAMPLE_RATE * chunk_ms / 1000))
        for i in range(0, len(pcm), step):
            t = time.perf_counter()
            decoder.process_raw(pcm[i:i + step], False, False)
            lat.append(time.perf_counter() - t)
    decoder.end_utt()
    return (time.perf_counter() - start) / (len(audio) / SAMPLE_RATE), lat


_PS_DECODER = None


def _ps_decoder():
    global _PS_DECODER
    if _PS_DECODER is None:  # loading the LM/dictionary takes ~1 s; it is not what we measure
        from pocketsphinx import Decoder

        _PS_DECODER = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
    return _PS_DECODER


def timed(fn: Callable[[], Any], min_seconds: float) -> float:
    """Seconds per call: best of repeated rounds, each at least `min_seconds` long."""
    fn()
    best = math.inf
    for _ in range(3):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / n)
    return best


def gemm_flops(m: int, k: int, n: int, threads: int, min_seconds: float) -> float:
    """Measured FLOP/s of an (m x k) @ (k x n) fp32 matmul on `threads` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        return 2 * m * k * n / timed(lambda: torch.mm(a, b, out=out), min_seconds)
    finally:
        torch.set_num_threads(previous)


def training_flops_per_audio_second(cfg: ModelConfig) -> float:
    """Analytical FLOPs of one training pass (forward + backward = 3x forward) per second of audio.

    Per output step: input projection 2*(stack*n_mels*(1+lookahead))*H; per RNN layer gates x 2 matmuls
    (input and recurrent) x 2*H*H (3 gates for GRU, 4 for LSTM); CTC head 2*H*V.
    Elementwise gate math, log-mel and CTC are not counted (small, and not GEMM work).
    """
    h = cfg.hidden
    gates = {"gru": 3, "lstm": 4}[cfg.rnn]
    per_step = (2 * cfg.stack * cfg.n_mels * (1 + cfg.lookahead) * h + cfg.layers * gates * 2 * 2 * h * h
                + 2 * h * len(cfg.vocab))
    return 3 * per_step / (0.01 * cfg.stack)


def synthetic_batch(audio: np.ndarray, utterances: int, seconds: float, vocab_size: int) -> dict:
    """A padded-to-equal-length training batch cut from the bench audio, with random targets of a
    realistic length (~12 characters per second, LibriSpeech's rate)."""
    n = int(seconds * SAMPLE_RATE)
    reps = int(math.ceil((utterances * n) / len(audio))) + 1
    long = np.tile(audio, reps)
    g = torch.Generator().manual_seed(0)
    waves = torch.stack([torch.from_numpy(long[i * n:(i + 1) * n].copy()) for i in range(utterances)])
    target_len = max(1, int(12 * seconds))
    return {
        "waveforms": waves,
        "waveform_lengths": torch.full((utterances,), n, dtype=torch.long),
        "targets": torch.randint(1, vocab_size, (utterances, target_len), generator=g),
        "target_lengths": torch.full((utterances,), target_len, dtype=torch.long),
    }


def train_throughput(cfg: ModelConfig, batch: dict, threads: int, steps: int, bf16: bool = False) -> float:
    """Audio seconds per second of full training steps (log-mel + forward + CTC + backward + AdamW);
    bf16 runs the forward under CPU autocast, as `asr train --precision bf16` does."""
    from ..training.train import ctc_loss

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = AcousticModel(cfg).train()
        logmel = LogMel(cfg.n_mels)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = ctc_loss(model, logmel, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        step()  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            step()
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    audio_seconds = float(batch["waveform_lengths"].sum()) / SAMPLE_RATE
    return audio_seconds * steps / elapsed


def _batch_worker(ckpt: dict, variants: list[bool], waves: list[np.ndarray], barrier: Any, results: Any) -> None:
    """One transcription process on one thread: per variant (int8 or not) warm up, wait for the
    other workers, transcribe every wave."""
    torch.set_num_threads(1)
    from ..model import quantize
    from ..transcribe import transcribe

    fp32 = AcousticModel.from_checkpoint(ckpt)
    for int8 in variants:
        model = quantize(fp32) if int8 else fp32
        transcribe(model, waves[0][: SAMPLE_RATE])
        barrier.wait()
        start = time.monotonic()
        for w in waves:
            transcribe(model, w)
        end = time.monotonic()
        maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.put((int8, sum(len(w) for w in waves) / SAMPLE_RATE, start, end, maxrss_mb))


def batch_throughput(model: AcousticModel, waves: list[np.ndarray], workers: int,
                     variants: list[bool]) -> tuple[dict[bool, float], float]:
    """({int8: audio seconds per wall second}, peak RSS MB of a worker) with `workers` one-thread
    processes, each transcribing all `waves` (processes, not threads: no GIL, like a real batch job).
    The workers are started once and run the variants in turn (spawning costs seconds)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    ckpt = model.checkpoint()
    procs = [ctx.Process(target=_batch_worker, args=(ckpt, variants, waves, barrier, results))
             for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=900) for _ in range(workers * len(variants))]
    finally:
        for p in procs:
            p.join(timeout=30)
    speed = {}
    for v in variants:
        mine = [o for o in out if o[0] == v]
        speed[v] = sum(o[1] for o in mine) / (max(o[3] for o in mine) - min(o[2] for o in mine))
    return speed, max(o[4] for o in out)


# ---------------------------------------------------------------- the run


def machine_info() -> dict[str, Any]:
    cpu = cpuinfo_field("model name") or platform.processor() or platform.machine()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "quantized_engine": torch.backends.quantized.engine, "load_avg_start": list(os.getloadavg())}


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda s: None) -> BenchResult:
    """Measures everything (see the module docstring); the caller's torch thread count is restored."""
    threads = torch.get_num_threads()
    try:
        return _run_bench(opts, log)
    finally:
        torch.set_num_threads(threads)


def _run_bench(opts: BenchOptions, log: Callable[[str], None]) -> BenchResult:
    from ..decoding import GreedyDecoder
    from ..transcribe import batch_logits

    quick = opts.quick
    seconds = min(opts.seconds, 3.0) if quick else opts.seconds
    torch.set_num_threads(1)  # streaming is measured on ONE core
    machine = machine_info()
    model, model_desc = load_bench_model(opts.model)
    audio, utts, source = bench_audio(opts.audio, seconds)
    duration = len(audio) / SAMPLE_RATE
    models: dict[str, AcousticModel] = {GRU: model}
    if opts.int8:
        from ..model import quantize

        models[INT8] = quantize(model)
    if opts.lstm:
        models[LSTM] = lstm_twin(model)
    columns = list(models) + ([PS] if opts.pocketsphinx else [])
    rows: list[Row] = []

    def add(section: str, name: str, unit: str, values: dict[str, float], note: str = "") -> None:
        rows.append(Row(section, name, unit, {k: float(v) for k, v in values.items()}, note))

    add("model", "parameters", "M", {k: m.num_parameters() / 1e6 for k, m in models.items() if k != INT8},
        f"{model.config.layers}x{model.config.hidden} {model.config.rnn}; LSTM twin has random weights")
    add("model", "weights, serialized", "MB", {k: serialized_mb(m) for k, m in models.items()})

    # Streaming, one thread: real-time factor and per-chunk compute latency.
    lat_rows: dict[tuple[int, str], dict[str, float]] = {}
    for ms in CHUNK_MS:
        rtf: dict[str, float] = {}
        for name, m in models.items():
            log(f"streaming {name} {ms} ms")
            rtf[name], lat = stream_timings(m, audio, ms)
            for q in (50, 95, 99):
                lat_rows.setdefault((ms, f"p{q}"), {})[name] = 1000 * percentile(lat, q)
        if opts.pocketsphinx:
            log(f"pocketsphinx {ms} ms")
            rtf[PS], lat = pocketsphinx_timings(audio, ms)
            for q in (50, 95, 99):
                lat_rows.setdefault((ms, f"p{q}"), {})[PS] = 1000 * percentile(lat, q)
        add("streaming, 1 thread", f"RTF, {ms} ms chunks", "x", rtf, "compute s / audio s; lower is better")
    for ms in CHUNK_MS:
        for q in ("p50", "p95", "p99"):
            add("streaming, 1 thread", f"chunk latency {q}, {ms} ms chunks", "ms", lat_rows[(ms, q)],
                "features+model+greedy per accept()" if q == "p99" else "")
    if opts.pocketsphinx:
        for ms in CHUNK_MS:
            r = next(r for r in rows if r.name == f"RTF, {ms} ms chunks").values
            add("streaming, 1 thread", f"PocketSphinx RTF / ours, {ms} ms", "x",
                {k: r[PS] / v for k, v in r.items() if k != PS}, "how many times faster than PocketSphinx")

    # Whole-utterance (batch) pass, one thread.
    whole: dict[str, float] = {}
    logmel = LogMel(model.config.n_mels)
    min_s = 0.05 if quick else 1.0
    for name, m in models.items():
        whole[name] = timed(lambda m=m: batch_logits(m, audio, logmel), min_s) / duration
    if opts.pocketsphinx:
        whole[PS] = pocketsphinx_timings(audio, None)[0]
    add("whole utterance, 1 thread", "RTF, whole utterance", "x", whole, "one pass over the audio")

    # Components, one thread (model-independent front end; decoding on the real model's logits).
    feats_stream = StreamingLogMel(logmel)
    step = int(0.16 * SAMPLE_RATE)

    def stream_features() -> None:
        feats_stream.reset()
        for i in range(0, len(audio), step):
            feats_stream.accept(torch.from_numpy(audio[i:i + step]))

    wave = torch.from_numpy(audio)
    add("components, 1 thread", "log-mel features, 160 ms chunks", "RTF",
        {GRU: timed(stream_features, min_s) / duration}, "front end alone, same for every model")
    add("components, 1 thread", "log-mel features, whole utterance", "RTF",
        {GRU: timed(lambda: logmel(wave), min_s) / duration}, "front end alone")
    logits = batch_logits(model, audio, logmel)
    greedy = GreedyDecoder(model.config.vocab)

    def decode_greedy() -> None:
        greedy.reset()
        for i in range(0, logits.shape[0], 5):  # 5 steps = 150 ms pieces, as streaming feeds it
            greedy.accept(logits[i:i + 5])

    add("components, 1 thread", "greedy CTC decoding", "RTF", {GRU: timed(decode_greedy, min_s) / duration})
    try:
        from ..decoding import beam_decode_speed
    except ImportError as e:
        add("components, 1 thread", "beam CTC decoding", "RTF", {}, f"skipped: {e}"[:120])
    else:
        beams = (8,) if quick else (8, 32, 128, 512, 1024)
        for lm in [None] + ([opts.lm] if opts.lm else []):
            speed = beam_decode_speed(logits, model.config.vocab, model.frame_shift, beam_sizes=beams, lm=lm,
                                      repeats=1 if quick else 3)
            for size, rtf in speed.items():
                add("components, 1 thread", f"beam search, beam {size}" + (", word LM" if lm else ", no LM"),
                    "RTF", {GRU: rtf}, f"search only; LM {Path(lm).name}" if lm else "search only, lexicon-free")

    # Batch transcription on all cores (one single-thread process per core).
    batch_waves = utts if not quick else [u[: 2 * SAMPLE_RATE] for u in utts[:2]]
    log("batch throughput")
    speed, worker_rss = batch_throughput(model, batch_waves, opts.workers, [False] + ([True] if INT8 in models else []))
    add(f"batch, {opts.workers} processes", "transcription throughput", "audio s/s",
        {INT8 if int8 else GRU: v for int8, v in speed.items()},
        f"{opts.workers} one-thread processes x {len(batch_waves)} files")
    add("memory", "peak RSS, batch worker process", "MB", {GRU: worker_rss},
        "ru_maxrss incl. torch import" + (", fp32 + int8 models loaded" if INT8 in models else ""))

    # Training throughput vs the machine's GEMM ceiling, same run.
    utt_n, utt_s, train_steps = (2, 1.0, 1) if quick else (16, 10.0, 3)  # 160 padded s = the default batch
    batch = synthetic_batch(audio, utt_n, utt_s, len(model.config.vocab))
    gemm_n = 256 if quick else 1024
    ceiling = {t: gemm_flops(gemm_n, gemm_n, gemm_n, t, 0.05 if quick else 0.5) for t in (1, 2)}
    h = model.config.hidden
    recurrent = {t: gemm_flops(utt_n, h, 3 * h, t, 0.05 if quick else 0.5) for t in (1, 2)}
    for t in (1, 2):
        add("training", f"GEMM ceiling {gemm_n}^3 fp32, {t} thread(s)", "GFLOP/s", {GRU: ceiling[t] / 1e9},
            "torch.mm, measured now")
        add("training", f"recurrent-shaped GEMM ({utt_n}x{h} @ {h}x{3 * h}), {t} thread(s)", "GFLOP/s",
            {GRU: recurrent[t] / 1e9}, "one GRU step's hidden matmul")
    for t in (1, 2):
        speed, frac = {}, {}
        for name in (GRU, LSTM):
            if name in models:
                log(f"training {name} {t} thread(s)")
                cfg = models[name].config
                speed[name] = train_throughput(cfg, batch, t, train_steps)
                frac[name] = 100 * speed[name] * training_flops_per_audio_second(cfg) / ceiling[t]
        add("training", f"training throughput, {t} thread(s)", "audio s/s", speed,
            f"batch {utt_n} x {utt_s:g} s, CTC + AdamW")
        add("training", f"fraction of GEMM ceiling, {t} thread(s)", "%", frac,
            "analytical GEMM FLOPs (fwd+bwd = 3x fwd) / ceiling")
    log("training GRU bf16 autocast, 1 thread")
    add("training", "training throughput, bf16 autocast, 1 thread", "audio s/s",
        {GRU: train_throughput(model.config, batch, 1, train_steps, bf16=True)},
        "asr train --precision bf16; compare with the fp32 row above")

    if opts.eval_data:
        from ..training.evaluate import evaluate

        wer, cer = {}, {}
        for name in (GRU, INT8):
            if name in models:
                log(f"evaluating {name}")
                result = evaluate(models[name], opts.eval_data)
                rates = result.rates() if hasattr(result, "rates") else result  # Evaluation or ErrorRates
                wer[name], cer[name] = 100 * rates.wer, 100 * rates.cer
        add("accuracy", "WER", "%", wer, f"{', '.join(opts.eval_data)} ({rates.utterances} utts), greedy")
        add("accuracy", "CER", "%", cer)

    add("memory", "peak RSS, this bench process", "MB",
        {GRU: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, "ru_maxrss; all models + PocketSphinx")
    machine["load_avg_end"] = list(os.getloadavg())
    title = (f"asr bench — {model_desc} — {duration:.1f} s audio ({source})" + (" — QUICK" if quick else ""))
    result = BenchResult(title, columns, rows, machine)
    result.targets = check_targets(result)
    return result


def check_targets(result: BenchResult) -> list[str]:
    """The project's speed targets, stated as met / not met from this run's numbers."""
    col = INT8 if INT8 in result.columns else GRU
    lines = []
    for ms in CHUNK_MS:
        rtf = result.row(f"RTF, {ms} ms chunks").values
        p99 = result.row(f"chunk latency p99, {ms} ms chunks").values[col]
        parts = [f"RTF {rtf[col]:.4f} {'<=' if rtf[col] <= 0.02 else '>'} 0.02",
                 f"p99 {p99:.2f} ms {'<' if p99 < ms / 10 else '>='} {ms / 10:g} ms"]
        met = rtf[col] <= 0.02 and p99 < ms / 10
        if PS in rtf:
            speedup = rtf[PS] / rtf[col]
            parts.append(f"{speedup:.1f}x faster than PocketSphinx {'>=' if speedup >= 10 else '<'} 10x")
            met = met and speedup >= 10
        lines.append(f"{col}, {ms} ms chunks: {'MET' if met else 'NOT MET'} ({'; '.join(parts)})")
    return lines


# ---------------------------------------------------------------- output


def fmt(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def render(result: BenchResult):
    from rich.table import Table

    table = Table(title=result.title, title_justify="left")
    table.add_column("section", style="dim")
    table.add_column("measurement")
    table.add_column("unit")
    for c in result.columns:
        table.add_column(c, justify="right")
    table.add_column("note", style="dim")
    section = None
    for r in result.rows:
        if section is not None and r.section != section:
            table.add_section()
        table.add_row(r.section if r.section != section else "", r.name, r.unit,
                      *(fmt(r.values.get(c)) for c in result.columns), r.note)
        section = r.section
    m = result.machine
    table.caption = (f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['quantized_engine']}), "
                     f"load avg {m['load_avg_start'][0]:.2f} -> {m['load_avg_end'][0]:.2f}")
    return table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model checkpoint (default: bundled; random weights if there is none)")
    p.add_argument("--audio", nargs="+", default=[], metavar="FILE",
                   help="audio files (default: assets/samples/*.wav, else espeak-ng speech)")
    p.add_argument("--seconds", type=float, default=30.0, help="concatenate the audio to this length (default 30)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run (tests); numbers are rough")
    p.add_argument("--int8", action="store_true", help="also measure the int8 dynamically quantized model")
    p.add_argument("--no-lstm", dest="lstm", action="store_false", help="skip the LSTM comparison")
    p.add_argument("--no-pocketsphinx", dest="pocketsphinx", action="store_false",
                   help="skip the PocketSphinx comparison")
    p.add_argument("--eval-data", nargs="+", default=[], metavar="DIR",
                   help="labelled corpus (LibriSpeech layout or manifest): WER fp32 (and int8)")
    p.add_argument("--workers", type=int, default=2, help="processes for batch throughput (default 2)")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers as JSON")
    p.add_argument("--lm", metavar="ARPA", help="also time beam search with this word LM")
    p.add_argument("--serve", action="store_true",
                   help="instead: load-test `asr serve` with N = 1, 10, 50, 100, 200 real-time streams (docs/server.md)")
    p.add_argument("--streams", type=int, nargs="+", help="with --serve: these stream counts instead")
    p.add_argument("--batch", nargs="+", metavar="SOURCE",
                   help="instead: `asr transcribe` throughput over these files/folders/jsonl manifests with 1, 2 and "
                        "all-cores worker processes and a 2-worker local Ray instance (docs/batch.md)")
    p.add_argument("--batch-every", type=int, default=1, metavar="K", help="with --batch: every K-th file only")
    p.add_argument("--batch-jobs", type=int, nargs="+", metavar="N", help="with --batch: these process counts")
    p.add_argument("--batch-ray", type=int, default=2, metavar="N",
                   help="with --batch: Ray workers (0: skip Ray; skipped too when Ray is not installed)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..audio import AudioError

    if args.serve:
        from .serve_bench import STREAMS, run_serve_bench

        run_serve_bench(args.streams or STREAMS, model=args.model)
        return 0
    if args.batch:
        from .batch import run_benchmark

        return run_benchmark(args)

    opts = BenchOptions(model=args.model, audio=args.audio, seconds=args.seconds, quick=args.quick, int8=args.int8,
                        lstm=args.lstm, pocketsphinx=args.pocketsphinx, eval_data=args.eval_data,
                        workers=args.workers, lm=args.lm)
    err = Console(stderr=True)
    try:
        result = run_bench(opts, log=lambda s: err.print(f"[dim]bench: {s}[/dim]"))
    except (ValueError, OSError, AudioError) as e:
        print(f"asr: error: {e}", file=sys.stderr)
        return 1
    # Wide enough that the table is not wrapped when redirected to a file.
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(render(result))
    for line in result.targets:
        console.print(f"target: {line}", highlight=False)
    if args.json:
        Path(args.json).write_text(result.to_json())
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asr.bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
