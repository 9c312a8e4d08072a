"""Soak benchmark: an hour of audio through the live recognizer and through `asr serve`; does anything grow?

    python -m asr.apps.soak                       # 1 h each part (default decoding: beam search + bundled LM)
    python -m asr.apps.soak --seconds 120 --no-lm # a quick look

Audio: the load generator's tape (asr.apps.serve_bench.load_tape: the bundled samples and real-speech dev
clips with short pauses) plus 10 s of quiet noise and 5 s of digital silence, repeated, so every endpoint
rule fires and the digital-silence skip is used.

- recognizer: `LiveTranscriber` (resampling from --rate, endpointing, state reset at each endpoint, as
  `asr listen` runs it), fed --chunk-ms blocks as fast as it takes them (faster than real time). Latency of a
  chunk = the time `accept` took on it.
- server: `asr serve` in its own process; --streams WebSocket clients (serve_bench's client) send the tape
  paced at --speed x real time: stream 1 is one connection for all of its audio, the others reconnect
  every --session-seconds of audio (connection churn). Latency of a chunk = from its send to the first
  result covering its last sample. A fixed pace (not as fast as possible) keeps latency meaning processing,
  not queueing; the send lag column says whether the clients kept the pace.

RSS (Linux /proc) is sampled every --sample-every seconds of audio; growth is reported from the first
sample after --warmup seconds of audio (allocator pools, lazy initialization) to the end, and from the start.
Targets (issue #21): growth under 20 MB; latency in the last minute equal to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..features import SAMPLE_RATE


def rss_mb(pid: Optional[int] = None) -> float:
    """Resident memory of a process (default: this one), in MB (Linux)."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def anon_mb(pid: Optional[int] = None) -> float:
    """Its anonymous resident memory (heap, no file-backed pages), in MB (Linux). Total RSS also counts the
    pages of mmapped files as they are touched (the KenLM binary is mmapped), which is bounded by the file
    size; a leak shows here."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class SoakResult:
    name: str
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (audio seconds, MB)
    anon: list[tuple[float, float]] = field(default_factory=list)  # (audio seconds, MB) anonymous
    first_minute: list[float] = field(default_factory=list)  # chunk latencies, seconds
    last_minute: list[float] = field(default_factory=list)
    utterances: int = 0
    notes: str = ""
    warmup: float = 60.0

    def sample(self, audio: float, pid: Optional[int] = None) -> None:
        self.rss.append((audio, rss_mb(pid)))
        self.anon.append((audio, anon_mb(pid)))

    def growth(self, series: Optional[list] = None) -> tuple[float, float, float]:
        """(MB after warm-up, MB at the end, peak MB after warm-up)."""
        series = self.rss if series is None else series
        after = [mb for t, mb in series if t >= self.warmup] or [series[-1][1]]
        return after[0], series[-1][1], max(after)


def soak_tape(data: Optional[str], seed: int = 0) -> np.ndarray:
    from .serve_bench import load_tape

    rng = np.random.default_rng(seed)
    quiet = (rng.standard_normal(10 * SAMPLE_RATE) * 1e-3).astype(np.float32)
    return np.concatenate([load_tape(data, seed=seed), quiet, np.zeros(5 * SAMPLE_RATE, np.float32)])


def _pct(values: Sequence[float], q: float) -> float:
    return 1000 * float(np.percentile(values, q)) if len(values) else float("nan")


def soak_recognizer(model, decoder, tape16: np.ndarray, seconds: float, rate: int = 48000, chunk_ms: float = 100,
                    sample_every: float = 60.0, warmup: float = 60.0, log=print) -> SoakResult:
    from ..audio import resample
    from ..streaming import LiveTranscriber

    tape = resample(tape16, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else tape16
    live = LiveTranscriber(model, rate, decoder=decoder)
    chunk = max(1, int(rate * chunk_ms / 1000))
    per_minute = int(60 * 1000 / chunk_ms)
    result = SoakResult("recognizer (LiveTranscriber)", warmup=warmup)
    result.sample(0.0)
    latencies: list[float] = []
    reasons: dict[str, int] = {}
    fed, position, next_sample = 0, 0, sample_every
    start = time.perf_counter()
    while fed < seconds * rate:
        block = tape[position:position + chunk]
        if block.size < chunk:
            block = np.concatenate([block, tape[:chunk - block.size]])
        position = (position + chunk) % tape.size
        t0 = time.perf_counter()
        _, finals = live.accept(block)
        latencies.append(time.perf_counter() - t0)
        if len(latencies) > per_minute:  # keep the first minute and a sliding last minute only
            if not result.first_minute:
                result.first_minute = latencies[:per_minute]
            latencies = latencies[-per_minute:]
        for f in finals:
            reasons[f.reason] = reasons.get(f.reason, 0) + 1
        fed += chunk
        if fed / rate >= next_sample:
            result.sample(fed / rate)
            log(f"soak: recognizer {fed / rate / 60:5.1f} min: RSS {result.rss[-1][1]:.1f} MB, "
                f"{live.utterances} utterances, last-minute chunk p99 {_pct(latencies, 99):.1f} ms")
            next_sample += sample_every
    for f in live.finish():
        reasons[f.reason] = reasons.get(f.reason, 0) + 1
    result.wall_seconds = time.perf_counter() - start
    result.audio_seconds = fed / rate
    result.sample(result.audio_seconds)
    result.first_minute = result.first_minute or latencies
    result.last_minute = latencies
    result.utterances = live.utterances
    result.notes = (f"{rate} Hz input in {chunk_ms:g} ms chunks, fed as fast as processed; endpoints: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
                    + f"; digital silence skipped {live.skipped:.0f} s")
    return result


def soak_server(server_args: Sequence[str], tape16: np.ndarray, seconds: float, streams: int = 2,
                speed: float = 4.0, session_seconds: float = 300.0, chunk_ms: float = 100, rate: int = 16000,
                sample_every: float = 60.0, warmup: float = 60.0, log=print) -> SoakResult:
    """`seconds` of audio per stream, `streams` clients paced at `speed` x real time."""
    import aiohttp

    from .serve_bench import ServerProcess, encode, one_stream

    tape = encode(tape16, rate, "s16le")
    chunk_bytes = max(1, int(rate * chunk_ms / 1000)) * 2
    chunk_seconds = chunk_ms / 1000 / speed
    per_minute = int(60 * 1000 / chunk_ms)
    server = ServerProcess(["--max-stream-seconds", str(seconds + 600), "--max-streams", str(streams + 2),
                            "--idle-timeout", "120", *server_args])
    result = SoakResult(f"server (asr serve, {streams} streams at {speed:g}x real time)", warmup=warmup)
    stop = threading.Event()
    start = time.perf_counter()

    def sampler() -> None:  # RSS of the server process, against the audio one stream has sent
        next_sample = 0.0
        while not stop.wait(0.5):
            audio = (time.perf_counter() - start) * speed
            if audio >= next_sample:
                result.sample(audio, server.proc.pid)
                if next_sample:
                    log(f"soak: server {audio / 60:5.1f} min per stream: RSS {result.rss[-1][1]:.1f} MB")
                next_sample += sample_every

    async def client(k: int) -> list:
        results = []
        rng = np.random.default_rng(k)
        done = 0.0
        async with aiohttp.ClientSession() as session:
            while done < seconds:
                length = seconds - done if k == 0 else min(session_seconds, seconds - done)
                offset = int(rng.integers(0, len(tape) // 2)) * 2
                results.append(await one_stream(session, server.url, tape, offset, int(length * rate) * 2,
                                                chunk_bytes, chunk_seconds, 0.0, rate, "s16le"))
                done += length
        return results

    async def run_all() -> list[list]:
        return await asyncio.gather(*(client(k) for k in range(streams)))

    thread = threading.Thread(target=sampler, daemon=True)
    try:
        result.sample(0.0, server.proc.pid)
        thread.start()
        per_client = asyncio.run(run_all())
    finally:
        stop.set()
        thread.join(5)
        if server.proc.poll() is None:
            result.sample(seconds, server.proc.pid)
        server.stop()
    result.wall_seconds = time.perf_counter() - start
    result.audio_seconds = seconds * streams
    long_stream = per_client[0][0]
    result.first_minute = long_stream.latencies[:per_minute]
    result.last_minute = long_stream.latencies[-per_minute:]
    sessions = [r for rs in per_client for r in rs]
    lag = [x for r in sessions for x in r.send_lag]
    errors = sorted({r.error for r in sessions if r.error})
    dropped, refused = sum(r.dropped for r in sessions), sum(r.refused for r in sessions)
    result.notes = (f"{rate} Hz s16le in {chunk_ms:g} ms messages; {len(sessions)} connections "
                    f"(1 for all of its audio, the others every {session_seconds:g} s of audio); latency columns: "
                    f"that long stream; send lag p99 {_pct(lag, 99):.0f} ms; dropped {dropped}, refused {refused}"
                    + (f"; errors: {', '.join(errors)}" if errors else ""))
    return result


def render(results: Sequence[SoakResult]) -> str:
    lines = ["| part | audio | wall | RSS after warm-up → end (growth; from start) | anonymous RSS after warm-up → "
             "end (growth) | latency first minute p50 / p99 ms | last minute p50 / p99 ms | utterances |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        warm, end, _ = r.growth()
        awarm, aend, _ = r.growth(r.anon)
        lines.append(f"| {r.name} | {r.audio_seconds / 60:.0f} min | {r.wall_seconds / 60:.1f} min "
                     f"| {warm:.1f} → {end:.1f} MB ({end - warm:+.1f}; {end - r.rss[0][1]:+.1f}) "
                     f"| {awarm:.1f} → {aend:.1f} MB ({aend - awarm:+.1f}) "
                     f"| {_pct(r.first_minute, 50):.1f} / {_pct(r.first_minute, 99):.1f} "
                     f"| {_pct(r.last_minute, 50):.1f} / {_pct(r.last_minute, 99):.1f} | {r.utterances or '-'} |")
    for r in results:
        lines.append(f"\n{r.name}: {r.notes}\n  RSS (anonymous) MB by audio minute: "
                     + ", ".join(f"{t / 60:.1f}: {mb:.1f} ({a:.1f})" for (t, mb), (_, a) in zip(r.rss, r.anon)))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_decoder_arguments

    p.add_argument("--seconds", type=float, default=3600.0, help="audio per part (per server stream); default 1 h")
    p.add_argument("--parts", nargs="+", choices=("recognizer", "server"), default=["recognizer", "server"])
    p.add_argument("--model", help="model checkpoint (default: bundled)")
    p.add_argument("--chunk-ms", type=float, default=100.0)
    p.add_argument("--rate", type=int, default=48000, help="recognizer input rate (resampled in the stream)")
    p.add_argument("--streams", type=int, default=2, help="server: concurrent WebSocket clients (default 2)")
    p.add_argument("--speed", type=float, default=4.0, help="server: clients send at this x real time (default 4)")
    p.add_argument("--session-seconds", type=float, default=300.0,
                   help="server: audio per connection of the reconnecting clients (default 300)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads, here and in the server (default 1: steady numbers on a shared machine)")
    p.add_argument("--sample-every", type=float, default=60.0, help="RSS sample interval, seconds of audio")
    p.add_argument("--warmup", type=float, default=60.0, help="growth is measured from this much audio on")
    p.add_argument("--data", help="jsonl manifest of recordings for the tape (default: serve_bench's)")
    add_decoder_arguments(p, hotwords=False)


def run(args: argparse.Namespace) -> int:
    import torch

    from .common import chosen_lm, command_decoder, command_model

    torch.set_num_threads(args.threads)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    load = os.getloadavg()
    tape = soak_tape(args.data)
    results = []
    if "recognizer" in args.parts:
        model = command_model(args.model)
        decoder = command_decoder(model, args)
        results.append(soak_recognizer(model, decoder, tape, args.seconds, args.rate, args.chunk_ms,
                                       args.sample_every, args.warmup, log))
    if "server" in args.parts:
        lm = chosen_lm(args)
        server_args = ["--threads", str(args.threads)] + (["--model", args.model] if args.model else []) \
            + (["--lm", lm] if lm else ["--no-lm"]) + (["--beam-size", str(args.beam_size)] if args.beam_size else [])
        results.append(soak_server(server_args, tape, args.seconds, args.streams, args.speed, args.session_seconds,
                                   args.chunk_ms, sample_every=args.sample_every, warmup=args.warmup, log=log))
    after = os.getloadavg()
    print(f"{os.cpu_count()} CPUs; load average {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} before, {after[0]:.2f}, "
          f"{after[1]:.2f}, {after[2]:.2f} after (1, 5, 15 min); tape {len(tape) / SAMPLE_RATE / 60:.1f} min, "
          f"repeated; decoder: {'beam search + ' + str(chosen_lm(args)) if chosen_lm(args) else 'greedy'}; "
          f"torch threads {args.threads}\n")
    print(render(results), flush=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asr.apps.soak", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
