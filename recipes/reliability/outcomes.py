"""Every odd or bad input of tests/test_fuzz.py and tests/test_load_errors.py and what asr does with it (docs/reliability.md).

    python recipes/reliability/outcomes.py

Audio files go through asr.transcribe.transcribe_file (bundled model, greedy); checkpoints and language models
through `asr transcribe` (one error line each). Paths are shown as FILE / LM.
"""
import contextlib
import io
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import torch
torch.set_num_threads(1)
import test_fuzz as F
import test_load_errors as L
from asr.apps.cli import main
from asr.audio import AudioError
from asr.lm import DEFAULT_LM, words_path
from asr.model import AcousticModel, ModelConfig, load_model
from asr.transcribe import transcribe, transcribe_file

tmp = Path(tempfile.mkdtemp(prefix="rel-outcomes-"))
model = load_model()
speech = F.espeak(F.TEXT)
files = {n: F.encode(speech, fmt, st, r, ch) for n, (fmt, st, r, ch, _) in F.KINDS.items()}

def outcome(path):
    try:
        return "transcript: " + repr(transcribe_file(model, path).text)
    except AudioError as e:
        return "error: " + str(e).replace(str(path), "FILE").replace(str(tmp), "TMP")

print("## audio\n| input | outcome |\n|---|---|")
print(f"| (reference: the clean 16 kHz audio, espeak-ng) | transcript: {transcribe(model, speech).text!r} |")
for kind in sorted(F.KINDS):
    p = tmp / f"{kind}{F.KINDS[kind][4]}"; p.write_bytes(files[kind])
    print(f"| {kind} (valid) | {outcome(p)} |")
for name, data in F.bad_files(speech, files).items():
    p = tmp / name; p.write_bytes(data)
    print(f"| {name} | {outcome(p)} |")
fifo = tmp / "pipe.wav"; os.mkfifo(fifo)
folder = tmp / "folder.wav"; folder.mkdir()
for name, p in (("FIFO", fifo), ("directory", folder), ("/dev/zero", Path("/dev/zero")), ("missing file", tmp / "missing.wav")):
    print(f"| {name} | {outcome(p)} |")

def cli(argv, name):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv); msg = ""
        except SystemExit as e:
            code, msg = 1, str(e.code)
    lines = [l for l in (err.getvalue() + msg).splitlines() if l.strip()]
    text = " / ".join(lines) if lines else out.getvalue().strip()
    return f"exit {code}: " + text.replace(str(name), "FILE").replace(str(tmp), "TMP").replace(str(ROOT) + "/", "")

print("\n## checkpoints (`asr transcribe --model FILE --no-lm sample.wav`)\n| checkpoint | outcome |\n|---|---|")
ck = tmp / "ckpt"; ck.mkdir()
small = ck / "small.pt"; AcousticModel(ModelConfig(hidden=32, layers=1)).save(small)
for name, p in L._variants(small, ck).items():
    print(f"| {name} | {cli(['transcribe', '--model', str(p), '--no-lm', str(L.WAV)], p)} |")

print("\n## language models (`asr transcribe --lm FILE sample.wav`)\n| LM | outcome |\n|---|---|")
lm = tmp / "lm"; lm.mkdir()
A = L.ARPA
for name, content in [("truncated-ngrams.arpa", A[: A.index("\\2-grams") + 25]), ("truncated-unigrams.arpa", A[:90]),
                      ("garbled.arpa", random.Random(1).randbytes(3000)), ("wrong-counts.arpa", A.replace("ngram 1=6", "ngram 1=60")),
                      ("empty.arpa", b""), ("text.arpa", "just some words\nnot a language model\n")]:
    p = lm / name; p.write_bytes(content if isinstance(content, bytes) else content.encode())
    print(f"| {name} | {cli(['transcribe', '--lm', str(p), str(L.WAV)], p)} |")
for i, s in enumerate(['{"lm_weight": 1.0', '["not", "an", "object"]', '{"lm_weight": "high"}', b"\xff\xfe\x00garbage"]):
    d = lm / f"json{i}"; d.mkdir(); p = d / "lm.arpa"; p.write_text(A)
    j = Path(str(p) + ".json"); j.write_bytes(s if isinstance(s, bytes) else s.encode())
    print(f"| tuned settings lm.arpa.json = {s!r} | {cli(['transcribe', '--lm', str(p), str(L.WAV)], j)} |")
if DEFAULT_LM.is_file():
    data = DEFAULT_LM.read_bytes(); he = data.index(b"\n") + 1
    cases = {"kenlm truncated-half": (L._binary_copy(lm, "truncated-half", data[: len(data) // 2]), None),
             "kenlm truncated-header": (L._binary_copy(lm, "truncated-header", data[: he + 40]), None),
             "kenlm wrong-version (format version 9)": (L._binary_copy(lm, "wrong-version", data.replace(b"format version 5", b"format version 9", 1)), None),
             "kenlm no word list": (L._binary_copy(lm, "no-word-list", data, b"-"), None)}
    g = L._binary_copy(lm, "garbled-words", data, random.Random(2).randbytes(4000)); cases["garbled word list"] = (g, words_path(g))
    e = L._binary_copy(lm, "empty-words", data, b"\n\n"); cases["empty word list"] = (e, words_path(e))
    for name, (p, target) in cases.items():
        print(f"| {name} | {cli(['transcribe', '--lm', str(p), str(L.WAV)], target or p).replace(str(p), 'LM')} |")
