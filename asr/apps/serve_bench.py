"""Load generator and benchmark for `asr serve`: N concurrent real-time streams of real recordings.

    python -m asr.apps.serve_bench [--streams 1 10 50 100 200] [--seconds 20]   # prints a markdown table

It starts `python -m asr.apps.serve` on a free loopback port (or uses --url), then for each N opens N
WebSocket streams that each send `--chunk-ms` blocks at real-time pace (stream starts spread over the
first second), then eof, and stop by themselves. Audio: the bundled samples (assets/samples/*.wav) and,
where present, the real-speech dev clips (--data, a jsonl manifest), joined with short pauses into one
tape that each stream reads from its own random offset.

Latency of a chunk: from just before its `send_bytes` to the arrival of the first partial or final whose
`samples` (client samples the recognizer has consumed; the server echoes it in every partial and final)
covers the chunk's last sample, i.e. the first result computed with every model step that chunk
completed. Streams ask for `"partials": "always"` so every step that consumed audio answers, text
changed or not (more messages than the default, so a conservative load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TextIO

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "assets" / "samples"
DEV_MANIFEST = Path("/work/shared/data/realspeech/dev.jsonl")  # used when present (see --data)
STREAMS = (1, 10, 50, 100, 200)


@dataclass
class StreamResult:
    latencies: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)  # how late the generator sent each chunk
    refused: bool = False
    dropped: bool = False  # connected, but ended without its "end" message (error or lost connection)
    error: str = ""


def load_tape(data: Optional[str], max_clips: int = 80, seed: int = 0) -> np.ndarray:
    """16 kHz speech: the bundled samples and up to `max_clips` manifest clips, with 0.3-0.9 s pauses."""
    from ..audio import AudioError, load_audio

    paths = sorted(SAMPLES.glob("*.wav"))
    manifest = Path(data) if data else (DEV_MANIFEST if DEV_MANIFEST.exists() else None)
    if manifest is not None:
        rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
        rng = np.random.default_rng(seed)
        # Sentences rather than 1-word commands: Common Voice first, then anything else.
        rows.sort(key=lambda r: (r.get("source") != "commonvoice1", rng.random()))
        paths += [manifest.parent / r["path"] for r in rows[:max_clips]]
    rng = np.random.default_rng(seed)
    pieces = []
    for path in paths:
        try:
            pieces.append(load_audio(path))
        except AudioError as e:
            print(f"serve_bench: skipping {e}", file=sys.stderr)
            continue
        pieces.append(np.zeros(int(16000 * rng.uniform(0.3, 0.9)), np.float32))
    return np.concatenate(pieces).astype(np.float32)


def encode(audio16: np.ndarray, rate: int, fmt: str) -> bytes:
    from ..audio import resample

    x = resample(audio16, 16000, rate) if rate != 16000 else audio16
    if fmt == "s16le":
        return (x * 32768).clip(-32768, 32767).astype("<i2").tobytes()
    return x.astype("<f4").tobytes()


async def one_stream(session, url: str, tape: bytes, offset: int, n_bytes: int, chunk_bytes: int,
                     chunk_seconds: float, delay: float, rate: int, fmt: str) -> StreamResult:
    import aiohttp

    result = StreamResult()
    width = 2 if fmt == "s16le" else 4
    await asyncio.sleep(delay)
    try:
        ws = await session.ws_connect(url + "/ws", timeout=aiohttp.ClientWSTimeout(ws_close=10))
    except (aiohttp.ClientError, OSError) as e:
        result.refused, result.error = True, f"connect: {e}"
        return result
    sent: deque[tuple[int, float]] = deque()  # (client samples up to the chunk's end, send time)
    done = asyncio.Event()

    async def receive() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.perf_counter()
            m = json.loads(msg.data)
            if m["type"] in ("partial", "final"):
                while sent and sent[0][0] <= m["samples"]:
                    result.latencies.append(now - sent.popleft()[1])
            elif m["type"] == "error":
                result.error = m["code"]
                if m["code"] == "too-many-streams":
                    result.refused = True
                else:
                    result.dropped = True
            elif m["type"] == "end":
                done.set()

    try:
        await ws.send_str(json.dumps({"type": "config", "sample_rate": rate, "format": fmt, "partials": "always"}))
        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        position = samples = i = 0
        while position < n_bytes and not receiver.done():
            due = start + i * chunk_seconds
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            lo = (offset + position) % len(tape)
            chunk = tape[lo:lo + min(chunk_bytes, n_bytes - position)]
            samples += len(chunk) // width
            now = time.perf_counter()
            result.send_lag.append(max(0.0, now - due))
            sent.append((samples, now))
            await ws.send_bytes(chunk)
            position += len(chunk)
            i += 1
        if not receiver.done():
            await ws.send_str('{"type": "eof"}')
            await asyncio.wait_for(done.wait(), 60)
    except (aiohttp.ClientError, ConnectionError, RuntimeError, asyncio.TimeoutError) as e:
        result.error = result.error or f"{type(e).__name__}: {e}"
    finally:
        await ws.close()
    if not done.is_set() and not result.refused:
        result.dropped = True
    return result


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


async def _health(session, url: str) -> dict:
    async with session.get(url + "/health") as r:
        return await r.json()


async def run_level(url: str, tape: bytes, streams: int, seconds: float, chunk_ms: float, rate: int, fmt: str,
                    seed: int) -> dict:
    import aiohttp

    width = 2 if fmt == "s16le" else 4
    chunk_samples = max(1, round(rate * chunk_ms / 1000))
    rng = np.random.default_rng(seed + streams)
    # limit=0: aiohttp's default pool (100 connections) would queue the streams beyond 100.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for _ in range(600):  # wait until the previous level's streams are gone
            if (await _health(session, url))["streams"] == 0:
                break
            await asyncio.sleep(0.1)
        before = await _health(session, url)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        tasks = [one_stream(session, url, tape, int(rng.integers(0, len(tape) // width)) * width,
                            int(seconds * rate) * width, chunk_samples * width, chunk_samples / rate,
                            float(rng.uniform(0, 1.0)), rate, fmt) for _ in range(streams)]
        results = await asyncio.gather(*tasks)
        wall = time.perf_counter() - wall0
        client_cpu = time.process_time() - cpu0
        after = await _health(session, url)
    latencies = [x for r in results for x in r.latencies]
    lags = [x for r in results for x in r.send_lag]
    steps = after["steps"] - before["steps"]
    errors = sorted({r.error for r in results if r.error})
    return {
        "streams": streams, "seconds": seconds, "wall": wall,
        "server_cpu": (after["cpu_seconds"] - before["cpu_seconds"]) / wall,
        "client_cpu": client_cpu / wall,
        "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
        "max_ms": 1000 * max(latencies, default=float("nan")), "chunks": len(latencies),
        "send_lag_p99_ms": 1000 * percentile(lags, 99),
        "refused": sum(r.refused for r in results), "dropped": sum(r.dropped for r in results),
        "mean_batch": (after["stream_steps"] - before["stream_steps"]) / steps if steps else 0.0,
        "step_ms": 1000 * (after["step_seconds"] - before["step_seconds"]) / steps if steps else 0.0,
        "load": os.getloadavg()[0], "errors": errors,
        "decoder": before.get("decoder", "?"), "beam_size": before.get("beam_size", 0),
        "search_processes": before.get("search_processes", 0),
    }


class ServerProcess:
    """`python -m asr.apps.serve` on a free loopback port; its stderr is drained so it never blocks."""

    def __init__(self, args: Sequence[str]):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "asr.apps.serve", "--port", "0", *args],
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.tail: deque[str] = deque(maxlen=20)
        line = self.proc.stderr.readline()
        if "listening on " not in line:
            self.proc.kill()
            raise RuntimeError(f"asr serve did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split("listening on ")[1].split()[0].rstrip("/")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.tail.append(line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def describe_decoder(rows: Sequence[dict]) -> str:
    if not rows:
        return "?"
    name, beam, procs = rows[0]["decoder"], rows[0]["beam_size"], rows[0].get("search_processes", 0)
    if not beam:
        return name
    return f"{name}, beam {beam}, " + (f"searches in {procs} worker processes" if procs else "searches in the server process")


def render_table(rows: Sequence[dict]) -> str:
    lines = [("| streams | server CPU (cores) | load generator CPU (cores) | latency p50 ms | p99 ms | max ms "
              "| chunks measured | refused | dropped | mean batch | step ms | send lag p99 ms | load avg (1 min) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['streams']} | {r['server_cpu']:.2f} | {r['client_cpu']:.2f} | {r['p50_ms']:.0f} "
                     f"| {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['chunks']} | {r['refused']} | {r['dropped']} "
                     f"| {r['mean_batch']:.1f} | {r['step_ms']:.1f} | {r['send_lag_p99_ms']:.0f} | {r['load']:.2f} |")
    return "\n".join(lines)


def run_serve_bench(streams: Sequence[int] = STREAMS, seconds: float = 20.0, chunk_ms: float = 100.0,
                    rate: int = 16000, fmt: str = "s16le", threads: int = 0, model: Optional[str] = None,
                    url: Optional[str] = None, data: Optional[str] = None, seed: int = 0,
                    out: Optional[TextIO] = None, server_args: Sequence[str] = ()) -> list[dict]:
    """Runs each load level in turn against one server and prints the markdown table (with the machine's
    load average before the run, since other processes on the machine change the numbers)."""
    out = out or sys.stdout
    tape = encode(load_tape(data, seed=seed), rate, fmt)
    server = None
    if url is None:
        extra = ["--max-streams", str(max(streams)), "--threads", str(threads), *server_args]
        server = ServerProcess(extra + (["--model", model] if model else []))
        url = server.url
    load_before = os.getloadavg()
    rows = []
    try:
        for n in streams:
            row = asyncio.run(run_level(url, tape, n, seconds, chunk_ms, rate, fmt, seed))
            rows.append(row)
            print(f"serve_bench: {n} streams: p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, "
                  f"server CPU {row['server_cpu']:.2f} cores, refused {row['refused']}, dropped {row['dropped']}"
                  + (f", errors: {', '.join(row['errors'])}" if row["errors"] else ""), file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"{os.cpu_count()} CPUs; load average before the run {load_before[0]:.2f}, {load_before[1]:.2f}, "
          f"{load_before[2]:.2f} (1, 5, 15 min); each stream {seconds:g} s of audio at real-time pace in "
          f"{chunk_ms:g} ms chunks, {rate} Hz {fmt}; torch threads in the server: {threads or 'default'}; "
          f"decoder: {describe_decoder(rows)}\n", file=out)
    print(render_table(rows), file=out, flush=True)
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--streams", type=int, nargs="+", default=list(STREAMS), help="concurrent streams per level")
    p.add_argument("--seconds", type=float, default=20.0, help="audio per stream (default 20 s)")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio per WebSocket message (default 100 ms)")
    p.add_argument("--rate", type=int, default=16000, help="sample rate the clients send (default 16000)")
    p.add_argument("--format", dest="fmt", choices=("s16le", "f32le"), default="s16le")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the server (default 0: torch's default)")
    p.add_argument("--model", help="model checkpoint for the server (default: bundled)")
    p.add_argument("--no-lm", action="store_true", help="start the server with --no-lm (greedy decoding)")
    p.add_argument("--beam-size", type=int, default=0,
                   help="start the server with this --beam-size (default: the LM's tuned beam)")
    p.add_argument("--search-processes", type=int, default=None, metavar="N",
                   help="start the server with this --search-processes (default: the server's, one per core)")
    p.add_argument("--url", help="benchmark a running server instead of starting one (e.g. http://127.0.0.1:8000)")
    p.add_argument("--data", help=f"jsonl manifest of real recordings (default {DEV_MANIFEST} when present)")
    p.add_argument("--seed", type=int, default=0)


def server_args(args: argparse.Namespace) -> list[str]:
    extra = ["--no-lm"] if args.no_lm else []
    if args.search_processes is not None:
        extra += ["--search-processes", str(args.search_processes)]
    return extra + (["--beam-size", str(args.beam_size)] if args.beam_size else [])


def run(args: argparse.Namespace) -> int:
    run_serve_bench(args.streams, args.seconds, args.chunk_ms, args.rate, args.fmt, args.threads, args.model,
                    args.url, args.data, args.seed, server_args=server_args(args))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.apps.serve_bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
