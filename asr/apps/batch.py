"""`asr transcribe`: files and folders, in parallel worker processes or on a Ray cluster, resumable.

The per-file unit of work is `asr.transcribe.transcribe_file`; this module finds the files, plans where each
output goes, hands the files to workers (each builds its model and decoder once), and is the only writer of
outputs and of stdout. docs/batch.md describes the behaviour and has the throughput measurements.

- Folders are searched recursively for AUDIO_EXTENSIONS; a file given by name is tried whatever its extension.
- stdout: one `FILE: transcript` line per transcribed file, in input order (a line waits for the files before
  it); stderr: `asr: error: ...` as files fail, progress (a rich bar on a terminal, plain lines otherwise) and
  a summary.
- With --output-dir, a file whose output exists and is not empty is skipped (--overwrite redoes it). Outputs
  are written by the driver with temp file + rename, so a run killed at any moment loses at most the files
  in flight (one per worker, or two per Ray actor) and never leaves a half-written output.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

if TYPE_CHECKING:  # annotations only: the decoder and model are built in the workers
    from ..decoding import BeamSearchDecoder
    from ..model import AcousticModel

# What asr.audio.load_audio reads (libsndfile 1.2: wav, flac, ogg/vorbis/opus, mp3 and its other containers).
# Not m4a/aac/wma: libsndfile has no decoder for them; convert those first (ffmpeg -i x.m4a x.flac).
AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                              ".au", ".snd", ".caf", ".w64", ".rf64"})
DEFAULT_OUTPUT_FORMAT = "txt"  # what --output-dir writes without --output-format
# Without --jobs, runs with less audio than this stay in one process: starting a worker (import torch, load
# the model and the LM) costs more than a short run gains from it.
SMALL_RUN_SECONDS = 60.0
PLAIN_PROGRESS_SECONDS = 30.0  # a progress line at most this often when stderr is not a terminal
PROGRESS_MESSAGE_SECONDS = 0.5  # a worker reports progress within a long file at most this often
RAY_IN_FLIGHT = 2  # files queued per Ray actor: one decoding, one waiting, to hide the round trip
WORKER_NAME = b"asr-worker"  # a worker process's name once its model is loaded (ps, top)
MAX_LISTED_FAILURES = 20  # in the summary; each failure also had its own error line when it happened


def available_cores() -> int:
    """CPUs this process may run on (the affinity mask, which containers and taskset restrict)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------- what to do


@dataclass
class Job:
    index: int  # position in the input order (stdout lines keep it)
    path: str  # as given on the command line, or the folder argument joined with the path found in it
    output: Optional[Path] = None  # the output file (None: stdout only)
    seconds: float = 0.0  # duration from the file header (0: unknown); for progress and ETA


@dataclass
class Outcome:
    text: str = ""
    words: list = field(default_factory=list)  # asr.decoding.Word
    duration: float = 0.0  # seconds of audio transcribed
    error: Optional[str] = None  # one line naming the file
    fatal: bool = False  # the worker itself could not start (bad model or LM): stop the run


class BatchError(Exception):
    """Stops the whole run (bad output plan, a worker that cannot start); one line."""


@dataclass
class Found:
    path: str
    rel: Path  # relative path that the output mirrors under --output-dir


