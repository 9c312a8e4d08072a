"""Builds candidate Gutenberg LMs and measures each: binary size, vocabulary, perplexity / OOV rate on the
Common Voice part of realspeech dev, and BeamSearchDecoder construction time (lexicon trie + LM load).

    python recipes/realspeech/compare.py OUT_DIR NAME:ORDER:PRUNE[:VOCAB_SIZE[:MIN_COUNT[:INCLUDE]]] ...
    e.g. 4g-p0123-v100k:4:0,1,2,3:100000   4g-p0123-m20d:4:0,1,2,3::20:dict+train
    (INCLUDE: dict = /usr/share/dict/american-english, train = the training transcripts; --vocab-include)

Exclusions: as in run.sh (EXCLUDE in the environment overrides). One heavy process at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asr.training.kenlm import build_lm, ensure_kenlm_tools, iter_sentences, perplexity

GUTENBERG = "/work/shared/data/lm-text/gutenberg.txt.xz"
TRAIN = "/work/shared/data/realspeech/train.jsonl"
DEV = Path("/work/shared/data/realspeech/dev.jsonl")
ASTERISK = "data/realspeech/asterisk/asterisk.jsonl"
DICT = "/usr/share/dict/american-english"
EXCLUDE = os.environ.get("EXCLUDE", " ".join([
    str(DEV), "assets/real/alsa-sounds.jsonl", "data/realspeech/exclude/asterisk-prompts.txt",
    "data/realspeech/asterisk/asterisk.jsonl", "data/realspeech/exclude/synthetic-dev-test.txt"])).split()

TIMING = """
import sys, time
from asr.decoding import BeamSearchDecoder
from asr.tokenizer import DEFAULT_VOCAB
import torchaudio.models.decoder  # import cost is not the LM's
times = []
for _ in range(3):
    t = time.perf_counter(); d = BeamSearchDecoder(DEFAULT_VOCAB, sys.argv[1]); times.append(time.perf_counter() - t); del d
print(" ".join(f"{x:.2f}" for x in times))
"""


def main(out_dir: str, specs: list[str]) -> None:
    out = Path(out_dir)
    tools = ensure_kenlm_tools(tools=("lmplz", "build_binary", "query"))
    cv = [json.loads(l)["text"] for l in open(DEV) if json.loads(l)["source"] == "commonvoice1"]
    asterisk = sorted(set(iter_sentences(ASTERISK))) if Path(ASTERISK).exists() else []
    rows = []
    for spec in specs:
        name, order, prune, *vocab = spec.split(":")
        vocab += [""] * (3 - len(vocab))
        include = [{"dict": DICT, "train": TRAIN}[k] for k in vocab[2].split("+") if k]
        lm = out / f"{name}.bin"
        if not lm.exists():
            build_lm([GUTENBERG, TRAIN], lm, order=int(order), prune=[int(p) for p in prune.split(",")],
                     exclude=EXCLUDE, vocab_size=int(vocab[0]) if vocab[0] else None,
                     vocab_min_count=int(vocab[1]) if vocab[1] else 1, vocab_include=include, tools=tools,
                     log=lambda m: print(m, file=sys.stderr))
        info = json.loads(lm.with_suffix(".build.json").read_text())
        ppl = perplexity(lm, cv, tools)
        timing = subprocess.run([sys.executable, "-c", TIMING, str(lm)], capture_output=True, text=True,
                                check=True).stdout.split()
        row = {"name": name, "order": int(order), "prune": prune, "vocab_cap": ":".join(vocab).strip(":"),
               "mb": round(lm.stat().st_size / 1e6, 1), "vocabulary": info["vocabulary"], "ngrams": info["ngrams"],
               "ppl": round(ppl["perplexity"], 1), "ppl_no_oov": round(ppl["perplexity_no_oov"], 1),
               "oov_pct": round(100 * ppl["oov_rate"], 2), "init_s": timing}
        if asterisk:  # a second held-out domain: telephone prompts (excluded from every LM)
            ppl = perplexity(lm, asterisk, tools)
            row.update(ast_ppl=round(ppl["perplexity"], 1), ast_ppl_no_oov=round(ppl["perplexity_no_oov"], 1),
                       ast_oov_pct=round(100 * ppl["oov_rate"], 2))
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out / os.environ.get("RESULTS", "compare.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
