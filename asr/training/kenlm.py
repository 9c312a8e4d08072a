"""Word n-gram LMs with KenLM for large text: lmplz + build_binary from the kenlm sdist, held-out sentences
removed, a pruned (quantized) binary LM plus the word list the beam decoder builds its lexicon from.

    python -m asr.training.kenlm tools                                  # find or build lmplz/build_binary/query
    python -m asr.training.kenlm build gutenberg.txt.xz train.jsonl -o lm.bin --order 4 --prune 0 1 2 2 \\
        --vocab-min-count 20 --vocab-include train.jsonl /usr/share/dict/american-english \\
        --exclude dev.jsonl test.jsonl
    python -m asr.training.kenlm perplexity lm.bin dev.jsonl

`asr/training/lm.py` writes small ARPA files in pure Python; this is the path for millions of sentences
(recipes/gutenberg-lm builds the bundled general-English LM with it). Outputs of
`build -o LM.bin`: LM.bin (KenLM trie), LM.words.txt (its vocabulary, most probable first: a binary LM has no
readable unigram list, and the decoder's lexicon is the LM vocabulary) and LM.build.json (sources, exclusions,
counts, commands). Every file is written to a temp file and renamed.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Optional, Sequence, Union

from ..lm import BOS, EOS, UNK, words_path
from ..tokenizer import normalize_text
from ..utils import atomic_path, atomic_write

PathLike = Union[str, Path]
KENLM_VERSION = "0.3.0"
DEFAULT_CACHE = "~/.cache/asr/kenlm"
TOOLS = ("lmplz", "build_binary", "query")
DEBIAN_PACKAGES = ("cmake", "g++", "make", "libboost-program-options-dev", "libboost-system-dev",
                   "libboost-thread-dev", "libboost-test-dev", "zlib1g-dev", "libbz2-dev", "liblzma-dev")
# Already-normalized lines (the Gutenberg text) skip normalize_text, which is ~10x slower.
_NORMALIZED = re.compile(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*")


class KenLMError(RuntimeError):
    """A KenLM tool is missing, cannot be built, or failed."""


# ------------------------------------------------------------------------------------------ tools

def _install_hint() -> str:
    return f"apt-get install {' '.join(DEBIAN_PACKAGES)}"


def ensure_kenlm_tools(cache_dir: Optional[PathLike] = None, tools: Sequence[str] = ("lmplz", "build_binary"),
                       jobs: Optional[int] = None, build: bool = True,
                       log: Callable[[str], None] = print) -> dict[str, str]:
    """Paths of KenLM's programs: each found on PATH, else in `cache_dir`/bin (default ~/.cache/asr/kenlm,
    or $ASR_KENLM_DIR), else (if `build`) all of TOOLS are built there from the kenlm sdist (pip download,
    cmake, make; ~1-2 min on 2 cores).

    Returns {tool: path} for every tool of TOOLS found (at least those in `tools`); raises KenLMError with a
    one-line reason (naming the Debian packages to install) when they cannot be built.
    """
    cache = Path(cache_dir or os.environ.get("ASR_KENLM_DIR") or DEFAULT_CACHE).expanduser()
    bin_dir = cache / "bin"

    def find() -> dict[str, str]:
        found = {}
        for tool in TOOLS:
            path = shutil.which(tool) or (str(bin_dir / tool) if os.access(bin_dir / tool, os.X_OK) else None)
            if path:
                found[tool] = path
        return found

    found = find()
    if all(t in found for t in tools):
        return found
    if not build:
        raise KenLMError(f"KenLM {', '.join(t for t in tools if t not in found)} not on PATH nor in {bin_dir}")
    _build_tools(cache, jobs or os.cpu_count() or 1, log)
    found = find()
    missing = [t for t in tools if t not in found]
    if missing:
        raise KenLMError(f"KenLM build in {cache} did not produce {', '.join(missing)}")
    return found


def _run_quiet(argv: Sequence[str], what: str, **kwargs) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        if "Boost" in output or "boost/" in output:
            raise KenLMError(f"{what} failed: Boost development files missing (install: {_install_hint()})")
        if any(s in output for s in ("zlib.h", "bzlib.h", "lzma.h")):
            raise KenLMError(f"{what} failed: compression headers missing (install: {_install_hint()})")
        last = [l for l in output.strip().splitlines() if l.strip()][-3:]
        raise KenLMError(f"{what} failed (exit {proc.returncode}): {' | '.join(last)}")
    return proc.stdout


def _build_tools(cache: Path, jobs: int, log: Callable[[str], None]) -> None:
    missing = [p for p in ("cmake", "make") if shutil.which(p) is None]
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler")
    if missing:
        raise KenLMError(f"cannot build KenLM: {', '.join(missing)} not found (install: {_install_hint()})")
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"kenlm-{KENLM_VERSION}.tar.gz"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as tmp:
        tmp = Path(tmp)
        if not sdist.exists():
            log(f"downloading the kenlm {KENLM_VERSION} sdist (pip) ...")
            # --no-binary kenlm only: `:all:` would also build pip's build dependencies from source.
            _run_quiet([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm",
                        f"kenlm=={KENLM_VERSION}", "-d", str(tmp)], "pip download kenlm")
            got = next(tmp.glob("kenlm-*.tar.gz"), None)
            if got is None:
                raise KenLMError("pip download kenlm gave no sdist")
            with atomic_path(sdist) as dst:
                shutil.copyfile(got, dst)
        with tarfile.open(sdist) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse unsafe member paths
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        src = next(p.parent for p in tmp.glob("kenlm-*/CMakeLists.txt"))
        build = tmp / "build"
        log(f"building lmplz, build_binary, query in {cache} (cmake + make -j{jobs}, about a minute) ...")
        _run_quiet(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"], "cmake (KenLM)")
        _run_quiet(["cmake", "--build", str(build), "-j", str(jobs), "--target", *TOOLS], "make (KenLM)")
        (cache / "bin").mkdir(exist_ok=True)
        for tool in TOOLS:
            with atomic_path(cache / "bin" / tool) as dst:
                shutil.copyfile(build / "bin" / tool, dst)
            os.chmod(cache / "bin" / tool, 0o755)
    log(f"KenLM tools ready in {cache / 'bin'} ({time.perf_counter() - t0:.0f} s)")


# ------------------------------------------------------------------------------------------ text

def open_text(path: PathLike) -> IO[str]:
    """A text file, decompressed by suffix (.xz, .gz, .bz2)."""
    path = Path(path)
    opener = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8", errors="replace")


def normalize_line(line: str) -> str:
    line = line.strip()
    return line if _NORMALIZED.fullmatch(line) else normalize_text(line)


def _is_manifest(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.xz"))


def iter_raw(source: PathLike) -> Iterator[str]:
    """Un-normalized sentences of one source: a jsonl manifest (`text` of each row), a LibriSpeech-layout
    folder (*.trans.txt, after the utterance id) or a text file (one sentence per line, maybe compressed)."""
    source = Path(source)
    if source.is_dir():
        trans = sorted(source.rglob("*.trans.txt"))
        if not trans:
            raise ValueError(f"{source}: folder without *.trans.txt files")
        for path in trans:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    parts = line.split(maxsplit=1)
                    if len(parts) == 2:
                        yield parts[1]
    elif not source.is_file():
        raise FileNotFoundError(f"{source}: no such file or folder")
    elif _is_manifest(source):
        with open_text(source) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError):
                        raise ValueError(f"{source}:{n}: not a manifest row with a 'text' field") from None
    else:
        with open_text(source) as f:
            yield from f


def iter_sentences(source: PathLike) -> Iterator[str]:
    """Normalized non-empty sentences of one source (see iter_raw)."""
    for raw in iter_raw(source):
        if text := normalize_line(raw):
            yield text


def read_exclusions(sources: Sequence[PathLike], min_words: int = 1) -> dict[str, set[str]]:
    """{source: its normalized sentences of at least `min_words` words} for manifests, LibriSpeech folders
    and text files."""
    return {str(s): {t for t in iter_sentences(s) if t.count(" ") + 1 >= min_words} for s in sources}


def filter_sentences(sentences: Iterable[str], excluded: dict[str, set[str]], stats: Counter) -> Iterator[str]:
    """The sentences that equal no excluded sentence. `stats` counts "kept", "excluded" and, per exclusion
    source, the lines it matched (a line in two sources counts for both)."""
    union = set().union(*excluded.values()) if excluded else set()
    for s in sentences:
        if s in union:
            stats["excluded"] += 1
            for name, texts in excluded.items():
                if s in texts:
                    stats[f"excluded:{name}"] += 1
        else:
            stats["kept"] += 1
            yield s


def choose_vocabulary(counts: Counter, min_count: int = 1, size: Optional[int] = None,
                      include: Iterable[str] = ()) -> list[str]:
    """Words seen at least `min_count` times, the `size` most frequent of them (ties: alphabetical), plus the
    words of `include` that were seen at all; most frequent first."""
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    words = words[:size] if size else words
    chosen = set(words)
    extra = sorted((w for w in set(include) if counts.get(w, 0) > 0 and w not in chosen), key=lambda w: (-counts[w], w))
    return sorted(words + extra, key=lambda w: (-counts[w], w)) if extra else words


# ------------------------------------------------------------------------------------------ ARPA / binary

def arpa_unigrams(path: PathLike) -> list[tuple[str, float]]:
    """(word, log10 p) of an ARPA file's unigrams, without <s>, </s>, <unk>, most probable first."""
    rows, inside = [], False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                inside = True
            elif inside and line.startswith("\\"):
                break
            elif inside and line:
                parts = line.split("\t")
                if len(parts) >= 2 and parts[1] not in (BOS, EOS, UNK):
                    rows.append((parts[1], float(parts[0])))
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows


