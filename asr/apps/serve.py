"""`asr serve`: streaming recognition over WebSocket, file transcription over HTTP, and a browser page.

One process holds one model. Every WebSocket stream keeps its own resampler, feature remainder, frames,
GRU state, decoder and endpointer (asr listen's `LiveTranscriber`, so utterances, times and results are
the same as `asr listen --json`); a scheduler runs the model for all streams at once: at each step it
takes the audio that arrived since the last step, runs one batched GRU call in a worker thread
(`asr.streaming.accept_batch`) and hands each stream its logits and new state. The event loop only
moves bytes and JSON, so it stays responsive while the model runs (torch releases the GIL).

Protocol, limits and the batching design: docs/server.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from aiohttp import WSCloseCode, WSMsgType, web

from ..audio import AudioError, load_audio
from ..decoding import BeamSearchDecoder
from ..endpoint import EndpointConfig
from ..features import SAMPLE_RATE
from ..model import DEFAULT_MODEL, AcousticModel
from ..output import render
from ..search_pool import RemoteSearch, SearchPool
from ..streaming import FinalResult, LiveTranscriber, StreamingRecognizer, accept_batch
from ..transcribe import batch_logits, make_decoder, transcript_from_logits
from .common import add_decoder_arguments, chosen_lm, command_model

log = logging.getLogger("asr.serve")

STATIC = Path(__file__).resolve().parent / "static"
FORMATS = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}
PARTIALS = ("changes", "always")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass
class Limits:
    """Per-server limits; each one, when hit, ends only the stream (or request) that hit it."""
    max_streams: int = 100  # concurrent WebSocket streams; more are refused (close 1013)
    max_message_bytes: int = 1 << 20  # one WebSocket message (config or audio); larger: close 1009
    max_stream_seconds: float = 3600.0  # audio per stream; then the final is flushed and close 4003
    idle_timeout: float = 30.0  # seconds without a message from the client; then close 4002
    max_upload_bytes: int = 64 << 20  # POST /transcribe body
    max_upload_seconds: float = 3600.0  # POST /transcribe audio length
    max_uploads: int = 4  # uploads being read or transcribed at once (each holds its file in memory); then 503
    # Flow control: while a stream has more unprocessed audio than this, its socket is not read
    # (TCP pushes back on the client), so a client sending faster than real time cannot fill memory.
    backlog_seconds: float = 2.0
    # Fairness: at most this much of one stream's audio per batch step, so a client that sends a whole
    # file at once shares the model with the real-time streams instead of stalling them.
    step_seconds: float = 1.0
    # A step starts at least this long after the previous one started, so under load the audio of more
    # streams is gathered into each model call (each call streams all GRU weights through the CPU once,
    # whatever the batch); a lone stream never waits, since its chunks come further apart than this.
    step_interval: float = 0.02


# Close codes: the standard ones where one fits (RFC 6455 section 7.4.1), 4000-4999 (private use) otherwise.
CLOSE_CODES = {
    "bad-message": 4000,  # not JSON, unknown message type or config field, audio before the config
    "unsupported-audio": 4001,  # sample format or rate not supported, non-finite samples
    "idle-timeout": 4002,
    "stream-too-long": 4003,
    "message-too-big": int(WSCloseCode.MESSAGE_TOO_BIG),  # 1009
    "too-many-streams": int(WSCloseCode.TRY_AGAIN_LATER),  # 1013
    "internal-error": int(WSCloseCode.INTERNAL_ERROR),  # 1011
    "server-shutdown": int(WSCloseCode.GOING_AWAY),  # 1001
}


class StreamError(Exception):
    """Ends one stream: sent as {"type": "error", "code", "message"}, then the close code of `code`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def close_code(self) -> int:
        return CLOSE_CODES[self.code]

    def to_message(self) -> dict:
        return {"type": "error", "code": self.code, "message": self.message}


