"""`asr transcribe` at scale (asr/apps/batch.py): folders, output layout, resuming, worker processes, and runs
killed with SIGKILL at random moments that resume with every file done exactly once.

A tiny random-weight model stands in for a trained one: these tests are about the machinery, so they need
neither espeak-ng nor a training run, and its transcripts are deterministic garbage."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.apps.batch import AUDIO_EXTENSIONS, WORKER_NAME, Found, Job, WorkerSpec, plan_outputs, run_processes
from asr.apps.cli import main

SUMMARY = "asr: {files} files: {done} transcribed, {skipped} skipped (output exists), {failed} failed"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    import torch

    from asr.model import AcousticModel, ModelConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    AcousticModel(ModelConfig(hidden=64, layers=1)).save(path)
    return path


def noise(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(rate * seconds)) * 0.1).astype(np.float32)


def make_tree(root: Path) -> dict[str, Path]:
    """An archive with the awkward cases: the same stem in two folders and twice in one folder, hidden and
    non-audio files, an upper-case extension, a corrupt file, an empty subfolder."""
    files = {
        "a/talk.wav": (1.0, 16000), "b/talk.wav": (1.5, 16000), "b/talk.flac": (1.2, 44100),
        "b/deep/er/rec.OGG": (0.8, 22050), "c.wav": (0.6, 8000),
    }
    out = {}
    for rel, (seconds, rate) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = path.suffix[1:].upper()
        sf.write(path, noise(seconds, len(out), rate), rate, format=fmt,
                 **({"subtype": "VORBIS"} if fmt == "OGG" else {}))
        out[rel] = path
    (root / "a" / "broken.wav").write_bytes(b"RIFF\x00\x00 not a wav at all")
    (root / ".hidden").mkdir()
    sf.write(root / ".hidden" / "skip.wav", noise(0.5, 9), 16000)
    (root / "a" / "._talk.wav").write_bytes(b"macOS resource fork junk")
    (root / "notes.txt").write_text("not audio\n")
    (root / "empty").mkdir()
    return out


def transcribe(capsys, *argv) -> tuple[int, list[str], list[str]]:
    code = main(["transcribe", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_folders_are_searched_recursively_and_outputs_mirror_them(tiny_model, tmp_path, capsys):
    root = tmp_path / "archive"
    make_tree(root)
    out = tmp_path / "out"
    code, stdout, stderr = transcribe(capsys, root, "--no-lm", "--model", tiny_model, "--output-dir", out)
    assert code == 0
    # Input order is sorted path order within the folder; broken.wav fails and the run goes on.
    found = ["a/talk.wav", "b/deep/er/rec.OGG", "b/talk.flac", "b/talk.wav", "c.wav"]
    assert [line.split(": ", 1)[0] for line in stdout] == [os.path.join(str(root), f) for f in found]
    # Without --output-format, --output-dir writes txt; same stem in one folder keeps the audio extension.
    outputs = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert outputs == ["a/talk.txt", "b/deep/er/rec.txt", "b/talk.flac.txt", "b/talk.wav.txt", "c.txt"]
    for line in stdout:
        path, text = line.split(": ", 1)
        rel = Path(path).relative_to(root)
        name = rel.name if rel.parent == Path("b") and rel.stem == "talk" else rel.stem
        assert (out / rel.parent / f"{name}.txt").read_text() == text + "\n"
    assert [line for line in stderr if line.startswith("asr: error:")] == [
        f"asr: error: {root}/a/broken.wav: cannot decode audio (Error opening '{root}/a/broken.wav': "
        "Format not recognised.)"]
    assert any(line.startswith(SUMMARY.format(files=6, done=5, skipped=0, failed=1)) for line in stderr)
    assert f"asr: failed: {root}/a/broken.wav: cannot decode audio" in "\n".join(stderr)

    # Rerun: everything with an output is skipped, only the broken file is tried again.
    code, stdout, stderr = transcribe(capsys, root, "--no-lm", "--model", tiny_model, "--output-dir", out)
    assert code == 0 and stdout == []
    assert any(line.startswith(SUMMARY.format(files=6, done=0, skipped=5, failed=1)) for line in stderr)
    # An empty output is a crash leftover (the data never reached the disk), not a finished one: redone.
    (out / "c.txt").write_text("")
    code, stdout, stderr = transcribe(capsys, root, "--no-lm", "--model", tiny_model, "--output-dir", out)
    assert [line.split(": ", 1)[0] for line in stdout] == [f"{root}/c.wav"] and (out / "c.txt").stat().st_size > 0
    # --overwrite redoes all.
    code, stdout, stderr = transcribe(capsys, root, "--no-lm", "--model", tiny_model, "--output-dir", out,
                                      "--overwrite", "--output-format", "json")
    assert len(stdout) == 5 and len(list(out.rglob("*.json"))) == 5


def test_parallel_workers_print_the_same_in_input_order(tiny_model, tmp_path, capsys):
    root = tmp_path / "archive"
    make_tree(root)
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        code, stdout, stderr = transcribe(capsys, root, "--no-lm", "--model", tiny_model, "--jobs", jobs,
                                          "--output-dir", out, "--output-format", "json")
        assert code == 0
        assert any(line.startswith(SUMMARY.format(files=6, done=5, skipped=0, failed=1)) for line in stderr)
        assert ("with 2 worker processes" in stderr[-2]) == (jobs == "2"), stderr
        runs[jobs] = stdout, {p.relative_to(out): p.read_bytes() for p in out.rglob("*.json")}
    assert runs["1"] == runs["2"]
    assert len(runs["2"][0]) == 5


@dataclasses.dataclass
class _SecondLoadsSlowly(WorkerSpec):
    """The first worker to load is fast; the second waits until it has done every other file and left."""
    marker: str = ""

    def build(self):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(3)
        return super().build()


def test_workers_are_counted_when_a_fast_one_is_done_before_a_slow_one_loads(tiny_model, tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], noise(0.3, i), 16000)
    spec = _SecondLoadsSlowly(model=str(tiny_model), marker=str(tmp_path / "first"))
    events = list(run_processes([Job(i, str(p)) for i, p in enumerate(paths)], spec, workers=2))
    assert [e for e in events if e[0] == "ready"] == [("ready", 2)]
    assert sorted(e[1].index for e in events if e[0] == "done") == list(range(5))


def test_exit_codes_and_bad_input(tiny_model, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("no audio here\n")
    code, stdout, stderr = transcribe(capsys, tmp_path / "nothing", "--no-lm", "--model", tiny_model)
    assert code == 1 and stdout == []
    assert stderr[0].startswith(f"asr: error: {tmp_path}/nothing: no audio files in this folder or below")

    good = tmp_path / "good.wav"
    sf.write(good, noise(0.5, 1), 16000)
    # A folder without audio next to a good file: the file is transcribed, the exit code still says 1.
    code, stdout, _ = transcribe(capsys, good, tmp_path / "nothing", "--no-lm", "--model", tiny_model)
    assert code == 1 and len(stdout) == 1
    # Nothing could be transcribed -> 1; nothing left to do (all skipped) -> 0.
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC junk")
    assert transcribe(capsys, bad, tmp_path / "missing.wav", "--no-lm", "--model", tiny_model)[0] == 1
    out = tmp_path / "out"
    assert transcribe(capsys, good, "--no-lm", "--model", tiny_model, "--output-dir", out)[0] == 0
    code, stdout, stderr = transcribe(capsys, good, "--no-lm", "--model", tiny_model, "--output-dir", out)
    assert code == 0 and stdout == [] and "1 skipped" in stderr[-1]


def test_clashing_outputs_stop_before_any_work(tiny_model, tmp_path, capsys):
    for d in "xy":
        (tmp_path / d).mkdir()
        sf.write(tmp_path / d / "talk.wav", noise(0.3, 0), 16000)
    out = tmp_path / "out"
    code, stdout, stderr = transcribe(capsys, tmp_path / "x" / "talk.wav", tmp_path / "y" / "talk.wav",
                                      "--no-lm", "--model", tiny_model, "--output-dir", out)
    assert code == 2 and stdout == [] and not out.exists()
    assert stderr == [f"asr: error: {tmp_path}/x/talk.wav and {tmp_path}/y/talk.wav would both write "
                      f"{out}/talk.txt; give their common folder instead, so that the outputs mirror its subfolders"]
    # Given as their folder, they mirror it.
    code, stdout, _ = transcribe(capsys, tmp_path, "--no-lm", "--model", tiny_model, "--output-dir", out)
    assert code == 0 and sorted(p.relative_to(out).as_posix() for p in out.rglob("*.txt")) == ["x/talk.txt",
                                                                                              "y/talk.txt"]


def test_plan_outputs_and_extensions():
    jobs = plan_outputs([Found("d/a.wav", Path("a.wav")), Found("d/a.mp3", Path("a.mp3")),
                         Found("d/s/a.wav", Path("s/a.wav"))], "o", "srt")
    assert [j.output for j in jobs] == [Path("o/a.wav.srt"), Path("o/a.mp3.srt"), Path("o/s/a.srt")]
    assert [j.output for j in plan_outputs([Found("x.wav", Path("x.wav"))], None, None)] == [None]
    assert {".wav", ".flac", ".ogg", ".opus", ".mp3"} <= AUDIO_EXTENSIONS and ".m4a" not in AUDIO_EXTENSIONS


# ---------------------------------------------------------------- killed runs, for real


def children(pid: int) -> set[int]:
    """Child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def outputs(out: Path) -> dict[str, tuple[int, int]]:
    """Finished outputs (temp files of an interrupted write start with a dot) -> (inode, mtime)."""
    return {p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in out.rglob("*.json") if not p.name.startswith(".")}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_runs_killed_at_random_moments_resume_with_each_file_done_exactly_once(tiny_model, tmp_path, capsys):
    root = tmp_path / "archive"
    for i in range(24):  # ~0.3 s each with 10 ms streaming chunks: a few seconds of work for 2 workers
        path = root / f"part{i % 3}" / f"rec{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, noise(10.0, i % 4), 16000)
    common = ["--no-lm", "--model", str(tiny_model), "--stream-chunk-ms", "10", "--output-format", "json"]
    ref = tmp_path / "reference"
    assert main(["transcribe", str(root), "--jobs", "1", "--output-dir", str(ref), *common]) == 0
    capsys.readouterr()
    expected = {p.relative_to(ref).as_posix(): p.read_bytes() for p in ref.rglob("*.json")}
    assert len(expected) == 24

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "asr", "transcribe", str(root), "--jobs", "2", "--output-dir", str(out), *common]
    rng = random.Random(0)
    first_seen: dict[str, tuple[int, int]] = {}
    kills = 0
    while True:
        before = outputs(out) if out.exists() else {}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = False
        if kills < 3 and len(before) < 20:
            # Kill at a random moment after this run has written at least one output of its own.
            deadline = time.monotonic() + 120
            while proc.poll() is None and len(outputs(out) if out.exists() else {}) <= len(before):
                assert time.monotonic() < deadline, "no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.4))
            workers = children(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed = True
                kills += 1
        stdout, stderr = proc.communicate(timeout=300)
        after = outputs(out)
        if killed:
            # The workers die with the driver (PR_SET_PDEATHSIG): nothing goes on decoding.
            deadline = time.monotonic() + 10
            while any(alive(w) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(alive(w) for w in workers)
        else:
            assert proc.returncode == 0, stderr
            assert SUMMARY.format(files=24, done=24 - len(before), skipped=len(before), failed=0) in stderr
        # Every output is complete (byte-identical to the uninterrupted run's) and none was written twice:
        # a file finished by an earlier run keeps its inode and mtime (atomic rename makes a new inode).
        for name, stamp in after.items():
            assert (out / name).read_bytes() == expected[name], name
            assert first_seen.setdefault(name, stamp) == stamp, f"{name} was transcribed again"
        # This run printed a line for exactly the files it finished, each once (a killed run may not have
        # printed the last ones yet: lines keep input order).
        printed = [Path(line.split(": ", 1)[0]).relative_to(root).with_suffix(".json").as_posix()
                   for line in stdout.splitlines()]
        assert len(printed) == len(set(printed)) and set(printed) <= set(after) - set(before)
        if not killed:
            assert set(printed) == set(after) - set(before)
            break
    assert kills >= 1 and set(first_seen) == set(expected)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_killed_mid_file_fails_only_that_file(tiny_model, tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    for i in range(16):
        sf.write(root / f"rec{i:02d}.wav", noise(10.0, i % 4), 16000)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "asr", "transcribe", str(root), "--jobs", "2", "--no-lm",
                             "--model", str(tiny_model), "--stream-chunk-ms", "10", "--output-dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Once both workers have loaded the model (they rename themselves then), each always holds a file while
    # work remains: kill one. (The driver's other child is multiprocessing's resource tracker.)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline
        workers = [c for c in children(proc.pid) if process_name(c) == WORKER_NAME.decode()]
        if len(workers) == 2 and out.exists() and any(out.glob("*.txt")):
            break
        time.sleep(0.01)
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("asr: error:")]
    assert len(errors) == 1 and "the worker process died while transcribing it (exit code -9" in errors[0]
    assert SUMMARY.format(files=16, done=15, skipped=0, failed=1) in stderr
    assert len(stdout.splitlines()) == 15 and len(list(out.glob("*.txt"))) == 15