def arpa_counts(path: PathLike) -> list[int]:
    """The `ngram N=count` header of an ARPA file."""
    counts = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("ngram "):
                counts.append(int(line.split("=")[1]))
            elif line.startswith("\\1-grams:"):
                break
    return counts


def _lmplz(tools: dict, text: Path, arpa: Path, order: int, memory: str, tmp: Path, prune: Sequence[int],
           vocab_file: Optional[Path], discount_fallback: bool) -> list[str]:
    argv = [tools["lmplz"], "-o", str(order), "-S", memory, "-T", str(tmp) + "/", "--text", str(text),
            "--arpa", str(arpa)]
    if any(prune):
        argv += ["--prune", *map(str, prune)]
    if vocab_file is not None:
        argv += ["--limit_vocab_file", str(vocab_file)]
    if discount_fallback:
        argv += ["--discount_fallback"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr
        if not discount_fallback and "discount_fallback" in err:
            raise _NeedsFallback()
        last = [l for l in err.strip().splitlines() if l.strip()][-2:]
        raise KenLMError(f"lmplz failed (exit {proc.returncode}): {' | '.join(last)}")
    return argv


class _NeedsFallback(Exception):
    pass


def build_lm(sources: Sequence[PathLike], out: PathLike, order: int = 4, prune: Sequence[int] = (0,),
             exclude: Sequence[PathLike] = (), vocab_min_count: int = 1, vocab_size: Optional[int] = None,
             vocab_include: Sequence[PathLike] = (), exclude_min_words: int = 1, binary: bool = True,
             quantize: Optional[int] = 8,
             compress_pointers: bool = True, memory: str = "2G",
             discount_fallback: Optional[bool] = None, tools: Optional[dict] = None,
             work_dir: Optional[PathLike] = None, command: Optional[str] = None,
             log: Callable[[str], None] = print) -> dict:
    """Modified Kneser-Ney n-gram LM of `sources` with KenLM, minus every sentence in `exclude`.

    - sources / exclude: jsonl manifests (`text`), LibriSpeech-layout folders, text files (.txt, .gz, .xz,
      .bz2; one sentence per line), all normalized with normalize_text; a source line is dropped when it
      equals an excluded sentence. exclude_min_words > 1 keeps excluded sentences shorter than that (e.g.
      the single command words and digits that dev sets share with the training transcripts).
    - prune: lmplz --prune thresholds per order (the last repeats; unigrams cannot be pruned): n-grams seen
      at most that often are dropped. vocab_min_count / vocab_size: the vocabulary is the words seen at
      least vocab_min_count times, at most the vocab_size most frequent (lmplz --limit_vocab_file: n-grams
      with other words are pruned; they become <unk>), plus every word of the `vocab_include` sources
      (e.g. a dictionary like /usr/share/dict/american-english, the training transcripts) that the kept
      text contains: rare real words stay, rare junk (names, archaic or broken spellings) goes. A word is
      only ever in the LM if the kept text has it, so vocab_include cannot leak excluded sentences.
    - binary: a KenLM trie (`build_binary trie`, with `quantize` bits for probabilities and back-offs,
      None = unquantized floats; compress_pointers: `-a 255`, smallest file) plus the word list
      `words_path(out)` (LM.words.txt, most probable first); else `out` is the ARPA file.
    - discount_fallback: None = only when lmplz says the corpus is too small for its discount estimate.
    - memory: lmplz/build_binary -S (lmplz otherwise reserves ~80 % of RAM).

    Returns (and writes to OUT.build.json, with `command`, the command line that called this) the stats: sentences read/kept/excluded per source and per
    exclusion, words, vocabulary, n-gram counts, file sizes, commands and timings.
    """
    out = Path(out)
    if order < 1:
        raise ValueError("order must be >= 1")
    prune = [int(p) for p in prune] or [0]
    if prune[0] != 0:
        raise ValueError("lmplz cannot prune unigrams: the first --prune value must be 0 (use --vocab-min-count)")
    if any(b < a for a, b in zip(prune, prune[1:])):
        raise ValueError("--prune thresholds must be non-decreasing")
    prune = (prune + [prune[-1]] * order)[:order]
    tools = tools or ensure_kenlm_tools(log=log)
    info: dict = {"out": str(out), "order": order, "prune": prune, "vocab_min_count": vocab_min_count,
                  "vocab_size": vocab_size, "vocab_include": [str(v) for v in vocab_include], "exclude_min_words": exclude_min_words, "binary": binary,
                  "quantize": quantize if binary else None,
                  "command": command, "sources": {}, "exclude": {}, "commands": [], "seconds": {}}
    t0 = time.perf_counter()
    excluded = read_exclusions(exclude, exclude_min_words)
    info["exclude"] = {name: {"sentences": len(texts)} for name, texts in excluded.items()}
    log(f"excluding {len(set().union(*excluded.values())) if excluded else 0} distinct sentences "
        f"from {len(excluded)} sources")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir or out.parent, prefix=f".{out.name}.work-") as tmp:
        tmp = Path(tmp)
        text = tmp / "text.txt"
        counts: Counter = Counter()
        total: Counter = Counter()
        with open(text, "w", encoding="utf-8") as f:
            for source in sources:
                stats: Counter = Counter()
                for s in filter_sentences(iter_sentences(source), excluded, stats):
                    f.write(s + "\n")
                    counts.update(s.split())
                info["sources"][str(source)] = {"kept": stats["kept"], "excluded": stats["excluded"]}
                for name in excluded:
                    info["exclude"][name].setdefault("removed", {})[str(source)] = stats[f"excluded:{name}"]
                total.update(stats)
                log(f"{source}: kept {stats['kept']} sentences, excluded {stats['excluded']}")
        if not total["kept"]:
            raise ValueError("no text to build a language model from")
        info.update(sentences=total["kept"], excluded=total["excluded"], words=sum(counts.values()),
                    distinct_words=len(counts))
        info["seconds"]["text"] = round(time.perf_counter() - t0, 1)

        vocab_file = None
        if vocab_min_count > 1 or vocab_size:
            include = {w for src in vocab_include for s in iter_sentences(src) for w in s.split()}
            vocab = choose_vocabulary(counts, vocab_min_count, vocab_size, include)
            vocab_file = tmp / "vocab.txt"
            vocab_file.write_text("\n".join(vocab) + "\n")
            covered = sum(counts[w] for w in vocab)
            info["vocab_token_coverage"] = round(covered / max(1, info["words"]), 6)
            log(f"vocabulary {len(vocab)} of {len(counts)} words, covering {100 * covered / info['words']:.2f} % "
                f"of the text")
        del counts

        t1 = time.perf_counter()
        arpa = tmp / "lm.arpa"
        fallback = bool(discount_fallback)
        try:
            argv = _lmplz(tools, text, arpa, order, memory, tmp, prune, vocab_file, fallback)
        except _NeedsFallback:
            if discount_fallback is False:
                raise KenLMError("lmplz: corpus too small to estimate Kneser-Ney discounts "
                                 "(allow --discount-fallback)") from None
            fallback = True
            argv = _lmplz(tools, text, arpa, order, memory, tmp, prune, vocab_file, fallback)
        info["discount_fallback"] = fallback
        info["commands"].append(shlex.join(argv))
        info["seconds"]["lmplz"] = round(time.perf_counter() - t1, 1)
        text.unlink()
        info["ngrams"] = arpa_counts(arpa)
        unigrams = arpa_unigrams(arpa)
        info["vocabulary"] = len(unigrams)
        info["arpa_bytes"] = arpa.stat().st_size
        log(f"lmplz: n-grams {info['ngrams']}, vocabulary {len(unigrams)} ({info['seconds']['lmplz']} s)")

        if binary:
            t2 = time.perf_counter()
            words = words_path(out)
            with atomic_write(words) as f:
                f.write("".join(f"{w}\n" for w, _ in unigrams))
            with atomic_path(out) as dst:
                argv = [tools["build_binary"], "-S", memory, "-T", str(tmp) + "/"]
                if quantize:
                    argv += ["-q", str(quantize), "-b", str(quantize)]
                if compress_pointers:
                    argv += ["-a", "255"]
                argv += ["trie", str(arpa), str(dst)]
                _run_quiet(argv, "build_binary")
                info["commands"].append(shlex.join(argv[:-1] + [str(out)]))
            info["words_file"] = str(words)
            info["seconds"]["build_binary"] = round(time.perf_counter() - t2, 1)
        else:
            with atomic_path(out) as dst:
                shutil.move(arpa, dst)
        info["bytes"] = out.stat().st_size
    info["seconds"]["total"] = round(time.perf_counter() - t0, 1)
    with atomic_write(build_info_path(out)) as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    log(f"{out}: {info['bytes'] / 1e6:.1f} MB, {len(unigrams)} words, n-grams {info['ngrams']} "
        f"({info['seconds']['total']} s)")
    return info