class DecoderFactory:
    """The one place the server picks its decoder: calling it gives a new decoder for a stream; `upload()`
    one for file uploads; None means greedy. Beam search (with `lm`: `asr serve` passes the bundled LM
    unless --no-lm) holds search state, so every stream gets its own: with `processes` > 0 a search in a
    worker process (asr.search_pool: flashlight's search holds the GIL, so in-process searches would all
    share one core), else a fork of one decoder built at start, sharing its lexicon trie and LM (building
    one takes seconds, a fork well under a millisecond). The LM is checked at once, so a bad --lm fails at
    start, not at the first stream."""

    def __init__(self, model: AcousticModel, lm: Optional[str] = None, beam_size: int = 0, processes: int = 0):
        self.vocab = model.config.vocab
        self.lm = lm
        self.pool: Optional[SearchPool] = None
        try:
            self._first = make_decoder(self.vocab, self.lm, beam_size)
            if self._first is not None and processes > 0:
                self.pool = SearchPool(self.vocab, self.lm, beam_size, processes)
        except (ValueError, OSError, RuntimeError) as e:
            raise SystemExit(f"asr: error: {e}") from None
        first = self._first
        self.name = "greedy" if first is None else "beam search + LM" if self.lm else "beam search"
        self.beam_size = 0 if first is None else first.beam_size  # the beam in use (the LM's tuned one by default)

    def __call__(self) -> Optional[Union[BeamSearchDecoder, RemoteSearch]]:
        if self.pool is not None:
            return self.pool.open()
        return None if self._first is None else self._first.fork()

    def upload(self) -> Optional[BeamSearchDecoder]:
        """Uploads run in their own thread, which must not use the pool's pipes: an in-process decoder."""
        return None if self._first is None else self._first.fork()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def check_rate(rate: Any) -> int:
    """A sample rate the streaming resampler handles with a small kernel (standard rates all do)."""
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 192000:
        raise StreamError("unsupported-audio", f"sample_rate must be an integer from 8000 to 192000 Hz, got {rate!r}")
    g = math.gcd(rate, SAMPLE_RATE)
    # The polyphase kernel has (16000/g) rows of ~(rate/g) taps: 44100 Hz -> 160 x 441; 44101 Hz would
    # need 16000 x 44101 floats (2.8 GB), so such rates are refused rather than allocated.
    if (rate // g) * (SAMPLE_RATE // g) > 1_000_000:
        raise StreamError("unsupported-audio", f"sample_rate {rate} Hz is not a standard rate "
                                               "(use e.g. 8000, 16000, 22050, 24000, 44100 or 48000)")
    return rate


@dataclass
class StreamConfig:
    sample_rate: int
    format: str = "f32le"
    partials: str = "changes"  # "always": a partial after every step that consumed audio (for latency probes)
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)

    FIELDS = ("type", "sample_rate", "format", "partials", "endpoint_silence", "endpoint_silence_no_speech",
              "max_utterance")

    @classmethod
    def parse(cls, text: str, defaults: EndpointConfig) -> "StreamConfig":
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise StreamError("bad-message", f"the first message must be a JSON config object ({e})") from None
        if not isinstance(obj, dict):
            raise StreamError("bad-message", "the first message must be a JSON config object")
        if obj.get("type", "config") != "config":
            raise StreamError("bad-message", f"expected a config message first, got type {obj.get('type')!r}")
        unknown = sorted(set(obj) - set(cls.FIELDS))
        if unknown:  # strict, so a misspelt option is an error instead of silently ignored
            raise StreamError("bad-message", f"unknown config field(s): {', '.join(unknown)} "
                                             f"(known: {', '.join(cls.FIELDS[1:])})")
        if "sample_rate" not in obj:
            raise StreamError("bad-message", "config needs sample_rate (Hz)")
        fmt = obj.get("format", "f32le")
        if fmt not in FORMATS:
            raise StreamError("unsupported-audio", f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        partials = obj.get("partials", "changes")
        if partials not in PARTIALS:
            raise StreamError("bad-message", f"partials must be one of {', '.join(PARTIALS)}, got {partials!r}")
        values = {}
        for name, attr, upper in (("endpoint_silence", "silence", 60.0),
                                  ("endpoint_silence_no_speech", "silence_no_speech", 60.0),
                                  ("max_utterance", "max_utterance", 120.0)):
            value = obj.get(name, getattr(defaults, attr))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= upper:
                raise StreamError("bad-message", f"{name} must be a number of seconds in (0, {upper}], got {value!r}")
            values[attr] = float(value)
        return cls(check_rate(obj["sample_rate"]), fmt, partials, EndpointConfig(**values))


class Session(LiveTranscriber):
    """`asr listen`'s transcriber (endpointing, reset at each endpoint, times from stream start, the
    FinalResult it prints with --json) with its model call taken out, so the scheduler can batch it."""

    def __init__(self, model: AcousticModel, rate: int, endpoint: EndpointConfig,
                 decoder: Optional[BeamSearchDecoder]):
        # No digital-silence skipping (listen's default): clients often stream files, whose results must
        # equal `asr transcribe` of the same file; skipping leading zeros would change them.
        super().__init__(model, rate, endpoint, skip_silence_below=0)
        if decoder is not None:
            self.recognizer = StreamingRecognizer(model, decoder)

    def resample(self, block: np.ndarray, flush: bool) -> np.ndarray:
        samples = self.resampler.accept(block)
        return np.concatenate([samples, self.resampler.flush()]) if flush else samples

    def after_step(self, logits: torch.Tensor) -> list[FinalResult]:
        """The step's logits were fed to the recognizer; close the utterance if an endpoint rule fires."""
        self.endpointer.accept(logits)
        reason = self.endpointer.endpoint()
        result = self._cut(reason) if reason is not None else None
        return [result] if result else []

    def end(self) -> list[FinalResult]:
        result = self._cut("end")
        return [result] if result else []


def final_message(result: FinalResult, samples: int) -> dict:
    return {"type": "final", **json.loads(result.to_json()), "reason": result.reason, "samples": samples}


_CLOSE = object()  # outbox sentinel: close the socket after what is queued before it


class Stream:
    """One WebSocket client. Fields marked (worker) are touched only by the scheduler's thread."""

    def __init__(self, sid: int, ws: web.WebSocketResponse, server: "Server"):
        self.id = sid
        self.ws = ws
        self.server = server
        self.config: Optional[StreamConfig] = None
        self.session: Optional[Session] = None  # (worker) once configured
        self.consumed = 0  # (worker) client-rate samples given to the session
        self.last_partial = ""  # (worker)
        self.pending: collections.deque[np.ndarray] = collections.deque()
        self.pending_samples = 0
        self.received = 0
        self._remainder = b""
        self.flush_requested = False
        self.flushed = asyncio.Event()
        self.space = asyncio.Event()  # set while the backlog is small enough to read more audio
        self.space.set()
        self.closed = False  # the handler is done with it; the scheduler retires it
        self.outbox: collections.deque = collections.deque()
        self._out_ready = asyncio.Event()
        self.sender = asyncio.create_task(self._send_loop())

    # -- audio in (event loop)
    def add_audio(self, data: bytes) -> None:
        assert self.config is not None
        dtype = FORMATS[self.config.format]
        buf = self._remainder + data if self._remainder else data
        whole = len(buf) // dtype.itemsize * dtype.itemsize  # frames may split a sample: keep the odd bytes
        self._remainder = bytes(buf[whole:])
        x = np.frombuffer(buf, dtype=dtype, count=whole // dtype.itemsize).astype(np.float32)
        if self.config.format == "s16le":
            x /= 32768.0
        elif not np.isfinite(x).all():
            raise StreamError("unsupported-audio", "f32le samples must be finite (NaN or infinity received)")
        room = int(self.server.limits.max_stream_seconds * self.config.sample_rate) - self.received
        too_long = x.size > room
        if too_long:
            x = x[:max(room, 0)]
        if x.size:
            self.pending.append(x)
            self.pending_samples += x.size
            self.received += x.size
            if self.pending_samples > self.server.limits.backlog_seconds * self.config.sample_rate:
                self.space.clear()
            self.server.scheduler.wake()
        if too_long:
            raise StreamError("stream-too-long", f"streams are limited to {self.server.limits.max_stream_seconds:g} s "
                                                 "of audio; the final result up to there was sent")

    def take(self, limit: int) -> np.ndarray:
        """Up to `limit` pending samples, oldest first."""
        parts, n = [], 0
        while self.pending and n < limit:
            x = self.pending.popleft()
            if n + x.size > limit:
                self.pending.appendleft(x[limit - n:])
                x = x[:limit - n]
            parts.append(x)
            n += x.size
        self.pending_samples -= n
        if self.pending_samples <= self.server.limits.backlog_seconds * self.config.sample_rate:
            self.space.set()
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    async def finish(self) -> None:
        """Process everything received, then the resampler tail and the utterance in progress (final)."""
        if self.session is None:
            return
        self.flush_requested = True
        self.server.scheduler.wake()
        await self.flushed.wait()

    # -- messages out (event loop): one sender task per stream, so a slow client never stalls the scheduler
    def send(self, message: Any) -> None:
        if message is not _CLOSE and message.get("type") == "partial" and self.outbox \
                and isinstance(self.outbox[-1], dict) and self.outbox[-1].get("type") == "partial":
            self.outbox[-1] = message  # an unsent partial is superseded by the newer one
        else:
            self.outbox.append(message)
        self._out_ready.set()

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._out_ready.wait()
                self._out_ready.clear()
                while self.outbox:
                    message = self.outbox.popleft()
                    if message is _CLOSE:
                        return
                    if self.ws.closed:
                        continue
                    await self.ws.send_str(json.dumps(message))
        except (ConnectionError, RuntimeError):  # the client went away: nothing more to deliver
            pass

    async def close(self, close_code: int, reason: str, timeout: float = 10.0) -> None:
        """Deliver what is queued, then close; a client that does not read for `timeout` s is cut off."""
        self.send(_CLOSE)
        try:
            await asyncio.wait_for(asyncio.shield(self.sender), timeout)
        except asyncio.TimeoutError:
            self.sender.cancel()
        if not self.ws.closed:
            await self.ws.close(code=close_code, message=reason.encode()[:120])


class _WebSocket(web.WebSocketResponse):
    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        # aiohttp enforces max_msg_size from the frame header (before buffering the payload) and closes
        # with 1009 and no reason; add the error message every other limit gets.
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message and not self.closed:
            text = f"messages are limited to {self._max_msg_size} bytes; send audio in smaller frames"
            try:
                await self.send_str(json.dumps(StreamError("message-too-big", text).to_message()))
            except (ConnectionError, RuntimeError):
                pass
            message = b"message too big"
        return await super().close(code=code, message=message, drain=drain)


@dataclass
class _Job:
    stream: Stream
    block: np.ndarray
    flush: bool


class Scheduler:
    """Batches the model work of all streams: one step = one `accept_batch` call in the worker thread."""

    def __init__(self, limits: Limits, pool: Optional[SearchPool] = None):
        self.limits = limits
        self.streams: set[Stream] = set()
        self.pool = pool  # the streams' beam searches, when they run in worker processes
        # One worker: steps run one after another, so each stream's state is touched by one thread only.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="asr-step")
        self._wake = asyncio.Event()
        self.steps = 0
        self.stream_steps = 0
        self.step_seconds = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await self._wake.wait()
            wait = last + self.limits.step_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            last = loop.time()
            jobs, retired = self._collect()
            if not jobs and not retired:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self._step, jobs, retired)
            except Exception:  # e.g. out of memory in the model call: these streams end, the server goes on
                log.exception("batch step failed")
                error = StreamError("internal-error", "the recognizer failed on this audio; see the server log")
                results = []
                for job in jobs:
                    job.stream.session = None  # its state is unknown: never step it again
                    results.append((job.stream, [error.to_message()], True))
                    asyncio.ensure_future(job.stream.close(error.close_code, error.code))
            for stream, messages, flushed in results:
                for message in messages:
                    stream.send(message)
                if flushed:
                    stream.flushed.set()
            if any(s.pending_samples or (s.flush_requested and not s.flushed.is_set()) for s in self.streams):
                self._wake.set()

    def _collect(self) -> tuple[list[_Job], list[Stream]]:
        jobs, retired = [], []
        for stream in list(self.streams):
            if stream.closed:
                self.streams.discard(stream)
                retired.append(stream)
            elif stream.session is not None and not stream.flushed.is_set() and (
                    stream.pending_samples or stream.flush_requested):
                block = stream.take(max(1, int(self.limits.step_seconds * stream.config.sample_rate)))
                jobs.append(_Job(stream, block, stream.flush_requested and stream.pending_samples == 0))
        return jobs, retired

    def _step(self, jobs: Sequence[_Job], retired: Sequence[Stream]) -> list[tuple[Stream, list[dict], bool]]:
        start = time.perf_counter()
        for stream in retired:  # in this thread: no step can be using its decoder any more
            if stream.session is not None and isinstance(stream.session.recognizer.decoder, RemoteSearch):
                stream.session.recognizer.decoder.close()
        samples = []
        for job in jobs:
            samples.append(job.stream.session.resample(job.block, job.flush))
            job.stream.consumed += job.block.size
        logits = accept_batch([job.stream.session.recognizer for job in jobs], samples)
        if self.pool is not None:  # every stream's new logits searched at once, in the worker processes
            self.pool.run([job.stream.session.recognizer.decoder for job in jobs])
        results = []
        for job, step_logits in zip(jobs, logits):
            stream, session = job.stream, job.stream.session
            finals = session.after_step(step_logits)
            if job.flush:
                finals += session.end()
            messages = [final_message(f, stream.consumed) for f in finals]
            if finals:
                stream.last_partial = ""  # a final replaces the partial text on the client
            text = session.recognizer.decoder.text
            if not job.flush and (stream.config.partials == "always" or text != stream.last_partial):
                messages.append({"type": "partial", "text": text, "samples": stream.consumed})
                stream.last_partial = text
            results.append((stream, messages, job.flush))
        if jobs:
            self.steps += 1
            self.stream_steps += len(jobs)
            self.step_seconds += time.perf_counter() - start
        return results


class Server:
    def __init__(self, model: AcousticModel, lm: Optional[str] = None, limits: Optional[Limits] = None,
                 allow_origins: Sequence[str] = (), loopback_only: bool = True,
                 endpoint: Optional[EndpointConfig] = None, beam_size: int = 0, search_processes: int = 0):
        self.model = model.eval()
        self.limits = limits or Limits()
        self.allow_origins = {o.rstrip("/") for o in allow_origins}
        self.loopback_only = loopback_only
        self.endpoint = endpoint or EndpointConfig()
        self.new_decoder = DecoderFactory(model, lm, beam_size, search_processes)
        self.decoder_name = self.new_decoder.name
        self.scheduler: Optional[Scheduler] = None
        self.active = 0
        self.next_id = 0
        self.sockets: set[web.WebSocketResponse] = set()
        # Uploads run in their own thread, one at a time: a long file must not delay the streams' steps.
        self.upload_executor = ThreadPoolExecutor(1, thread_name_prefix="asr-upload")
        self.upload_decoder: Any = None
        self.uploads = 0
        self.started = time.time()

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=self.limits.max_upload_bytes)
        app.router.add_get("/", self.index)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ws", self.websocket)
        app.router.add_post("/transcribe", self.transcribe)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _start(self, app: web.Application) -> None:
        self.scheduler = Scheduler(self.limits, self.new_decoder.pool)
        self._scheduler_task = asyncio.create_task(self.scheduler.run())

    async def _shutdown(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            if not ws.closed:
                try:
                    await ws.send_str(json.dumps(StreamError("server-shutdown", "the server is shutting down")
                                                 .to_message()))
                except (ConnectionError, RuntimeError):
                    pass
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def _cleanup(self, app: web.Application) -> None:
        self._scheduler_task.cancel()
        self.scheduler.executor.shutdown(wait=True, cancel_futures=True)  # no step may use the pool after this
        self.upload_executor.shutdown(wait=False, cancel_futures=True)
        self.new_decoder.close()

    # -- HTTP
    def _origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: the Origin check protects browser users from other sites
            return True
        origin = origin.rstrip("/")
        return "*" in self.allow_origins or origin in self.allow_origins or \
            origin == f"{request.scheme}://{request.host}"

    def _host_allowed(self, request: web.Request) -> bool:
        # Bound to loopback, only loopback names may be asked for: a DNS-rebinding page (evil.example
        # resolving to 127.0.0.1) would otherwise be "same origin" with this server.
        if not self.loopback_only:
            return True
        host = (request.url.host or "").strip("[]").lower()
        if host in LOOPBACK_NAMES or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not self._host_allowed(request):
            return _error_response(403, "host-not-allowed", f"Host {request.host!r} is not a loopback name; "
                                   "the server is bound to loopback (use --host to serve other names)")
        if request.method == "POST" and not self._origin_allowed(request):
            return _error_response(403, "origin-not-allowed", f"Origin {request.headers['Origin']} may not use "
                                   "this server (see --allow-origin)")
        try:
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(413, "upload-too-big",
                                   f"uploads are limited to {self.limits.max_upload_bytes} bytes")
        if not isinstance(response, web.WebSocketResponse):
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            response.headers.setdefault(
                "Content-Security-Policy",
                f"default-src 'self'; connect-src 'self' ws://{request.host} wss://{request.host}; "
                "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return response

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def health(self, request: web.Request) -> web.Response:
        s, pool = self.scheduler, self.new_decoder.pool
        return web.json_response({
            "status": "ok", "streams": self.active, "max_streams": self.limits.max_streams,
            "decoder": self.decoder_name, "beam_size": self.new_decoder.beam_size,
            "search_processes": len(pool.workers) if pool else 0,
            "uptime": round(time.time() - self.started, 3),
            # For load tests: CPU seconds of the server (all threads, and its search processes) and batching counters.
            "cpu_seconds": time.process_time() + (pool.cpu_seconds() if pool else 0.0), "steps": s.steps if s else 0,
            "stream_steps": s.stream_steps if s else 0, "step_seconds": s.step_seconds if s else 0.0,
        })

    async def transcribe(self, request: web.Request) -> web.Response:
        """The JSON `asr transcribe --output-format json` writes, for an uploaded audio file (multipart
        field "file", or the raw body)."""
        if self.uploads >= self.limits.max_uploads:
            return _error_response(503, "busy", f"{self.uploads} uploads are being transcribed; try again later")
        self.uploads += 1
        try:
            data, name = await self._read_upload(request)
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self.upload_executor, self._transcribe_file, data, name)
        except ValueError as e:
            return _error_response(400, "bad-upload", str(e))
        except AudioError as e:
            return _error_response(400, "bad-audio", str(e))
        finally:
            self.uploads -= 1
        return web.Response(text=body, content_type="application/json")

    async def _read_upload(self, request: web.Request) -> tuple[bytes, str]:
        limit = self.limits.max_upload_bytes
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.name != "file":
                    continue
                data = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    data += chunk
                    if len(data) > limit:
                        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(data))
                return bytes(data), part.filename or "upload"
            raise ValueError('multipart upload without a "file" field')
        data = await request.read()  # bounded by client_max_size
        if not data:
            raise ValueError("empty request body: send an audio file")
        return data, "upload"

    def _transcribe_file(self, data: bytes, name: str) -> str:
        suffix = Path(name).suffix[:10]
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:  # libsndfile reads from paths
            f.write(data)
            f.flush()
            audio = load_audio(f.name)
        label = Path(name).name or "upload"
        if len(audio) > self.limits.max_upload_seconds * SAMPLE_RATE:
            raise AudioError(f"{label}: {len(audio) / SAMPLE_RATE:.0f} s of audio; uploads are limited to "
                             f"{self.limits.max_upload_seconds:g} s")
        if self.upload_decoder is None:
            self.upload_decoder = self.new_decoder.upload() or False
        # As cmd_transcribe with --output-format: one batch pass, words from the aligned result.
        result = transcript_from_logits(self.model, batch_logits(self.model, audio), len(audio) / SAMPLE_RATE,
                                        self.upload_decoder or None, align=True)
        return render("json", result.text, result.words)

    # -- WebSocket
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_allowed(request):
            return _error_response(403, "origin-not-allowed", f"Origin {request.headers['Origin']} may not open "
                                   "streams on this server (see --allow-origin)")
        # autoclose=False: on the client's Close we still flush its last final before closing (RFC 6455
        # lets the server send until it closes); compression off: PCM barely compresses and costs CPU.
        ws = _WebSocket(max_msg_size=self.limits.max_message_bytes, autoclose=False, compress=False)
        await ws.prepare(request)
        self.sockets.add(ws)
        sid, self.next_id = self.next_id, self.next_id + 1
        stream = Stream(sid, ws, self)
        try:
            if self.active >= self.limits.max_streams:
                stream.send(StreamError("too-many-streams", f"the server is at its limit of "
                                        f"{self.limits.max_streams} streams; try again later").to_message())
                await stream.close(CLOSE_CODES["too-many-streams"], "too many streams")
                return ws
            self.active += 1
            try:
                await self._serve(stream)
            finally:
                self.active -= 1
        finally:
            stream.closed = True
            self.scheduler.wake()
            self.sockets.discard(ws)
            if not stream.sender.done():
                stream.sender.cancel()
        return ws

    async def _serve(self, stream: Stream) -> None:
        ws, limits = stream.ws, self.limits
        error: Optional[StreamError] = None
        client_closed = False
        try:
            msg = await ws.receive(timeout=limits.idle_timeout)
            if msg.type == WSMsgType.BINARY:
                raise StreamError("bad-message", "send the JSON config before any audio")
            if msg.type != WSMsgType.TEXT:
                return  # closed or failed before configuring: nothing to flush
            stream.config = StreamConfig.parse(msg.data, self.endpoint)
            stream.session = await self._new_session(stream.config)
            self.scheduler.streams.add(stream)
            stream.send({"type": "ready", "stream": stream.id, "sample_rate": stream.config.sample_rate,
                         "format": stream.config.format, "decoder": self.decoder_name,
                         "limits": {"max_message_bytes": limits.max_message_bytes,
                                    "max_stream_seconds": limits.max_stream_seconds,
                                    "idle_timeout": limits.idle_timeout}})
            log.info("stream %d: %d Hz %s", stream.id, stream.config.sample_rate, stream.config.format)
            while True:
                await stream.space.wait()
                msg = await ws.receive(timeout=limits.idle_timeout)
                if msg.type == WSMsgType.BINARY:
                    stream.add_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    if _message_type(msg.data) == "eof":
                        break
                    raise StreamError("bad-message", 'after the config only binary audio and {"type": "eof"} '
                                                     f"are accepted, got {msg.data[:80]!r}")
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING):
                    client_closed = True
                    break
                else:  # ERROR (e.g. message too big: already answered) or CLOSED: the client is gone
                    return
        except StreamError as e:
            error = e
        except asyncio.TimeoutError:
            error = StreamError("idle-timeout", f"no message for {limits.idle_timeout:g} s; closing the stream")
        await stream.finish()  # the last final, whatever ended the stream
        if error is not None:
            stream.send(error.to_message())
            await stream.close(error.close_code, error.code)
            log.info("stream %d: %s: %s", stream.id, error.code, error.message)
            return
        if not client_closed:
            stream.send({"type": "end", "samples": stream.received,
                         "seconds": round(stream.received / stream.config.sample_rate, 3),
                         "utterances": stream.session.utterances if stream.session else 0})
        await stream.close(WSCloseCode.OK, "end")
        log.info("stream %d: ended after %.1f s", stream.id, stream.received / stream.config.sample_rate)

    async def _new_session(self, config: StreamConfig) -> Session:
        def build() -> Session:
            return Session(self.model, config.sample_rate, config.endpoint, self.new_decoder())

        # Off the event loop and the step thread (a decoder fork is cheap, but a session allocates buffers).
        return await asyncio.get_running_loop().run_in_executor(None, build)


