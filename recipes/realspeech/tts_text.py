"""Sentences for the synthetic training voices: a seeded sample of the Gutenberg LM text (lines of 6-20
words), with every held-out sentence removed, one per line.

    python recipes/realspeech/tts_text.py GUTENBERG.txt.xz OUT.txt --exclude HELD_OUT... [--fraction 0.02]

The held-out sets are the ones `asr train --exclude` takes (manifests, folders, text files); training
drops a clip that speaks one of them anyway, but removing them here keeps the synthesis hours useful.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from asr.training.data import held_out_sentences
from asr.training.kenlm import open_text
from asr.utils import atomic_write


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("text", type=Path, help="normalized sentences, one per line (.xz, .gz, .bz2 or plain)")
    p.add_argument("out", type=Path)
    p.add_argument("--exclude", nargs="*", default=[], metavar="HELD_OUT")
    p.add_argument("--fraction", type=float, default=0.02, help="share of the eligible lines kept (default 0.02)")
    p.add_argument("--min-words", type=int, default=6)
    p.add_argument("--max-words", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    held = held_out_sentences(args.exclude)
    rng = random.Random(args.seed)
    kept, dropped = [], 0
    with open_text(args.text) as f:
        for line in f:
            s = line.strip()
            if not args.min_words <= len(s.split()) <= args.max_words:
                continue
            if s in held:
                dropped += 1
            elif rng.random() < args.fraction:
                kept.append(s)
    rng.shuffle(kept)
    with atomic_write(args.out) as f:
        f.write("".join(s + "\n" for s in kept))
    print(f"{args.out}: {len(kept)} sentences ({dropped} held-out lines skipped)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
