"""A truncated, corrupt or wrong-version model checkpoint or language model gives one error line naming the
file (`asr: error: FILE: reason`), never a traceback or a crash."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.apps.cli import main
from asr.lm import DEFAULT_LM, words_path
from asr.model import AcousticModel, ModelConfig, load_model

ROOT = Path(__file__).resolve().parent.parent
WAV = ROOT / "assets" / "samples" / "flite-rms.wav"


def one_error_line(capsys, argv: list[str], name: Path) -> str:
    """Runs the command, which must fail with exactly one `asr: error:` line naming `name` (printed, or the
    message of the SystemExit that ends the command) and transcribe nothing."""
    capsys.readouterr()
    try:
        code = main(argv)
        message = ""
    except SystemExit as e:
        code, message = 1, str(e.code)
    out, err = capsys.readouterr()
    lines = [line for line in (err + message).splitlines() if line.strip()]
    assert code != 0 and out == "", (code, out)
    assert len(lines) == 1 and lines[0].startswith("asr: error: "), lines
    assert str(name) in lines[0], lines
    return lines[0]


# ---------------------------------------------------------------- model checkpoints

@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    AcousticModel(ModelConfig(hidden=32, layers=1)).save(path)
    return path


def _variants(good: Path, folder: Path) -> dict[str, Path]:
    data = good.read_bytes()
    ckpt = torch.load(good, weights_only=True)
    out: dict[str, Path] = {}

    def write(name: str, content: bytes) -> None:
        out[name] = folder / f"{name}.pt"
        out[name].write_bytes(content)

    def save(name: str, obj: object) -> None:
        out[name] = folder / f"{name}.pt"
        torch.save(obj, out[name])

    write("truncated-half", data[: len(data) // 2])
    write("truncated-end", data[:-20])
    write("truncated-header", data[:30])
    write("empty", b"")
    write("random-bytes", random.Random(0).randbytes(5000))
    write("a-wav-file", WAV.read_bytes())
    save("not-a-checkpoint", {"weights": [1, 2, 3]})
    save("a-list", [1, 2, 3])
    save("newer-format", dict(ckpt, format=99))
    save("unknown-config-field", dict(ckpt, config=dict(ckpt["config"], attention_heads=4)))
    save("config-wrong-type", dict(ckpt, config=dict(ckpt["config"], layers="three")))
    save("other-architecture", dict(ckpt, config=dict(ckpt["config"], hidden=64)))
    save("missing-weights", dict(ckpt, state_dict={k: v for k, v in ckpt["state_dict"].items() if "rnn" not in k}))
    save("training-checkpoint-truncated-model", {"model": {"config": ckpt["config"]}, "optimizer": {}})
    out["directory"] = folder / "a-folder.pt"
    out["directory"].mkdir()
    out["missing"] = folder / "no-such-model.pt"
    return out


def test_every_bad_checkpoint_gives_one_line_naming_it(small_checkpoint, tmp_path, capsys):
    assert load_model(small_checkpoint).config.hidden == 32
    for name, path in _variants(small_checkpoint, tmp_path).items():
        with pytest.raises((ValueError, FileNotFoundError)) as e:
            load_model(path)
        assert str(path) in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
        one_error_line(capsys, ["transcribe", "--model", str(path), "--no-lm", str(WAV)], path)


def test_newer_checkpoint_format_says_so(small_checkpoint, tmp_path, capsys):
    path = _variants(small_checkpoint, tmp_path)["newer-format"]
    argv = ["transcribe", "--model", str(path), "--no-lm", str(WAV)]
    assert "newer than this asr reads" in one_error_line(capsys, argv, path)


def test_saved_checkpoints_carry_their_format(small_checkpoint):
    assert torch.load(small_checkpoint, weights_only=True)["format"] == 1


# ---------------------------------------------------------------- language models

ARPA = """\\data\\
ngram 1=6
ngram 2=3

\\1-grams:
-1.0\t<s>\t-0.5
-1.0\t</s>
-1.0\t<unk>
-0.7\topen\t-0.3
-0.7\tdoor\t-0.3
-0.7\tthe\t-0.3

\\2-grams:
-0.2\topen the
-0.2\tthe door
-0.2\t<s> open