def build_info_path(lm: PathLike) -> Path:
    """LM.bin -> LM.build.json (how it was built)."""
    return Path(lm).with_suffix(".build.json")


# ------------------------------------------------------------------------------------------ evaluation

def perplexity(lm: PathLike, sentences: Iterable[str], tools: Optional[dict] = None) -> dict:
    """KenLM `query` over normalized sentences: {"perplexity" (with OOVs), "perplexity_no_oov", "oov",
    "tokens" (words + </s>), "oov_rate" (OOVs per word)}."""
    tools = tools or ensure_kenlm_tools(tools=("query",))
    text = "".join(s + "\n" for s in sentences if s)
    proc = subprocess.run([tools["query"], "-v", "summary", str(lm)], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KenLMError(f"query failed: {proc.stderr.strip().splitlines()[-1:]}")
    result = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "Perplexity including OOVs":
            result["perplexity"] = float(value)
        elif key == "Perplexity excluding OOVs":
            result["perplexity_no_oov"] = float(value)
        elif key == "OOVs":
            result["oov"] = int(value)
        elif key == "Tokens":
            result["tokens"] = int(value)
    n_sentences = text.count("\n")
    result["oov_rate"] = result["oov"] / max(1, result["tokens"] - n_sentences)
    return result


# ------------------------------------------------------------------------------------------ CLI

def add_build_arguments(p: argparse.ArgumentParser, common: bool = True) -> None:
    """`build` options; `asr lm build` adds all but sources/-o/--order (`common`), which it has itself."""
    if not common:
        return _add_kenlm_options(p)
    p.add_argument("sources", nargs="+", help="text files (.txt/.gz/.xz/.bz2, one sentence per line), jsonl "
                                              "manifests (their text) and LibriSpeech-layout folders")
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="LM file: KenLM binary (+ OUT.words.txt, OUT.build.json); with --arpa an ARPA file")
    p.add_argument("--order", type=int, default=4, help="n-gram order (default 4)")
    _add_kenlm_options(p)


