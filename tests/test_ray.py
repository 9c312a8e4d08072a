"""`asr transcribe --ray`: the same work on Ray actors writes the same outputs as worker processes.

On a local Ray instance that the tests start on this machine (2 CPUs); skipped if Ray is not installed
(it is an optional extra: pip install 'asr[ray]')."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from asr.apps.cli import main

from test_batch import SUMMARY, make_tree, noise, tiny_model  # noqa: F401 (tiny_model is a fixture)

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'asr[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance in this process; `asr transcribe --ray` uses an initialized Ray as it is."""
    ray.init(address="local", num_cpus=2, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_ray_writes_what_processes_write_and_resumes(local_ray, tiny_model, tmp_path, capsys):
    root = tmp_path / "archive"
    make_tree(root)
    common = ["--no-lm", "--model", str(tiny_model), "--output-format", "json"]
    assert main(["transcribe", str(root), "--jobs", "1", "--output-dir", str(tmp_path / "ref"), *common]) == 0
    reference = capsys.readouterr().out.splitlines()
    for name, extra in (("shared", []), ("sent", ["--ray-send-audio"])):
        out = tmp_path / name
        assert main(["transcribe", str(root), "--ray", "--jobs", "2", "--output-dir", str(out), *common, *extra]) == 0
        captured = capsys.readouterr()
        assert captured.out.splitlines() == reference  # input order, the same transcripts
        assert files(out) == files(tmp_path / "ref")
        errors = [line for line in captured.err.splitlines() if line.startswith("asr: error:")]
        # With --ray-send-audio the worker decodes a temp copy; the message still names the input.
        assert errors == [f"asr: error: {root}/a/broken.wav: cannot decode audio (Error opening "
                          f"'{root}/a/broken.wav': Format not recognised.)"]
        assert SUMMARY.format(files=6, done=5, skipped=0, failed=1) in captured.err
        assert "with 2 Ray workers" in captured.err
    # Resumed: only the broken file is tried again.
    assert main(["transcribe", str(root), "--ray", "--output-dir", str(tmp_path / "shared"), *common]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and SUMMARY.format(files=6, done=0, skipped=5, failed=1) in captured.err


def test_ray_cli_starts_and_stops_its_own_local_instance(tiny_model, tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"rec{i}.wav", noise(1.0, i), 16000)
    args = ["transcribe", str(tmp_path), "--no-lm", "--model", str(tiny_model)]
    ref = subprocess.run([sys.executable, "-m", "asr", *args, "--jobs", "1"], capture_output=True, text=True,
                         check=True)
    run = subprocess.run([sys.executable, "-m", "asr", *args, "--ray", "local", "--jobs", "2"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ref.stdout and len(run.stdout.splitlines()) == 3
    assert SUMMARY.format(files=3, done=3, skipped=0, failed=0) in run.stderr