\\end\\
"""


def test_good_arpa_decodes(tmp_path, capsys):
    (tmp_path / "good.arpa").write_text(ARPA)
    assert main(["transcribe", "--lm", str(tmp_path / "good.arpa"), str(WAV)]) == 0
    assert capsys.readouterr().out.startswith(f"{WAV}: ")


@pytest.mark.parametrize("name, content", [
    ("truncated-ngrams.arpa", ARPA[: ARPA.index("\\2-grams") + 25]),
    ("truncated-unigrams.arpa", ARPA[:90]),
    ("garbled.arpa", random.Random(1).randbytes(3000)),
    ("wrong-counts.arpa", ARPA.replace("ngram 1=6", "ngram 1=60")),
    ("empty.arpa", b""),
    ("text.arpa", "just some words\nnot a language model\n"),
])
def test_bad_arpa_gives_one_line_naming_it(tmp_path, name, content, capsys):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    one_error_line(capsys, ["transcribe", "--lm", str(path), str(WAV)], path)


@pytest.mark.parametrize("settings", ['{"lm_weight": 1.0', '["not", "an", "object"]', '{"lm_weight": "high"}',
                                      b"\xff\xfe\x00garbage"])
def test_bad_tuned_settings_name_the_json_file(tmp_path, settings, capsys):
    lm = tmp_path / "lm.arpa"
    lm.write_text(ARPA)
    json_path = Path(str(lm) + ".json")
    json_path.write_bytes(settings if isinstance(settings, bytes) else settings.encode())
    one_error_line(capsys, ["transcribe", "--lm", str(lm), str(WAV)], json_path)


needs_binary = pytest.mark.skipif(not (DEFAULT_LM.is_file() and words_path(DEFAULT_LM).is_file()),
                                  reason="needs the bundled KenLM binary (assets/lm.bin + lm.words.txt)")


def _binary_copy(folder: Path, name: str, data: bytes, words: bytes | None = None) -> Path:
    path = folder / f"{name}.bin"
    path.write_bytes(data)
    if words is None:
        shutil.copy(words_path(DEFAULT_LM), words_path(path))
    elif words != b"-":  # "-": no word list at all
        words_path(path).write_bytes(words)
    return path


@needs_binary
def test_bad_kenlm_binaries_and_word_lists_give_one_line_naming_them(tmp_path, capsys):
    data = DEFAULT_LM.read_bytes()
    header_end = data.index(b"\n") + 1
    cases = {  # name -> (LM file, the file the message must name)
        "truncated-half": _binary_copy(tmp_path, "truncated-half", data[: len(data) // 2]),
        "truncated-header": _binary_copy(tmp_path, "truncated-header", data[: header_end + 40]),
        "wrong-version": _binary_copy(tmp_path, "wrong-version", data.replace(b"format version 5",
                                                                              b"format version 9", 1)),
        "no-word-list": _binary_copy(tmp_path, "no-word-list", data, b"-"),
    }
    targets = {name: path for name, path in cases.items()}
    garbled = _binary_copy(tmp_path, "garbled-words", data, random.Random(2).randbytes(4000))
    empty = _binary_copy(tmp_path, "empty-words", data, b"\n\n")
    targets["garbled-words"], cases["garbled-words"] = words_path(garbled), garbled
    targets["empty-words"], cases["empty-words"] = words_path(empty), empty
    for name, lm in cases.items():
        one_error_line(capsys, ["transcribe", "--lm", str(lm), str(WAV)], targets[name])


@needs_binary
def test_kenlm_binary_with_flipped_bytes_never_crashes_the_process(tmp_path):
    """Flipped bytes in its tables made KenLM itself segfault: the binary is now first loaded (and every word
    looked up) in a child process. Run in a subprocess so a crash fails this test instead of killing pytest."""
    data = bytearray(DEFAULT_LM.read_bytes())
    for i in range(200):
        data[random.Random(i).randrange(200, len(data))] ^= 0xFF
    lm = _binary_copy(tmp_path, "flipped", bytes(data))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    child = subprocess.run([sys.executable, "-m", "asr", "transcribe", "--lm", str(lm), str(WAV)],
                           capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert child.returncode in (0, 1), (child.returncode, child.stderr[-2000:])
    errors = [line for line in child.stderr.splitlines() if "warn" not in line.lower()]
    if child.returncode:
        assert len(errors) == 1 and errors[0].startswith(f"asr: error: {lm}: "), child.stderr
    else:  # the flips happened to miss everything KenLM reads: a transcript
        assert child.stdout.startswith(f"{WAV}: ")