def _add_kenlm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prune", type=int, nargs="+", default=[0, 1, 1, 1], metavar="N",
                   help="drop n-grams seen at most N times, one N per order from unigrams (must be 0), the last "
                        "repeats (default 0 1 1 1: singletons of order >= 2)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="SOURCE",
                   help="manifests / folders / text files whose sentences are removed from the text (dev, test)")
    p.add_argument("--exclude-min-words", type=int, default=1, metavar="N",
                   help="only exclude sentences of at least N words (default 1: all)")
    p.add_argument("--vocab-min-count", type=int, default=1, help="keep words seen at least this often (default 1)")
    p.add_argument("--vocab-size", type=int, default=None, help="keep at most this many most frequent words")
    p.add_argument("--vocab-include", nargs="+", default=[], metavar="SOURCE",
                   help="with --vocab-min-count/--vocab-size: also keep every word of these word lists / texts / "
                        "manifests that the text contains (e.g. /usr/share/dict/american-english)")
    p.add_argument("--arpa", action="store_true", help="write ARPA instead of a binary (no word list needed)")
    p.add_argument("--quantize", type=int, default=8, metavar="BITS",
                   help="binary: bits per probability and back-off (default 8; 0 = 32-bit floats)")
    p.add_argument("--memory", default="2G", help="lmplz/build_binary memory (-S, default 2G)")
    p.add_argument("--discount-fallback", action=argparse.BooleanOptionalAction, default=None,
                   help="standard discounts when the corpus is too small to estimate them (default: only then)")
    p.add_argument("--kenlm-dir", type=Path, default=None, help=f"where KenLM's tools are built (default {DEFAULT_CACHE})")