def find_audio(inputs: Sequence[str]) -> tuple[list[Found], list[str]]:
    """Expands folder arguments recursively (sorted by path; hidden files and folders skipped; symlinked
    folders not followed) -> (the files, one error per folder without audio). Other arguments are kept as
    files; a missing or unreadable one fails later with the loader's message. A file found twice is kept once."""
    found: list[Found] = []
    empty: list[str] = []
    seen: set[str] = set()

    def add(path: str, rel: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append(Found(path, rel))

    for arg in inputs:
        if not os.path.isdir(arg):
            add(arg, Path(os.path.basename(arg.rstrip("/\\")) or arg))
            continue
        before = len(found)
        rels: list[Path] = []
        for root, dirs, files in os.walk(arg):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rels += [Path(os.path.relpath(os.path.join(root, name), arg)) for name in files
                     if not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS]
        for rel in sorted(rels, key=lambda r: r.parts):  # path order, the same on every run and machine
            add(os.path.join(arg, rel), rel)
        if len(found) == before:
            exts = " ".join(sorted(e[1:] for e in AUDIO_EXTENSIONS))
            empty.append(f"{arg}: no audio files in this folder or below (looked for: {exts})")
    return found, empty


def plan_outputs(found: Sequence[Found], output_dir: Optional[str], fmt: Optional[str]) -> list[Job]:
    """One Job per file, with its output OUTPUT_DIR/<relative folder>/<stem>.<fmt>.

    Inputs whose outputs would clash keep their audio extension (x.wav.txt and x.flac.txt); a clash that
    remains (the same name given from two folders) is a BatchError naming both, before any work is done."""
    jobs = [Job(i, f.path) for i, f in enumerate(found)]
    if not fmt:
        return jobs
    base = Path(output_dir or ".")

    def target(f: Found, keep_extension: bool) -> Path:
        return base / f.rel.parent / (f"{f.rel.name if keep_extension else f.rel.stem}.{fmt}")

    groups: dict[Path, list[int]] = defaultdict(list)
    for i, f in enumerate(found):
        groups[target(f, False)].append(i)
    clashing = {i for members in groups.values() if len(members) > 1 for i in members}
    owner: dict[Path, int] = {}
    for i, f in enumerate(found):
        out = target(f, i in clashing)
        if out in owner:
            raise BatchError(f"{found[owner[out]].path} and {f.path} would both write {target(f, False)}; give "
                             "their common folder instead, so that the outputs mirror its subfolders")
        owner[out] = i
        jobs[i].output = out
    return jobs


def output_complete(path: Path) -> bool:
    """Outputs appear only by rename once fully written, and every format has at least a newline: an empty
    file can only be a leftover of a crash of the machine (the data never reached the disk)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def header_seconds(path: str) -> float:
    """Duration from the file header (fast: no decoding), 0 when it cannot be read."""
    from .. import audio

    try:
        if hasattr(audio, "audio_duration"):
            return max(0.0, float(audio.audio_duration(path) or 0.0))
        import soundfile as sf

        return max(0.0, float(sf.info(path).duration))
    except Exception:  # any unreadable file: it fails later with the loader's one-line message
        return 0.0


# ---------------------------------------------------------------- the workers


@dataclass
class WorkerSpec:
    """Everything a worker needs to build its model and decoder (picklable: sent to processes and Ray)."""
    model: Optional[str] = None  # None: the bundled model
    int8: bool = False
    lm: Optional[str] = None  # None: greedy (or lexicon-free beam search with beam_size)
    beam_size: int = 0
    lm_weight: Optional[float] = None
    word_score: Optional[float] = None
    silence_score: Optional[float] = None
    hotwords: dict = field(default_factory=dict)
    align: bool = False
    stream_chunk_ms: float = 0
    threads: int = 1  # torch threads per worker

    def build(self) -> tuple[AcousticModel, Optional[BeamSearchDecoder]]:
        from ..model import load_model
        from ..transcribe import make_decoder

        model = load_model(self.model, self.int8)
        decoder = make_decoder(model.config.vocab, self.lm, self.beam_size, self.lm_weight, self.word_score,
                               self.hotwords or None, self.silence_score)
        return model, decoder


def spec_from_args(args: argparse.Namespace, align: bool) -> WorkerSpec:
    """The worker recipe for `asr transcribe`'s options; a bad option ends the command with one line."""
    from ..decoding import parse_hotwords
    from .common import chosen_lm

    try:
        hotwords = parse_hotwords(args.hotword or [])
    except ValueError as e:
        raise SystemExit(f"asr: error: {e}") from None
    lm = chosen_lm(args)
    # The mistakes make_decoder would find in every worker, found once before any worker starts.
    if lm and not Path(lm).is_file():
        raise SystemExit(f"asr: error: {lm}: language model file not found")
    if hotwords and not lm:
        raise SystemExit("asr: error: hotwords need a word n-gram LM (--lm)")
    return WorkerSpec(model=args.model, int8=args.int8, lm=lm, beam_size=args.beam_size,
                      lm_weight=args.lm_weight, word_score=args.word_score, silence_score=args.silence_score,
                      hotwords=hotwords, align=align, stream_chunk_ms=args.stream_chunk_ms)


def transcribe_job(model: AcousticModel, decoder: Optional[BeamSearchDecoder], spec: WorkerSpec, path: str,
                   progress: Optional[Callable[[float], None]] = None) -> Outcome:
    """One file -> its Outcome; never raises for a bad file (an archive run must go on). `progress(seconds)`
    follows a long file as it is decoded."""
    from ..audio import AudioError
    from ..transcribe import transcribe_file

    try:
        r = transcribe_file(model, path, decoder, align=spec.align, stream_chunk_ms=spec.stream_chunk_ms,
                            progress=progress)
    except AudioError as e:
        return Outcome(error=str(e))
    except Exception as e:  # a decoder or model failure on one odd file: report it, keep going
        return Outcome(error=f"{path}: {type(e).__name__}: {_first_line(e)}")
    return Outcome(r.text, list(r.words), r.duration)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel SIGKILLs this worker when the driver dies, kill -9 included, so no orphan goes on
    decoding (and competing with a rerun) after the driver is gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the driver died before the request took effect
        os._exit(1)


def _set_process_name(name: bytes) -> None:
    """Linux: the name `top` and `ps -o comm` show (and /proc/PID/comm), at most 15 bytes."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # 15 = PR_SET_NAME
        except (OSError, AttributeError):
            pass


def _worker_main(conn: Connection, spec: WorkerSpec, parent: int) -> None:
    """A worker process: build the model and decoder once, then transcribe (index, path) until told to stop."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the driver decides
    import torch

    torch.set_num_threads(spec.threads)
    try:
        model, decoder = spec.build()
    except Exception as e:  # bad model or LM: the same message in every worker; the driver stops the run
        conn.send(("fatal", f"{e}"))
        return
    _set_process_name(WORKER_NAME)  # from now on it transcribes (before: still loading)
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if task is None:
            return
        index, path = task
        last = time.monotonic()

        def progress(seconds: float, index: int = index) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_MESSAGE_SECONDS:  # a long file: tell the driver now and then
                last = time.monotonic()
                conn.send(("progress", index, seconds))

        conn.send(("done", index, transcribe_job(model, decoder, spec, path, progress)))


# Backends: generators of events, ("ready", workers) once every worker has its model, ("done", job, outcome) per
# file; progress within a file goes to their `on_progress(job, seconds done)`.
Event = tuple
OnProgress = Callable[[Job, float], None]


def _no_progress(job: Job, seconds: float) -> None:
    pass


def run_inline(jobs: Sequence[Job], spec: WorkerSpec, on_progress: OnProgress = _no_progress) -> Iterator[Event]:
    """In this process, one file after the other, with `spec.threads` torch threads (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        try:
            model, decoder = spec.build()
        except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
            raise BatchError(str(e)) from None
        yield ("ready", 1)
        for job in jobs:
            yield ("done", job, transcribe_job(model, decoder, spec, job.path,
                                               lambda seconds, job=job: on_progress(job, seconds)))
    finally:
        torch.set_num_threads(threads)


def run_processes(jobs: Sequence[Job], spec: WorkerSpec, workers: int,
                  on_progress: OnProgress = _no_progress) -> Iterator[Event]:
    """`workers` spawned processes, each given one file at a time: a kill loses at most `workers` files, and a
    worker that dies (e.g. killed by the OOM killer) is blamed for exactly the file it had, then replaced.

    spawn, not fork: forking a process that has run torch (whose thread pools hold locks) can deadlock."""
    ctx = mp.get_context("spawn")
    todo = list(reversed(jobs))  # pop() from the end = input order
    procs: dict[Connection, Any] = {}
    busy: dict[Connection, Optional[Job]] = {}
    ready: set[Connection] = set()
    ever_ready = 0  # workers that got as far as loading: a fast one may be done and gone before the last loads
    announced = False
    respawns = 0
    finished = False

    def start() -> None:
        parent_end, child_end = ctx.Pipe()
        p = ctx.Process(target=_worker_main, args=(child_end, spec, os.getpid()), daemon=True,
                        name="asr-transcribe-worker")
        p.start()
        child_end.close()
        procs[parent_end] = p
        give(parent_end)  # queued in the pipe while the worker loads its model

    def give(conn: Connection) -> None:
        job = todo.pop() if todo else None
        busy[conn] = job
        try:
            conn.send(None if job is None else (job.index, job.path))
        except OSError:  # it just died: its sentinel says so next
            pass

    try:
        for _ in range(min(workers, len(jobs))):
            start()
        while any(job is not None for job in busy.values()):
            sentinels = {procs[c].sentinel: c for c in procs}
            for obj in wait(list(procs) + list(sentinels)):
                conn = sentinels.get(obj, obj)
                if conn not in procs:
                    continue  # handled through its other handle in this round
                alive = True
                try:
                    while alive and conn.poll():  # results first: a worker may exit right after sending one
                        message = conn.recv()
                        if message[0] == "fatal":
                            raise BatchError(message[1])
                        if message[0] == "ready":
                            ready.add(conn)
                            ever_ready += 1
                            if not announced and len(ready) == len(procs):
                                announced = True
                                yield ("ready", ever_ready)
                            continue
                        job = busy[conn]
                        if message[0] == "progress":
                            if job is not None and job.index == message[1]:
                                on_progress(job, message[2])
                            continue
                        if job is not None:
                            give(conn)
                            yield ("done", job, message[2])
                except (EOFError, OSError):
                    alive = False
                if alive and procs[conn].is_alive():
                    continue
                p = procs.pop(conn)
                p.join(1)
                conn.close()
                job = busy.pop(conn)
                was_ready = conn in ready
                ready.discard(conn)
                if job is None:
                    continue  # it was told to stop
                if not was_ready:  # died while starting: its file was never tried
                    respawns += 1
                    if respawns > 2 * workers:
                        raise BatchError(f"worker processes exit while starting (exit code {p.exitcode})")
                    todo.append(job)
                else:
                    yield ("done", job, Outcome(error=f"{job.path}: the worker process died while transcribing it "
                                                      f"(exit code {p.exitcode}; out of memory?)"))
                if todo:
                    start()
        finished = True
    finally:
        for conn in procs:
            try:
                conn.send(None)
            except OSError:
                pass
        # Idle workers exit on the None; after an interruption or error, do not wait for a file in progress.
        deadline = time.monotonic() + (5 if finished else 0)
        for conn, p in procs.items():
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
            conn.close()


class RayWorker:
    """A Ray actor: builds the model and decoder once, then transcribes files (by path on a shared filesystem,
    or sent as bytes by the driver)."""

    def __init__(self, spec: WorkerSpec):
        import torch

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.error: Optional[str] = None
        try:
            self.model, self.decoder = spec.build()
        except Exception as e:  # reported to the driver on every call, which stops the run
            self.error = str(e)

    def ready(self) -> Optional[str]:
        return self.error

    def transcribe(self, path: str, data: Optional[bytes] = None) -> Outcome:
        if self.error:
            return Outcome(error=self.error, fatal=True)
        if data is None:
            return transcribe_job(self.model, self.decoder, self.spec, path)
        import tempfile

        # The loader reads paths, so the bytes go to a temp file with the same extension (it picks the decoder).
        with tempfile.NamedTemporaryFile(suffix=Path(path).suffix) as f:
            f.write(data)
            f.flush()
            outcome = transcribe_job(self.model, self.decoder, self.spec, f.name)
        if outcome.error:
            outcome.error = outcome.error.replace(f.name, path)
        return outcome


def run_ray(jobs: Sequence[Job], spec: WorkerSpec, address: Optional[str], workers: int = 0,
            send_audio: bool = False, on_progress: OnProgress = _no_progress) -> Iterator[Event]:
    """The same work on Ray actors (one CPU each; `workers` of them, default: the cluster's CPUs). Results come
    back to the driver, which writes the outputs: only the inputs must be readable on the workers, unless
    `send_audio` ships each file's bytes from the driver. Uses an already initialized Ray (tests), else
    connects to `address` (ray.init semantics: None = RAY_ADDRESS or a cluster on this machine, else a new
    local instance; "local" = always a new local instance) and shuts down what it started. Progress is per
    file (`on_progress` is not called)."""
    try:
        import ray
        from ray.exceptions import RayActorError
    except ImportError:
        raise BatchError("--ray needs Ray: pip install 'asr[ray]'") from None

    owned = not ray.is_initialized()
    if owned:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = max(1, min(n, len(jobs)))
        actor_class = ray.remote(num_cpus=1)(RayWorker)
        # An actor gets files once its model is loaded: on a busy cluster an actor that is never placed holds none.
        starting = {}  # ready() ref -> actor
        for _ in range(n):
            actor = actor_class.remote(spec)
            starting[actor.ready.remote()] = actor
        todo = list(reversed(jobs))
        pending: dict[Any, tuple[Job, Any]] = {}  # ObjectRef -> (job, actor)
        order: dict[Any, list] = defaultdict(list)  # actor -> its refs in submission order (the first is running)
        early: list[tuple[Job, Outcome]] = []  # files that failed before reaching an actor
        replaced = 0

        def fill(actor: Any) -> None:
            while todo and len(order[actor]) < RAY_IN_FLIGHT:
                job = todo.pop()
                data = None
                if send_audio:
                    try:
                        data = Path(job.path).read_bytes()
                    except OSError as e:
                        early.append((job, Outcome(error=f"{job.path}: cannot read ({e.strerror or e})")))
                        continue
                ref = actor.transcribe.remote(job.path, data)
                pending[ref] = (job, actor)
                order[actor].append(ref)

        def replace(cause: str) -> None:
            nonlocal replaced
            replaced += 1
            if replaced > 3 * n:
                raise BatchError(f"Ray workers keep dying ({cause}); see the worker logs "
                                 "(/tmp/ray/session_latest/logs on the nodes)")
            actor = actor_class.remote(spec)
            starting[actor.ready.remote()] = actor

        while pending or early or (starting and todo):
            while early:
                yield ("done", *early.pop(0))
            if not (pending or starting):
                break
            done, _ = ray.wait(list(pending) + list(starting), num_returns=1)
            for ref in done:
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        error = ray.get(ref)
                    except RayActorError as e:
                        replace(_first_line(e))
                        continue
                    if error:  # bad model or LM: every worker would say the same
                        raise BatchError(error)
                    fill(actor)
                    if not starting:
                        yield ("ready", n)
                    continue
                if ref not in pending:
                    continue
                job, actor = pending[ref]
                try:
                    outcome = ray.get(ref)
                except RayActorError as e:
                    # The actor died: blame the file it was running (its oldest), re-queue the ones behind it.
                    for i, r in enumerate(order.pop(actor, [ref])):
                        queued, _ = pending.pop(r)
                        if i == 0:
                            early.append((queued, Outcome(error=f"{queued.path}: the Ray worker died while "
                                                                f"transcribing it ({_first_line(e)})")))
                        else:
                            todo.append(queued)
                    replace(_first_line(e))
                    continue
                del pending[ref]
                order[actor].remove(ref)
                if outcome.fatal:
                    raise BatchError(outcome.error or "a Ray worker could not start")
                fill(actor)
                yield ("done", job, outcome)
    finally:
        if owned:
            ray.shutdown()


# ---------------------------------------------------------------- progress, stdout, summary


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Reporter:
    """Plain: stdout lines, error lines, and (if `progress`) a progress line at most every
    PLAIN_PROGRESS_SECONDS on stderr."""

    def __init__(self, files: int, seconds: float, progress: bool):
        self.files, self.seconds, self.progress = files, seconds, progress
        self.done_files, self.done_seconds = 0, 0.0
        self.partial: dict[int, float] = {}  # job index -> seconds done in a file still being transcribed
        self.start = time.monotonic()
        self._last = self.start

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def out(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def err(self, line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def status(self, text: str) -> None:
        if self.progress and text:
            self.err(f"asr: {text}")

    def within(self, job: Job, seconds: float) -> None:
        """Progress inside a long file."""
        self.partial[job.index] = min(seconds, job.seconds) if job.seconds else 0.0

    @property
    def seconds_so_far(self) -> float:
        return self.done_seconds + sum(self.partial.values())

    def advance(self, job: Job, seconds: float) -> None:
        self.partial.pop(job.index, None)
        self.done_files += 1
        self.done_seconds += seconds
        now = time.monotonic()
        if self.progress and (now - self._last >= PLAIN_PROGRESS_SECONDS or self.done_files == self.files):
            self._last = now
            self.err(f"asr: progress: {self.line()}")

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = self.seconds_so_far
        text = (f"{self.done_files}/{self.files} files, {_clock(done)}/{_clock(self.seconds)} of audio, "
                f"{_clock(elapsed)} elapsed")
        if 0 < done < self.seconds and self.done_files < self.files:
            text += f", ETA {_clock(elapsed * (self.seconds - done) / done)}"
        return text


class RichReporter(Reporter):
    """A progress bar on the terminal (stderr): files, audio hours, elapsed, ETA from the audio rate. Lines
    meant for a terminal are printed above the bar; stdout that is not the terminal is written as is."""

    def __init__(self, files: int, seconds: float):
        super().__init__(files, seconds, True)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.bar = Progress(BarColumn(bar_width=24), TextColumn("{task.fields[files]}"),
                            TextColumn("{task.fields[audio]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=self.console, transient=True, redirect_stdout=False,
                            redirect_stderr=False)
        # The bar counts audio seconds (ETA follows the audio still to do, not the file count); a run whose
        # headers were all unreadable counts files instead.
        self.unit_files = seconds <= 0
        self.task = self.bar.add_task("", total=files if self.unit_files else seconds, files="", audio="")
        self._status = ""
        self._refresh_fields()
        self.stdout_tty = sys.stdout.isatty()

    def __enter__(self) -> "RichReporter":
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def _refresh_fields(self) -> None:
        done = self.seconds_so_far
        self.bar.update(self.task, files=f"{self.done_files}/{self.files} files",
                        audio=f"{_clock(done)}/{_clock(self.seconds)} audio" + self._status,
                        completed=self.done_files if self.unit_files else done)

    def out(self, line: str) -> None:
        if self.stdout_tty:  # the same terminal: print above the bar
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            super().out(line)

    def err(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def status(self, text: str) -> None:
        self._status = f" ({text})" if text else ""
        self._refresh_fields()

    def within(self, job: Job, seconds: float) -> None:
        super().within(job, seconds)
        self._refresh_fields()

    def advance(self, job: Job, seconds: float) -> None:
        self.partial.pop(job.index, None)
        self.done_files += 1
        self.done_seconds += seconds
        self._status = ""
        self._refresh_fields()


@dataclass
class Summary:
    files: int = 0  # inputs found
    done: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0  # transcribed
    wall_seconds: float = 0.0
    startup_seconds: float = 0.0  # until every worker had its model (and Ray was up)
    audio_at_ready: float = 0.0  # seconds of audio transcribed by then (by the workers that were ready first)
    workers: int = 1
    backend: str = "inline"
    empty_folders: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def rtf(self) -> float:
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")

    @property
    def hours_per_hour(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else float("nan")

    def lines(self) -> list[str]:
        how = {"inline": "in this process", "processes": f"with {self.workers} worker processes",
               "ray": f"with {self.workers} Ray workers"}[self.backend]
        head = (f"asr: {'interrupted: ' if self.interrupted else ''}{self.files} files: {self.done} transcribed, "
                f"{self.skipped} skipped (output exists), {len(self.failures)} failed; "
                f"{self.audio_seconds / 3600:.3f} h of audio in {_clock(self.wall_seconds)} {how}")
        if self.audio_seconds:
            head += f": RTF {self.rtf:.3f}, {self.hours_per_hour:.1f} audio hours per hour"
        lines = [head]
        for reason in self.failures[:MAX_LISTED_FAILURES]:
            lines.append(f"asr: failed: {reason}")
        if len(self.failures) > MAX_LISTED_FAILURES:
            lines.append(f"asr: failed: ... and {len(self.failures) - MAX_LISTED_FAILURES} more (their error lines "
                         "are above)")
        if self.empty_folders:
            lines.append(f"asr: {len(self.empty_folders)} folder(s) had no audio (see above)")
        return lines


def write_output(fmt: str, job: Job, outcome: Outcome) -> None:
    from ..output import render
    from ..utils import atomic_write

    assert job.output is not None
    content = render(fmt, outcome.text, outcome.words)
    with atomic_write(job.output) as f:  # temp file + rename: a kill never leaves half an output
        f.write(content)


def run_batch(jobs: Sequence[Job], events: Callable[[Sequence[Job], OnProgress], Iterator[Event]],
              reporter: Reporter, fmt: Optional[str], summary: Summary, print_lines: bool = True) -> Summary:
    """Drives a backend: writes outputs, prints stdout lines in input order and errors as they come,
    advances progress, fills `summary` (also when interrupted: KeyboardInterrupt propagates after)."""
    start = time.monotonic()
    if not jobs:
        return summary  # nothing to do: do not even load the model
    lines: dict[int, Optional[str]] = {}  # finished, not yet printed (None: nothing to print)
    order = [j.index for j in jobs]
    cursor = 0

    def flush() -> None:
        nonlocal cursor
        while cursor < len(order) and order[cursor] in lines:
            line = lines.pop(order[cursor])
            if line is not None and print_lines:
                reporter.out(line)
            cursor += 1

    backend = events(jobs, reporter.within)
    try:
        where = {"processes": " in each worker process", "ray": " in each Ray worker"}.get(summary.backend, "")
        reporter.status(f"loading the model and decoder{where}" if not isinstance(reporter, RichReporter) else
                        "starting")
        for event in backend:
            if event[0] == "ready":
                summary.startup_seconds = time.monotonic() - start
                summary.audio_at_ready = summary.audio_seconds
                if len(event) > 1:
                    summary.workers = event[1]
                reporter.status("")
                continue
            _, job, outcome = event
            line: Optional[str] = None
            if outcome.error is None and job.output is not None and fmt:
                try:
                    write_output(fmt, job, outcome)
                except OSError as e:
                    outcome.error = f"{job.path}: cannot write {job.output}: {e.strerror or e}"
                    line = f"{job.path}: {outcome.text}"  # transcribed all the same: keep the text on stdout
            if outcome.error is None:
                summary.done += 1
                summary.audio_seconds += outcome.duration
                line = f"{job.path}: {outcome.text}"
            else:
                summary.failures.append(outcome.error)
                reporter.err(f"asr: error: {outcome.error}")
            lines[job.index] = line
            flush()
            reporter.advance(job, job.seconds or outcome.duration)
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        backend.close()  # stops the workers now, also when interrupted
        flush()
        summary.wall_seconds = time.monotonic() - start
    return summary


# ---------------------------------------------------------------- the command


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..model import DEFAULT_MODEL
    from ..output import FORMATS
    from .common import add_decoder_arguments

    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER",
                   help="audio files, and folders searched recursively for " +
                        " ".join(sorted(e[1:] for e in AUDIO_EXTENSIONS)))
    p.add_argument("--model", help=f"model checkpoint (default: bundled {DEFAULT_MODEL.name})")
    p.add_argument("--int8", action="store_true", help="int8 GRU/linear weights (faster on CPU)")
    p.add_argument("--stream-chunk-ms", type=float, default=0,
                   help="run the file through the streaming recognizer in chunks of N ms")
    add_decoder_arguments(p)
    p.add_argument("--output-format", choices=FORMATS,
                   help="also write one file per input (<stem>.<format>) with word times and confidences")
    p.add_argument("--output-dir", help="folder for the output files, mirroring the input folders; existing "
                                        f"outputs are skipped (default format: {DEFAULT_OUTPUT_FORMAT}; without "
                                        "this option --output-format writes to the current folder)")
    p.add_argument("--overwrite", action="store_true", help="with --output-dir: redo files whose output exists")
    p.add_argument("-j", "--jobs", type=int, metavar="N",
                   help=f"worker processes, one torch thread each (default: the cores, {available_cores()} here; "
                        f"one process for runs under {SMALL_RUN_SECONDS:.0f} s of audio). With --ray: Ray workers "
                        "(default: the cluster's CPUs)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress and a summary on stderr (default: on a terminal, or with a folder or --output-dir)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run on a Ray cluster (pip install 'asr[ray]'): ADDRESS as for `ray.init` (host:6379, "
                        "ray://host:10001, `local` for a new local instance); no ADDRESS: RAY_ADDRESS or the "
                        "cluster started on this machine, else a new local instance")
    p.add_argument("--ray-send-audio", action="store_true",
                   help="with --ray: send each file's bytes from this machine (no shared filesystem needed)")


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Exit code: 0 if at least one file has its transcript (now, or skipped: its output exists); 1 if none
    has, if a folder had no audio, or if the workers could not start; 2 for outputs that would clash;
    130 on Ctrl-C."""
    from .common import command_model, error

    if args.jobs is not None and args.jobs < 1:
        raise SystemExit("asr: error: --jobs must be at least 1")
    if args.ray_send_audio and args.ray is None:
        raise SystemExit("asr: error: --ray-send-audio needs --ray")
    fmt = args.output_format or (DEFAULT_OUTPUT_FORMAT if args.output_dir else None)
    resume = bool(args.output_dir) and not args.overwrite
    command_model(args.model, args.int8)  # a bad --model: one line now, not one per worker
    spec = spec_from_args(args, align=bool(fmt))

    found, empty = find_audio(args.inputs)
    try:
        jobs = plan_outputs(found, args.output_dir, fmt)
    except BatchError as e:
        error(str(e))
        return 2
    summary = Summary(files=len(jobs), empty_folders=empty)
    for e in empty:
        error(e)
    todo = [j for j in jobs if not (resume and j.output is not None and output_complete(j.output))]
    summary.skipped = len(jobs) - len(todo)
    for j in todo:
        j.seconds = header_seconds(j.path)
    total = sum(j.seconds for j in todo)

    cores = available_cores()
    if args.ray is not None:
        summary.backend, summary.workers = "ray", args.jobs or 0  # 0: the cluster's CPUs, known once up
        spec.threads = 1
        events: Callable = lambda js, on_progress: run_ray(js, spec, args.ray or None, args.jobs or 0,
                                                           args.ray_send_audio, on_progress)
    else:
        jobs_n = args.jobs or cores
        small = args.jobs is None and total < SMALL_RUN_SECONDS
        workers = 1 if small else max(1, min(jobs_n, len(todo)))
        # Cores left over when there are fewer files than jobs go to the workers as torch threads.
        spec.threads = max(1, jobs_n // workers)
        summary.workers = workers
        if workers == 1:
            events = lambda js, on_progress: run_inline(js, spec, on_progress)
        else:
            summary.backend = "processes"
            events = lambda js, on_progress: run_processes(js, spec, workers, on_progress)

    interactive = sys.stderr.isatty()
    batchy = bool(args.output_dir) or any(os.path.isdir(i) for i in args.inputs)
    show = args.progress if args.progress is not None else (interactive or batchy)
    reporter = RichReporter(len(todo), total) if show and interactive else Reporter(len(todo), total, show)
    code = 0
    try:
        with reporter:
            run_batch(todo, events, reporter, fmt, summary)
    except BatchError as e:
        error(str(e))
        code = 1
    except KeyboardInterrupt:
        code = 130
    if show:
        for line in summary.lines():
            print(line, file=sys.stderr, flush=True)
    if code:
        return code
    # A skipped file has its transcript from an earlier run: a resumed run exits as the first one would have.
    if empty or (jobs and summary.done + summary.skipped == 0):
        return 1  # nothing transcribed, or a folder without audio (probably a wrong path)
    return 0


# ---------------------------------------------------------------- benchmark (asr bench --batch)


def read_sources(sources: Sequence[str], every: int = 1) -> list[str]:
    """Audio files from files, folders and jsonl manifests (their "path" field, relative to the manifest),
    keeping every `every`-th one in order."""
    import json

    files: list[str] = []
    for source in sources:
        if source.endswith(".jsonl") and os.path.isfile(source):
            base = os.path.dirname(source)
            with open(source, encoding="utf-8") as f:
                files += [os.path.join(base, json.loads(line)["path"]) for line in f if line.strip()]
        else:
            files += [x.path for x in find_audio([source])[0]]
    return files[::max(1, every)]


def benchmark(files: Sequence[str], spec: WorkerSpec, jobs: Sequence[int], ray_workers: int = 0,
              log: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Transcribes the same files with each worker count (and on a local Ray instance with `ray_workers`),
    writing nothing; one row per run: wall time, startup, audio, throughput."""
    js = [Job(i, f, None, header_seconds(f)) for i, f in enumerate(files)]
    audio = sum(j.seconds for j in js)
    runs: list[tuple[str, int, Callable]] = []
    for n in jobs:
        s = WorkerSpec(**{**spec.__dict__, "threads": 1})
        runs.append(("processes" if n > 1 else "inline", n,
                     (lambda jobs_, _, s=s, n=n: run_processes(jobs_, s, n)) if n > 1 else
                     (lambda jobs_, _, s=s: run_inline(jobs_, s))))
    if ray_workers:
        s = WorkerSpec(**{**spec.__dict__, "threads": 1})
        runs.append(("ray", ray_workers, lambda jobs_, _, s=s: _local_ray(jobs_, s, ray_workers)))
    rows = []
    for backend, n, events in runs:
        log(f"{backend}, {n} worker(s): {len(js)} files, {audio / 3600:.3f} h")
        summary = Summary(files=len(js), workers=n, backend=backend)
        run_batch(js, events, Reporter(len(js), audio, False), None, summary, print_lines=False)
        steady = summary.wall_seconds - summary.startup_seconds
        rows.append({"backend": backend, "workers": n, "files": len(js), "done": summary.done,
                     "failed": len(summary.failures), "audio_hours": summary.audio_seconds / 3600,
                     "wall_seconds": summary.wall_seconds, "startup_seconds": summary.startup_seconds,
                     "hours_per_hour": summary.hours_per_hour,
                     "steady_hours_per_hour": (summary.audio_seconds - summary.audio_at_ready) / steady
                     if steady > 0 else float("nan"),
                     "load_average": os.getloadavg()[0]})
    return rows


def _local_ray(jobs: Sequence[Job], spec: WorkerSpec, workers: int) -> Iterator[Event]:
    """A new local Ray instance with `workers` CPUs, started and stopped inside the timed run."""
    try:
        import ray
    except ImportError:
        raise BatchError("Ray is not installed: pip install 'asr[ray]'") from None
    ray.init(address="local", num_cpus=workers, logging_level=logging.WARNING, log_to_driver=False)
    try:
        yield from run_ray(jobs, spec, None, workers)
    finally:
        ray.shutdown()


def format_benchmark(rows: Sequence[dict]) -> str:
    """A markdown table; Ray's overhead is against the process run with the same worker count."""
    out = ["| run | workers | files | audio h | wall s | startup s | audio h per wall h | steady-state | load avg |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    by_n = {r["workers"]: r for r in rows if r["backend"] != "ray"}
    for r in rows:
        name = {"inline": "1 process", "processes": f"{r['workers']} processes", "ray": f"Ray, {r['workers']} actors"}
        out.append(f"| {name[r['backend']]} | {r['workers']} | {r['done']}/{r['files']} | {r['audio_hours']:.3f} | "
                   f"{r['wall_seconds']:.1f} | {r['startup_seconds']:.1f} | {r['hours_per_hour']:.1f} | "
                   f"{r['steady_hours_per_hour']:.1f} | {r['load_average']:.2f} |")
    for r in rows:
        base = by_n.get(r["workers"])
        if r["backend"] == "ray" and base:
            out.append("")
            out.append(f"Ray vs {r['workers']} processes: wall time {r['wall_seconds'] / base['wall_seconds']:.2f}x "
                       f"({r['wall_seconds'] - base['wall_seconds']:+.1f} s, of which startup "
                       f"{r['startup_seconds'] - base['startup_seconds']:+.1f} s); steady-state throughput "
                       f"{r['steady_hours_per_hour'] / base['steady_hours_per_hour']:.2f}x")
    return "\n".join(out)


def run_benchmark(args: argparse.Namespace) -> int:
    """`asr bench --batch SOURCE...`: the throughput table of docs/batch.md, printed as markdown."""
    import importlib.util
    import json

    from .common import chosen_lm, command_model, error

    command_model(args.model)
    lm = args.lm or chosen_lm(argparse.Namespace(no_lm=False, lm=None))  # transcribe's default: the bundled LM
    spec = WorkerSpec(model=args.model, lm=lm)
    files = read_sources(args.batch, args.batch_every)
    if not files:
        error("no audio files in " + " ".join(args.batch))
        return 1
    cores = available_cores()
    jobs = args.batch_jobs or sorted({1, 2, cores})
    ray_workers = args.batch_ray if importlib.util.find_spec("ray") else 0
    if args.batch_ray and not ray_workers:
        print("asr: Ray is not installed: no Ray row (pip install 'asr[ray]')", file=sys.stderr)
    before = os.getloadavg()
    rows = benchmark(files, spec, jobs, ray_workers, log=lambda s: print(f"bench: {s}", file=sys.stderr, flush=True))
    after = os.getloadavg()
    print(format_benchmark(rows))
    print(f"\n{cores} cores; load average (1/5/15 min) before {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
          f"after {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}; decoder: "
          f"{'beam search + ' + Path(lm).name if lm else 'greedy'}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0
