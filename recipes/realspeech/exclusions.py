"""Writes the held-out sentence lists the Gutenberg LM must not contain, as text files (one normalized
sentence per line) in OUT_DIR:

- asterisk-prompts.txt: the Asterisk core prompts (text after "name: " in core-sounds-en.txt.gz), normalized;
- synthetic-dev-test.txt: the synthetic corpus's test and dev sentences (World English Bible), planned
  without audio exactly as `asr synth OUT --seed 0 --engines espeak,festival,flite,kokoro
  --pitch-variants --hours-test 0.8 --hours-dev 0.6` plans them.

    python recipes/gutenberg-lm/exclusions.py OUT_DIR
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

from asr.tokenizer import normalize_text
from asr.training.synthesize import load_sentences, plan_corpus, voices
from asr.utils import atomic_write

ASTERISK = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


def asterisk_prompts(path: Path = ASTERISK) -> list[str]:
    texts = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if ": " in line and not line.startswith(";"):
                if text := normalize_text(line.split(": ", 1)[1]):
                    texts.append(text)
    return texts


def synthetic_dev_test(seed: int = 0) -> list[str]:
    table = voices(["espeak", "festival", "flite", "kokoro"], pitch_variants=True)
    plan = plan_corpus(load_sentences(seed), table, {"test": (0.8, None), "dev": (0.6, None), "train": (0, None)}, seed)
    return [u.text for u in plan if u.split in ("test", "dev")]


def main(out: str) -> None:
    out_dir = Path(out)
    for name, texts in (("asterisk-prompts.txt", asterisk_prompts() if ASTERISK.exists() else None),
                        ("synthetic-dev-test.txt", synthetic_dev_test())):
        if texts is None:
            print(f"{ASTERISK} missing (Debian asterisk-core-sounds-en): {name} not written", file=sys.stderr)
            continue
        with atomic_write(out_dir / name) as f:
            f.write("".join(t + "\n" for t in texts))
        print(f"{out_dir / name}: {len(texts)} sentences ({len(set(texts))} distinct)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/lm/exclude")