def run_build(args: argparse.Namespace) -> dict:
    tools = ensure_kenlm_tools(args.kenlm_dir)
    return build_lm(args.sources, args.output, order=args.order or 4, prune=args.prune, exclude=args.exclude,
                    vocab_min_count=args.vocab_min_count, vocab_size=args.vocab_size, vocab_include=args.vocab_include,
                    exclude_min_words=args.exclude_min_words, binary=not args.arpa,
                    quantize=args.quantize or None, memory=args.memory, discount_fallback=args.discount_fallback,
                    tools=tools, command=shlex.join(sys.argv), log=lambda m: print(m, file=sys.stderr))


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m asr.training.kenlm", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("tools", help="find or build lmplz, build_binary and query; print their paths")
    q.add_argument("--kenlm-dir", type=Path, default=None)
    q = sub.add_parser("build", help="KenLM LM from text, minus excluded sentences")
    add_build_arguments(q)
    q = sub.add_parser("perplexity", help="perplexity and OOV rate of an LM on sentences (KenLM query)")
    q.add_argument("lm", type=Path)
    q.add_argument("sources", nargs="+", help="text files / manifests / LibriSpeech folders")
    q.add_argument("--kenlm-dir", type=Path, default=None)
    args = p.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        if args.command == "tools":
            print(json.dumps(ensure_kenlm_tools(args.kenlm_dir, tools=TOOLS, log=log), indent=1))
        elif args.command == "build":
            print(json.dumps(run_build(args), indent=1))
        else:
            tools = ensure_kenlm_tools(args.kenlm_dir, tools=("query",), log=log)
            sentences = [s for src in args.sources for s in iter_sentences(src)]
            print(json.dumps(perplexity(args.lm, sentences, tools), indent=1))
    except (KenLMError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