def _message_type(text: str) -> Optional[str]:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj.get("type") if isinstance(obj, dict) else None


def _error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--model", metavar="PATH", help=f"model checkpoint (default: bundled {DEFAULT_MODEL.name})")
    add_decoder_arguments(p, hotwords=False)
    p.add_argument("--max-streams", type=int, default=Limits.max_streams,
                   help=f"concurrent WebSocket streams (default {Limits.max_streams}); more are refused")
    p.add_argument("--max-message-bytes", type=int, default=Limits.max_message_bytes,
                   help=f"largest WebSocket message (default {Limits.max_message_bytes})")
    p.add_argument("--max-stream-seconds", type=float, default=Limits.max_stream_seconds,
                   help=f"audio per stream (default {Limits.max_stream_seconds:g} s)")
    p.add_argument("--idle-timeout", type=float, default=Limits.idle_timeout,
                   help=f"close a stream after this many seconds without a message (default {Limits.idle_timeout:g})")
    p.add_argument("--max-upload-bytes", type=int, default=Limits.max_upload_bytes,
                   help=f"largest POST /transcribe body (default {Limits.max_upload_bytes})")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept browser pages from this origin (e.g. https://example.org; '*' for any); "
                        "repeatable. Default: same origin only")
    p.add_argument("--search-processes", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="worker processes for the streams' beam searches (default: one per core; 0: in the server "
                        "process, where all searches share one core)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for the model and features (default: torch's default, the number of cores)")
    p.add_argument("--endpoint-silence", type=float, default=EndpointConfig.silence, metavar="SECONDS",
                   help=f"default end-of-utterance silence (default {EndpointConfig.silence} s; clients may override)")
    p.add_argument("--endpoint-silence-no-speech", type=float, default=EndpointConfig.silence_no_speech,
                   metavar="SECONDS", help=f"default (default {EndpointConfig.silence_no_speech} s)")
    p.add_argument("--max-utterance", type=float, default=EndpointConfig.max_utterance, metavar="SECONDS",
                   help=f"default (default {EndpointConfig.max_utterance} s)")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="asr serve: %(message)s", stream=sys.stderr)
    for name in ("max_streams", "max_message_bytes", "max_upload_bytes"):
        if getattr(args, name) < 1:
            raise SystemExit(f"asr: error: --{name.replace('_', '-')} must be >= 1")
    for name in ("max_stream_seconds", "idle_timeout"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"asr: error: --{name.replace('_', '-')} must be > 0")
    try:
        endpoint = EndpointConfig(args.endpoint_silence, args.endpoint_silence_no_speech, args.max_utterance)
    except ValueError as e:
        raise SystemExit(f"asr: error: {e}") from None
    if args.threads < 0 or args.search_processes < 0:
        raise SystemExit("asr: error: --threads and --search-processes must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    # fp32 only: int8 quantizes activations per call, so a stream's result would depend on its batch
    model = command_model(args.model)
    limits = Limits(max_streams=args.max_streams, max_message_bytes=args.max_message_bytes,
                    max_stream_seconds=args.max_stream_seconds, idle_timeout=args.idle_timeout,
                    max_upload_bytes=args.max_upload_bytes)
    server = Server(model, chosen_lm(args), limits, args.allow_origin, loopback_only=_is_loopback(args.host),
                    endpoint=endpoint, beam_size=args.beam_size, search_processes=args.search_processes)
    return asyncio.run(_serve_forever(server, args.host, args.port))


async def _serve_forever(server: Server, host: str, port: int) -> int:
    runner = web.AppRunner(server.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        print(f"asr: error: cannot listen on {host}:{port}: {e.strerror or e}", file=sys.stderr)
        return 2
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    # The bench and the tests read this line to learn the port (with --port 0).
    print(f"asr serve: listening on http://{shown}:{bound[1]}/ ({server.decoder_name}, "
          f"max {server.limits.max_streams} streams)", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


@contextlib.contextmanager
def serve_in_thread(server: Server, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Runs `server` with its own event loop in a background thread (tests, notebooks); yields its URL."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}

    async def start() -> None:
        try:
            runner = web.AppRunner(server.make_app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            box["runner"], box["address"] = runner, runner.addresses[0]
        except Exception as e:  # reported to the caller below
            box["error"] = e
        started.set()

    def main() -> None:
        loop.run_until_complete(start())
        if "error" not in box:
            loop.run_forever()

    thread = threading.Thread(target=main, name="asr-serve", daemon=True)
    thread.start()
    started.wait()
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://{host}:{box['address'][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="asr serve", description="streaming speech recognition server: "
                                     "WebSocket streams, POST /transcribe, and a browser page at /")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
